"""Build a recipe: many sources, one dataset (a ``DatasetDict`` when the recipe splits).

One source at a time, in recipe order, so memory and scratch disk hold one
source's worth (plus the dedup set, which spans sources):

1. **Build** the source with :func:`sftprep.build.run_build` into a scratch
   directory inside the staged output, unpacked (so ``--workers`` and
   ``--engine ray`` apply exactly as in any build), and **scan** it on the way
   (:mod:`sftprep.recipe_scan`): the build's transform keys each record it
   renders (``mixture.content_key``), and exact duplicates (of any earlier
   record, in any source) and contaminated examples are marked and listed in
   ``duplicates.jsonl``, in input order; then the split is decided. Each
   record is rendered once, where it is tokenized.
2. **Assemble** (``recipe_output.Assembly``): read the scratch rows
   memory-mapped, drop, split, repeat and order them (``mixture.py``), add the
   ``source`` column and write each split, packed and padded on its own. The
   scratch rows are then deleted.

Every record read is accounted for, per source: rejected, dropped as too long,
duplicate, contaminated, in validation, or in train (written ``copies`` times,
0 = sampled out by a weight below 1).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from sftprep import storage
from sftprep.build import BuildConfig, BuildResult, run_build
from sftprep.dedup import ExactDedup
from sftprep.errors import ConfigError, InputError
from sftprep.manifest import NAME as MANIFEST
from sftprep.manifest import REJECTS
from sftprep.readers import expand_inputs
from sftprep.recipe import Recipe, Source
from sftprep.recipe_output import DUPLICATES, Assembly
from sftprep.recipe_scan import Listing, Scanner, eval_index
from sftprep.tokenizer import load_tokenizer
from sftprep.writer import sha256_file, write_json

__all__ = ["run_recipe"]


def _check(recipe: Recipe) -> None:
    options = recipe.build_options()
    problems = []
    if options.get("mode", "sequence") != "sequence":
        problems.append("recipes build --mode sequence rows (weights and splits count examples)")
    if options.get("markers", "text") != "text":
        problems.append(
            "--markers special is not supported with --config (sources would add different tokens)"
        )
    if problems:
        raise ConfigError(f"{recipe.path}: " + "; ".join(problems))
    try:  # the build-wide options as a whole (packing, padding), then each source's
        BuildConfig(inputs=("recipe",), output="-", **options).check()
    except ConfigError as exc:
        raise ConfigError(f"{recipe.path}: {exc}") from None
    owner: dict[str, str] = {}
    for i, source in enumerate(recipe.sources):
        try:
            recipe.source_config(source, "-").check()
        except ConfigError as exc:
            raise ConfigError(f"{recipe.path}: sources[{i}] ({source.name}): {exc}") from None
        for name in expand_inputs(source.paths):
            if name in owner and owner[name] != source.name:
                raise ConfigError(
                    f"{recipe.path}: sources '{owner[name]}' and '{source.name}' both read {name}"
                )
            owner[name] = source.name
    if recipe.expected_inputs is not None:
        for name in owner:
            want = recipe.expected_inputs.get(name)
            if want is not None and not storage.is_url(name) and sha256_file(Path(name)) != want:
                raise InputError(f"{name} has changed since the build recorded in {recipe.path} "
                                 "(sha256 differs); pass --allow-changed-inputs to rebuild anyway")  # fmt: skip


def run_recipe(
    recipe: Recipe,
    output: str,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
    allow_changed_inputs: bool = False,
) -> BuildResult:
    """Build every source of a recipe into one output.

    Args:
        recipe: from :func:`sftprep.recipe.load_recipe` (with command-line overrides).
        output: the output directory (local).
        overwrite: replace an existing output once the new one is complete.
        log: called with one-line notes for the user.
        allow_changed_inputs: rebuild from a manifest even if an input's sha256 changed.

    Raises:
        SftprepError: any problem, phrased for the user; nothing is written.
    """
    log = log or (lambda message: None)
    if storage.is_url(output):
        raise ConfigError("--config builds write to a local directory (build the recipe, then upload it)")
    if allow_changed_inputs:
        recipe = replace(recipe, expected_inputs=None)
    _check(recipe)
    options = recipe.build_options()
    storage.check_output(output, overwrite)
    info = load_tokenizer(options.get("tokenizer"), eos=options.get("eos"))
    ngrams = eval_index(recipe)
    dedup = ExactDedup() if recipe.exact else None
    with storage.staged_output(output, overwrite=overwrite) as staged:
        root = Path(staged.path)
        listing = Listing(root / DUPLICATES)
        work = root / ".sources"
        built: list[dict[str, Any]] = []
        assembly: Assembly | None = None
        try:
            # One source at a time: build (and scan), assemble, then drop its scan and scratch
            # rows, so memory and scratch disk hold one source's worth (plus the dedup set).
            for i, source in enumerate(recipe.sources):
                with _naming(source):
                    config = recipe.source_config(source, str(work / str(i)))
                    scanner = Scanner(source.name, expand_inputs(config.inputs), dedup, ngrams, listing)
                    built.append(
                        run_build(config, log=_prefixed(log, source.name), examples=scanner).manifest
                    )
                if assembly is None:
                    assembly = Assembly(recipe, info, built[0], root)
                assembly.add(source, scanner.scan(recipe), built[i], work / str(i))
                _move_rejects(work / str(i) / REJECTS, root / REJECTS)
                shutil.rmtree(work / str(i))
        finally:
            listing.close()
        assert assembly is not None  # a recipe has at least one source
        manifest = assembly.finish(built, ngrams, listing.file is not None)
        shutil.rmtree(work)
        write_json(root / MANIFEST, manifest)
        staged.commit()
    return BuildResult(Path(output), manifest)


@contextlib.contextmanager
def _naming(source: Source) -> Iterator[None]:
    """Option problems met while reading a source say which source (record errors name their file)."""
    try:
        yield
    except ConfigError as exc:
        raise ConfigError(f"source '{source.name}': {exc}") from None


def _prefixed(log: Callable[[str], None], name: str) -> Callable[[str], None]:
    return lambda message: log(f"{name}: {message}")


def _move_rejects(part: Path, target: Path) -> None:
    """Append one source build's rejects to the build's rejects.jsonl."""
    if part.exists():
        with open(part, "rb") as src, open(target, "ab") as out:
            shutil.copyfileobj(src, out)
