"""The contract every output format shares: layout, manifest, the one conversion, the one reader.

A build always writes Arrow first (``writer.py``). Any other format is a
*conversion* of a complete Arrow build, done by :func:`write_format`, which is
called in two places only:

* ``sftprep build --output-format F``: on the staging directory, after the
  Arrow build is complete and before it is moved into place
  (:func:`convert_staged`);
* ``sftprep export OUT --to F -o DEST`` (:func:`export_build`).

Both read the same Arrow shards in the same order and call the same writer, so
building directly in a format and exporting later give byte-identical files.

Layout of a build in format F (``parquet``, ``mds`` or ``megatron``)::

    dest/
      train/...            the split's files in format F (one folder per split)
      schema.arrows        the rows' Arrow schema with sftprep's metadata (an empty IPC stream)
      card.json            the dataset card's facts (counts, tokens, lengths, provenance)
      README.md            parquet only: the Hugging Face dataset card
      length_histogram.png parquet only: linked from README.md
      manifest.json        the build's manifest, "output_format": F, "shards" listing F's files
      rejects.jsonl, tokenizer.json   copied when the build has them

A split is a folder and one call of the format's ``write_split``; a build with
several splits (recipes) makes one call per split. Today's builds have one
split, ``train``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from sftprep.errors import ConfigError, InputError
from sftprep.manifest import NAME as MANIFEST
from sftprep.manifest import load_manifest, write_json
from sftprep.options import EXPORT_FORMATS, OUTPUT_FORMATS

FORMATS = OUTPUT_FORMATS  # --output-format's choices (sftprep.options); EXPORT_FORMATS are --to's
DEFAULT_SPLIT = "train"
SCHEMA_FILE = "schema.arrows"  # an Arrow IPC stream; not *.arrow, which names data shards
CARD_FILE = "card.json"
# format -> (the extra that installs its writer, the modules it needs)
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "parquet": ("parquet", ("matplotlib", "yaml")),
    "mds": ("mds", ("streaming",)),
    "megatron": ("megatron", ("megatron.core", "torch")),
}
# Files of an Arrow build that a conversion replaces.
_ARROW_FILES = ("state.json", "dataset_info.json")


class MissingExtra(ConfigError):
    """A format's optional dependencies are not installed."""


def require(fmt: str) -> None:
    """Fail with one line naming the extra when ``fmt``'s writer is not installed.

    Raises:
        MissingExtra: ``pip install 'sftprep[mds]'`` and the missing module.
    """
    if fmt not in EXTRAS:
        return
    extra, modules = EXTRAS[fmt]
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise MissingExtra(
                f"the {fmt} format needs sftprep's '{extra}' extra ({module} is not installed): "
                f"pip install 'sftprep[{extra}]'"
            )


def output_format_problems(fmt: str, output: str) -> list[str]:
    """What is wrong with ``--output-format`` for this output (for ``BuildConfig.check``)."""
    if fmt not in FORMATS:
        return [f"--output-format must be one of {', '.join(FORMATS)}"]
    if fmt != "arrow" and "://" in output and not output.startswith("file://"):
        return [f"--output-format {fmt} writes to a local directory (build there, then upload it)"]
    try:
        require(fmt)
    except MissingExtra as exc:
        return [str(exc)]
    return []


def writer_module(fmt: str) -> Any:
    """The module that writes and reads ``fmt``: ``write_split`` and ``read_split``."""
    require(fmt)
    return importlib.import_module(f"sftprep.exports.{fmt}")


def read_manifest(directory: Path) -> dict[str, Any]:
    """A complete build's manifest.

    Raises:
        InputError: no manifest.json (an incomplete build, or not a build).
    """
    path = Path(directory) / MANIFEST
    if not path.exists():
        raise InputError(
            f"{directory}: no manifest.json: an incomplete build (interrupted?) or not an sftprep build"
        )
    data = load_manifest(path)  # InputError when it cannot be read or is not JSON
    if data is None or "shards" not in data:
        raise InputError(f"{path}: not an sftprep manifest")
    return data


