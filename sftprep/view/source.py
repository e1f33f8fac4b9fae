"""Where inspected rows come from: a build's shards and manifest, rows built in memory, the tokenizer.

:func:`open_rows` opens a build output (its directory or one shard) without
reading it: :meth:`Rows.batches` memory-maps the shards one record batch at a
time. :func:`view_tokenizer` finds the tokenizer to show token strings with.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from tokenizers import Tokenizer

from sftprep import exports, storage
from sftprep.errors import ConfigError, InputError, SftprepError
from sftprep.labels import IGNORE_INDEX
from sftprep.manifest import NAME as MANIFEST
from sftprep.manifest import load_manifest
from sftprep.tokenizer import TokenizerInfo, load_tokenizer

if TYPE_CHECKING:
    from sftprep.view.turns import Turns


@dataclass
class Rows:
    """The rows to inspect: a build output on disk, or rows built in memory (``--preview``).

    Attributes:
        name: the output's path, for messages.
        convention: the label convention (the shards' ``sftprep`` schema metadata).
        manifest: ``manifest.json`` (a preview carries a manifest-like dict), or None.
        shards: shard files in row order (empty for a preview).
        memory: the record batches of a preview.
        directory: the output directory (where a saved ``tokenizer.json`` lives).
        columns: the column names of the rows.
        turns: how to find chat rows' messages, when known without the manifest (a preview).
    """

    name: str
    convention: dict[str, Any]
    manifest: dict[str, Any] | None = None
    shards: list[Path] = field(default_factory=list)
    memory: list[pa.RecordBatch] | None = None
    directory: Path | None = None
    columns: list[str] = field(default_factory=list)
    turns: Turns | None = None
    opener: Callable[[], Iterator[pa.RecordBatch]] | None = None  # a build in another format

    @property
    def mode(self) -> str:
        return str(self.convention.get("mode", "sequence"))

    @property
    def packed(self) -> bool:
        """Rows of several examples each (``--pack``): they list the examples' lengths."""
        return "seq_lengths" in self.columns

    @property
    def max_length(self) -> int | None:
        return ((self.manifest or {}).get("config") or {}).get("max_length")

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Every record batch, in row order (shards are memory-mapped, nothing is copied)."""
        if self.memory is not None:
            yield from self.memory
            return
        if self.opener is not None:
            yield from self.opener()
            return
        for path in self.shards:
            yield from _read_shard(path)


def _read_shard(path: Path) -> Iterator[pa.RecordBatch]:
    try:
        source = pa.memory_map(str(path))
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc}") from None
    try:
        reader = pa.ipc.open_stream(source)
    except pa.ArrowInvalid:
        try:  # the IPC *file* format (what some other tools write) reads the same way
            file_reader = pa.ipc.open_file(source)
        except pa.ArrowInvalid as exc:
            raise InputError(f"{path}: not an Arrow shard: {exc}") from None
        for i in range(file_reader.num_record_batches):
            yield file_reader.get_batch(i)
        return
    try:
        yield from reader
    except (OSError, pa.ArrowInvalid) as exc:  # cut short or overwritten while being read
        raise InputError(f"{path}: damaged shard: {exc}") from None


def open_rows(path: str | Path) -> Rows:
    """Open a build output: its directory, or one of its ``.arrow`` shards.

    A URL (``s3://bucket/out``) must name a complete build (one with its
    manifest.json); it is downloaded to a temporary directory first.

    Raises:
        InputError: no such path, no shards, or a shard that is not Arrow; a URL
            whose build is incomplete.
        ConfigError: the shards do not hold sftprep-style rows.
    """
    if isinstance(path, str) and storage.is_url(path):
        path = storage.local_path(path) or _fetched(path)
    p = Path(path)
    if p.is_dir():
        directory, manifest = p, load_manifest(p / MANIFEST)
        if manifest and exports.output_format(manifest) != "arrow":
            schema, _ = exports.open_batches(p)
            convention = json.loads((schema.metadata or {}).get(b"sftprep", b"{}"))
            opener = lambda: exports.open_batches(p)[1]  # noqa: E731
            return Rows(str(p), convention, manifest, directory=p, columns=schema.names, opener=opener)
        shards = [p / s["filename"] for s in manifest["shards"]] if manifest else sorted(p.glob("*.arrow"))
        if not shards and manifest and len(manifest.get("splits") or {}) > 1:
            splits = " or ".join(str(p / s) for s in manifest["splits"])
            raise InputError(f"{p}: a build with splits: inspect {splits}")
        if not shards:
            raise InputError(f"{p}: no .arrow shards here (is it the output of sftprep build?)")
    elif p.is_file():
        directory, shards, manifest = p.parent, [p], load_manifest(p.parent / MANIFEST)
        if manifest and p.name not in {s.get("filename") for s in manifest.get("shards", [])}:
            manifest = None  # a manifest of some other build
    else:
        raise InputError(f"{p}: no such file or directory")
    schema = _schema(shards[0])
    metadata = schema.metadata or {}
    if b"sftprep" in metadata:
        convention = json.loads(metadata[b"sftprep"])
    else:
        convention = (manifest or {}).get("label_convention") or _guess_convention(schema, p)
    return Rows(str(p), convention, manifest, shards, directory=directory, columns=schema.names)


def _fetched(url: str) -> Path:
    """A complete build at a URL, downloaded into a temporary directory removed at exit."""
    directory = tempfile.mkdtemp(prefix="sftprep-inspect-")
    atexit.register(shutil.rmtree, directory, True)
    return storage.fetch_build(url, directory)


def _schema(path: Path) -> pa.Schema:
    for batch in _read_shard(path):
        return batch.schema
    try:
        return pa.ipc.open_stream(pa.memory_map(str(path))).schema
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path}: not an Arrow shard: {exc}") from None


def _guess_convention(schema: pa.Schema, where: Path) -> dict[str, Any]:
    """Shards without sftprep's metadata: tell the convention from the columns."""
    names = set(schema.names)
    if "input_ids" in names:
        for column, mode, labels in (
            ("target_ids", "sequence", "shifted"),
            ("labels", "sequence", "hf"),
            ("target_id", "exploded", "shifted"),
        ):
            if column in names:
                return {"mode": mode, "labels": labels, "ignore_index": IGNORE_INDEX}
    raise ConfigError(
        f"{where}: not sftprep rows: expected input_ids with target_ids, labels or target_id, "
        f"found {', '.join(schema.names)}"
    )


def view_tokenizer(rows: Rows, spec: str | None = None) -> tuple[Tokenizer | None, list[str]]:
    """The tokenizer to show token strings with, and notes on anything that went wrong.

    ``spec`` (``--tokenizer``) wins; then a ``tokenizer.json`` saved in the output
    (a build that added marker tokens); then the manifest's ``tokenizer.name``.
    A tokenizer that does not load gives ``None`` and a note: ids are still shown.
    """
    identity = (rows.manifest or {}).get("tokenizer") or {}
    saved = rows.directory / "tokenizer.json" if rows.directory else None
    if spec is None and saved is not None and saved.is_file():
        spec, check = str(saved), False
    elif spec is None and identity.get("name"):
        spec, check = identity["name"], True
    elif spec is None:
        return None, [
            f"{rows.name}: no manifest.json names the tokenizer; pass --tokenizer to see token strings"
        ]
    else:
        check = True
    try:
        info = _load_tokenizer(None if spec == "default" else spec, identity.get("eos_token"), _stamp(spec))
    except SftprepError as exc:
        return None, [f"cannot load tokenizer '{spec}' ({exc}); showing ids only (pass --tokenizer)"]
    notes = []
    if check and identity.get("sha256") and info.sha256 != identity["sha256"]:
        notes.append(
            f"tokenizer '{spec}' is not the one this build used (its sha256 differs): token strings may be wrong"
        )
    return info.tokenizer, notes


def _stamp(spec: str) -> tuple[int, int] | None:
    """The tokenizer file's mtime and size, so that a cached load notices a changed file."""
    path = Path(spec).expanduser()
    path = path / "tokenizer.json" if path.is_dir() else path
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=4)
def _load_tokenizer(spec: str | None, eos: str | None, stamp: tuple[int, int] | None) -> TokenizerInfo:
    # Loading takes a few tenths of a second; a process that inspects several
    # outputs of one tokenizer (a notebook, the tests) loads it once. Nothing
    # here changes the tokenizer it returns.
    del stamp  # only part of the cache key
    return load_tokenizer(spec, eos=eos)
