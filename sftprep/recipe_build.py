"""Build a recipe: many sources, one dataset (a ``DatasetDict`` when the recipe splits).

One source at a time, in recipe order, so memory and scratch disk hold one
source's worth (plus the dedup set, which spans sources):

1. **Scan** (this process, no tokenizing): the source's records are rendered
   with the template its build binds, and each renderable record gets a content
   key (``mixture.content_key``). Exact duplicates (of any earlier record, in any
   source) and contaminated examples are marked and listed in
   ``duplicates.jsonl``, and the split is decided. What is kept per record is its
   place (file, line), key, verdict and split: 18 bytes in arrays, written to
   scratch disk while the source builds and read back to assemble it.
2. **Build** the source with :func:`sftprep.build.run_build` into a scratch
   directory inside the staged output, unpacked (so ``--workers`` and
   ``--engine ray`` apply exactly as in any build).
3. **Assemble** (``recipe_output.Assembly``): read the scratch rows
   memory-mapped, drop, split, repeat and order them (``mixture.py``), add the
   ``source`` column and write each split, packed and padded on its own. The
   scratch rows are then deleted.

Every record read is accounted for, per source: rejected, dropped as too long,
duplicate, contaminated, in validation, or in train (written ``copies`` times,
0 = sampled out by a weight below 1).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from array import array
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from sftprep import storage
from sftprep.build import BuildConfig, BuildResult, run_build
from sftprep.chat.formats import detect_format, to_messages
from sftprep.dedup import ExactDedup, NgramIndex
from sftprep.errors import ConfigError, InputError, RecordError
from sftprep.manifest import NAME as MANIFEST
from sftprep.manifest import REJECTS
from sftprep.mixture import content_key, validation_mask
from sftprep.readers import InputFile, Record, expand_inputs
from sftprep.recipe import Recipe, Source
from sftprep.recipe_output import CONTAMINATED, DUPLICATE, DUPLICATES, KEEP, UNREAD, Assembly, Scan
from sftprep.templates import bind_template, detect_template
from sftprep.tokenizer import TokenizerInfo, load_tokenizer
from sftprep.transform import bind_transform, resolve_templates
from sftprep.writer import sha256_file, write_json

__all__ = ["run_recipe"]


class _Listing:
    """duplicates.jsonl: every example dropped as a duplicate or as contaminated, with why."""

    def __init__(self, path: Path):
        self.path = path
        self.file: Any = None

    def add(self, source: str, record: Record, reason: str, detail: str) -> None:
        if self.file is None:
            self.file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        entry = {"source": source, "file": record.source, "line": record.number, "reason": reason,
                 "message": detail}  # fmt: skip
        self.file.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _texts(content: Any) -> tuple[list[Any], list[str]]:
    """(what the content key hashes, the texts decontamination reads) of a prepared example."""
    if isinstance(content, tuple):  # (prompt, target)
        return list(content), list(content)
    messages = content.messages
    return [[m["role"], m.get("content")] for m in messages], [str(m.get("content") or "") for m in messages]


# Records whose dedup verdicts are decided together: one vectorized lookup in the key set.
SCAN_BATCH = 4096
# Examples whose split (by a fraction) is decided at a time.
SPLIT_SLICE = 1 << 16


def _scan(recipe: Recipe, source: Source, info: TokenizerInfo, dedup: ExactDedup | None,
          ngrams: NgramIndex | None, listing: _Listing) -> Scan:  # fmt: skip
    config = recipe.source_config(source, "")
    names = expand_inputs(config.inputs)
    template, chat_spec = resolve_templates(config)
    codes, keys, verdicts = array("Q"), array("Q"), array("b")
    pending: list[tuple[Record, list[str]]] = []  # renderable records whose verdict is not yet known
    pending_keys = array("Q")

    def decide() -> None:
        """The verdicts of the pending records, in input order (the listing's order)."""
        if not pending:
            return
        duplicate = dedup.seen_many(np.array(pending_keys, dtype=np.uint64)) if dedup is not None else None
        for i, (record, texts) in enumerate(pending):
            verdict, detail = KEEP, ""
            if duplicate is not None and duplicate[i]:
                verdict, detail = DUPLICATE, "the same rendered text as an earlier example"
            elif ngrams is not None and (gram := ngrams.overlap(texts)) is not None:
                verdict, detail = CONTAMINATED, f"shares the {ngrams.n}-gram '{gram}' with an evaluation file"
            verdicts.append(verdict)
            if verdict != KEEP:
                listing.add(
                    source.name, record, "duplicate" if verdict == DUPLICATE else "contaminated", detail
                )
        pending.clear()
        del pending_keys[:]

    transform = None
    for f_index, name in enumerate(names):
        with InputFile(name, max_record_bytes=config.max_record_bytes, format=config.input_format) as f:
            for record in f.records():
                codes.append(f_index << 40 | record.number)
                if record.error is None and transform is None:
                    transform = bind_transform(config, info, record, None, template, chat_spec).transform
                try:
                    content = transform.prepare(record) if transform and record.error is None else None
                except RecordError:
                    content = None
                if content is None:
                    decide()  # the verdicts stay in input order
                    keys.append(0)
                    verdicts.append(UNREAD)
                    continue
                parts, texts = _texts(content)
                key = content_key(parts)
                keys.append(key)
                pending.append((record, texts if ngrams is not None else []))
                pending_keys.append(key)
                if len(pending) >= SCAN_BATCH:
                    decide()
    decide()
    key_array = np.frombuffer(keys, dtype=np.uint64) if len(keys) else np.zeros(0, np.uint64)
    verdict_array = np.frombuffer(verdicts, dtype=np.int8) if len(verdicts) else np.zeros(0, np.int8)
    # The split is decided among the examples that remain, so a count means that many examples.
    # A fraction decides each example alone: in slices, so its temporaries stay small.
    validation = np.zeros(len(key_array), dtype=bool)
    step = SPLIT_SLICE if isinstance(recipe.validation, float) else max(1, len(key_array))
    for begin in range(0, len(key_array), step):
        kept = np.flatnonzero(verdict_array[begin : begin + step] == KEEP) + begin
        validation[kept] = validation_mask(key_array[kept], recipe.seed, recipe.validation)
    code_array = np.frombuffer(codes, dtype=np.uint64) if len(codes) else np.zeros(0, np.uint64)
    return Scan(names, code_array, key_array, verdict_array, validation)


def _eval_index(recipe: Recipe) -> NgramIndex | None:
    """The n-grams of the decontamination files' prompts and targets (fields detected as for a build)."""
    if not recipe.decontaminate:
        return None
    index = NgramIndex(recipe.ngram)
    for name in expand_inputs(recipe.decontaminate):
        with InputFile(name) as f:
            render: Callable[[dict], list[str]] | None = None
            for record in f.records():
                if record.error is not None:
                    continue
                fields = record.fields
                if render is None:
                    if detect_format(fields, {}) in ("messages", "sharegpt") or "history" in fields:
                        render = lambda r, w=record.where: [  # noqa: E731
                            str(m.get("content") or "") for m in to_messages(r, w).messages
                        ]
                    else:
                        renderer = bind_template(detect_template(fields, record.where), {}, {}, fields)
                        render = lambda r, w=record.where, rr=renderer: list(rr.render(r, w))  # noqa: E731
                try:
                    texts = render(fields)
                except RecordError:
                    continue
                for text in texts:
                    index.add(text)
    return index


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
    ngrams = _eval_index(recipe)
    dedup = ExactDedup() if recipe.exact else None
    with storage.staged_output(output, overwrite=overwrite) as staged:
        root = Path(staged.path)
        listing = _Listing(root / DUPLICATES)
        work = root / ".sources"
        built: list[dict[str, Any]] = []
        assembly: Assembly | None = None
        try:
            # One source at a time: scan, build, assemble, then drop its scan and scratch rows,
            # so memory and scratch disk hold one source's worth (plus the dedup set).
            for i, source in enumerate(recipe.sources):
                with _naming(source):
                    parked = _park(_scan(recipe, source, info, dedup, ngrams, listing), work / f"scan-{i}")
                    config = recipe.source_config(source, str(work / str(i)))
                    built.append(run_build(config, log=_prefixed(log, source.name)).manifest)
                if assembly is None:
                    assembly = Assembly(recipe, info, built[0], root)
                assembly.add(source, _unpark(parked), built[i], work / str(i))
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


def _park(scan: Scan, path: Path) -> tuple[Path, list[str]]:
    """Write the scan's arrays to scratch disk while the source builds (its workers fork from here)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, codes=scan.codes, keys=scan.keys, verdict=scan.verdict, validation=scan.validation)
    return path, scan.names


def _unpark(parked: tuple[Path, list[str]]) -> Scan:
    path, names = parked
    with np.load(path) as z:
        scan = Scan(names, z["codes"], z["keys"], z["verdict"], z["validation"])
    path.unlink()
    return scan


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