def output_format(manifest: dict[str, Any]) -> str:
    """The format a manifest records (builds from before formats existed are Arrow)."""
    return str(manifest.get("output_format") or "arrow")


def splits(manifest: dict[str, Any]) -> list[str]:
    """The build's splits in order (``["train"]`` for an Arrow build)."""
    if output_format(manifest) == "arrow":
        return [DEFAULT_SPLIT]
    return list(dict.fromkeys(s.get("split", DEFAULT_SPLIT) for s in manifest["shards"]))


def read_arrow_shard(path: Path) -> Iterator[pa.RecordBatch]:
    """One Arrow stream shard's record batches, read one at a time.

    Read, not memory-mapped: each batch is freed once the writers are done
    with it, so an export's resident memory does not grow with the shard.
    """
    try:
        with pa.OSFile(str(path)) as source:
            yield from pa.ipc.open_stream(source)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path}: cannot read Arrow shard: {exc}") from None


def read_schema(directory: Path, manifest: dict[str, Any]) -> pa.Schema:
    """The rows' schema, with sftprep's and datasets' metadata."""
    directory = Path(directory)
    if output_format(manifest) == "arrow":
        path = directory / manifest["shards"][0]["filename"]
    else:
        path = directory / SCHEMA_FILE
    try:
        return pa.ipc.open_stream(pa.memory_map(str(path))).schema
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path}: cannot read the schema: {exc}") from None


def split_batches(directory: Path, manifest: dict[str, Any], split: str) -> Iterator[pa.RecordBatch]:
    """One split's rows as record batches with the build's schema, whatever its format."""
    directory = Path(directory)
    fmt = output_format(manifest)
    if fmt == "arrow":
        for shard in manifest["shards"]:
            yield from read_arrow_shard(directory / shard["filename"])
        return
    schema = read_schema(directory, manifest)
    yield from writer_module(fmt).read_split(directory, split, schema)


def open_batches(path: str | Path) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """Any build's rows as pyarrow record batches, whatever its format, splits in order.

    Example: ``schema, batches = open_batches("out/")`` then ``for batch in batches: ...``.

    Raises:
        InputError: not a complete build, or a file that cannot be read.
        MissingExtra: the build's format needs an extra that is not installed.
    """
    directory = Path(path)
    manifest = read_manifest(directory)
    schema = read_schema(directory, manifest)

    def batches() -> Iterator[pa.RecordBatch]:
        for split in splits(manifest):
            yield from split_batches(directory, manifest, split)

    return schema, batches()


def sha256_of(path: Path) -> str:
    from sftprep.writer import sha256_file

    return sha256_file(path)


def write_splits(
    target: Path,
    manifest: dict[str, Any],
    schema: pa.Schema,
    rows: Mapping[str, Iterable[pa.RecordBatch]],
    fmt: str,
) -> dict[str, Any]:
    """Write each split's rows in format ``fmt`` (a folder each), the schema and the card.

    A build with several splits is one call here with one entry per split; each
    split is one call of the format's ``write_split``. The manifest itself is
    not written (the caller writes it last).

    Args:
        target: the output directory.
        manifest: the Arrow build's manifest (provenance and counts for the card).
        schema: the rows' schema, with sftprep's metadata.
        rows: split name -> its record batches, in order.
        fmt: ``parquet``, ``mds`` or ``megatron``.

    Returns:
        The new manifest: ``manifest`` with ``output_format`` and ``shards`` (the
        format's files, each with its split, rows, bytes and sha256).
    """
    from sftprep.exports import card

    module = writer_module(fmt)
    target = Path(target)
    shard_bytes = int((manifest.get("config") or {}).get("shard_size") or 256 * 2**20)
    stats = card.CardStats(schema)
    files: list[dict[str, Any]] = []
    for split, batches in rows.items():
        counted = stats.feed(split, batches)
        for name, count in module.write_split(target, split, schema, counted, shard_bytes):
            path = target / name
            files.append({"filename": name, "split": split, "num_rows": count,
                          "num_bytes": path.stat().st_size, "sha256": sha256_of(path)})  # fmt: skip
    _write_schema(target / SCHEMA_FILE, schema)
    new = dict(manifest, output_format=fmt, shards=files)
    facts = card.facts(new, stats)
    write_json(target / CARD_FILE, facts)
    if fmt == "parquet":
        described = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
        features = {name: described[name] for name in schema.names if name in described}
        card.write_card(target, facts, features)
    return new


def write_format(source: Path, target: Path, manifest: dict[str, Any], fmt: str) -> dict[str, Any]:
    """Write the Arrow build in ``source`` as format ``fmt`` into ``target``; return its manifest.

    ``target`` may be ``source`` itself (a build converting its staging
    directory); the Arrow shards are removed only after everything is written.
    Memory stays flat: rows stream through one record batch at a time.

    Args:
        source: a complete Arrow build (its manifest is ``manifest``).
        target: where the format's files, card and manifest go.
        manifest: the Arrow build's manifest.
        fmt: ``parquet``, ``mds`` or ``megatron``.

    Returns:
        The new manifest (see :func:`write_splits`).
    """
    if output_format(manifest) != "arrow":
        raise ConfigError(
            f"{source} is already in the {output_format(manifest)} format; export from an Arrow build"
        )
    source, target = Path(source), Path(target)
    schema = read_schema(source, manifest)
    rows: dict[str, Iterable[pa.RecordBatch]] = {
        s: split_batches(source, manifest, s) for s in splits(manifest)
    }
    new = write_splits(target, manifest, schema, rows, fmt)
    if source == target:
        for shard in manifest["shards"]:
            (source / shard["filename"]).unlink()
        for name in _ARROW_FILES:
            (source / name).unlink(missing_ok=True)
    else:
        for name in ("rejects.jsonl", "tokenizer.json"):
            if (source / name).is_file():
                shutil.copyfile(source / name, target / name)
    write_json(target / MANIFEST, new)
    return new


def _write_schema(path: Path, schema: pa.Schema) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema):
        pass


def convert_staged(directory: Path, fmt: str) -> dict[str, Any]:
    """Convert a finished, not yet committed Arrow build in place (``build --output-format``)."""
    return write_format(Path(directory), Path(directory), read_manifest(Path(directory)), fmt)


def export_build(source: str | Path, dest: str | Path, fmt: str, overwrite: bool = False) -> dict[str, Any]:
    """Export a complete Arrow build to ``dest`` in format ``fmt``, atomically.

    The result is byte-identical to building directly with ``--output-format fmt``.

    ``source`` may be a URL (``s3://bucket/out``): the build is downloaded to a
    temporary directory first. ``dest`` is a local directory.

    Raises:
        ConfigError: an unknown format, ``dest`` exists without ``overwrite`` or is
            a URL, or the source is not an Arrow build.
        MissingExtra: the format's extra is not installed.
        InputError: ``source`` is not a complete build.
    """
    from sftprep import storage
    from sftprep.writer import StagedOutput

    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"--to must be one of {', '.join(EXPORT_FORMATS)}")
    require(fmt)
    if storage.is_url(str(dest)) and storage.local_path(str(dest)) is None:
        raise ConfigError(f"export writes to a local directory, not {dest} (export there, then upload it)")
    if storage.is_url(str(source)) and storage.local_path(str(source)) is None:
        with tempfile.TemporaryDirectory(prefix="sftprep-export-") as scratch:
            return export_build(storage.fetch_build(str(source), scratch), dest, fmt, overwrite)
    source = Path(storage.local_path(str(source)) or source)
    manifest = read_manifest(source)
    if Path(dest).resolve() == source.resolve():
        raise ConfigError("the export's destination must not be the build it reads")
    with StagedOutput(storage.local_path(str(dest)) or dest, overwrite=overwrite) as staged:
        new = write_format(source, staged.path, manifest, fmt)
        staged.commit()
    return new
