"""A finished build opened for reading, for the commands that check it (``verify``, ``diff``).

:func:`read_build` opens a build (a directory or a URL: its files are fetched) and reads its
manifest; :func:`open_shard` and :func:`shard_batches` read a shard's record batches, a damaged
shard as an :class:`~sftprep.errors.InputError` after its readable batches; :class:`Problem` is
one thing in a build that does not hold, named by shard, row and column.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from sftprep import storage
from sftprep.errors import InputError
from sftprep.manifest import NAME as MANIFEST
from sftprep.manifest import load_manifest

__all__ = ["Build", "Problem", "open_shard", "read_build", "row_source", "sha256_of", "shard_batches"]


@dataclass
class Build:
    """A finished build opened for reading: its manifest and the local directory of its files."""

    name: str
    directory: Path
    manifest: dict[str, Any]


def read_build(location: str | Path) -> Build:
    """Open a build output (a directory or a URL) and read its manifest.

    This is the one place verify and diff read a manifest. A URL's files are
    downloaded to a temporary directory removed at exit.

    Raises:
        InputError: no such build, no manifest.json (an incomplete build), or a
            manifest that is not JSON.
    """
    name = str(location)
    local = storage.local_path(name) if isinstance(location, str) else name
    if local is None:
        directory = tempfile.mkdtemp(prefix="sftprep-verify-")
        atexit.register(shutil.rmtree, directory, True)
        path = storage.fetch_build(name, directory)
    else:
        path = Path(local)
    if not path.is_dir():
        raise InputError(f"{name}: no such build directory")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{name}: no {MANIFEST}: an incomplete build (interrupted?) or not an sftprep build")
    manifest = load_manifest(manifest_path)
    if manifest is None or not isinstance(manifest.get("shards"), list):
        raise InputError(f"{manifest_path}: not an sftprep manifest (no shard list)")
    return Build(name, path, manifest)


@dataclass
class Problem:
    """One thing in a build that does not hold.

    Attributes:
        check: which check found it: files, schema, rows, counts, tokenizer, sources.
        message: what is wrong, for a human.
        shard / row / column / position: where, when it is that precise (``row``
            counts from 0 over the whole build, as ``sftprep inspect`` does).
        source: the input ``file:line`` of the row, when known.
    """

    check: str
    message: str
    shard: str | None = None
    row: int | None = None
    column: str | None = None
    position: int | None = None
    source: str | None = None

    def line(self) -> str:
        """``data-00000-of-00001.arrow: row 17 (qa.jsonl:18): target_ids[5]: is 11, neither ...``."""
        # A problem of the whole build (counts, tokenizer, inputs) is named by its check.
        parts = [self.shard] if self.shard else [self.check] if self.row is None else []
        if self.row is not None:
            parts.append(f"row {self.row}" + (f" ({self.source})" if self.source else ""))
        if self.column is not None:
            parts.append(self.column + (f"[{self.position}]" if self.position is not None else ""))
        return ": ".join([*parts, self.message])


def sha256_of(name: str) -> str:
    """The sha256 of a file (local path or URL), read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with storage.open_binary(name) as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def open_shard(path: Path) -> pa.ipc.RecordBatchStreamReader:
    """A shard's reader (memory-mapped).

    Raises:
        InputError: the file is not an Arrow stream.
    """
    try:
        return pa.ipc.open_stream(pa.memory_map(str(path)))
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"not an Arrow stream: {exc}") from None


def shard_batches(reader: pa.ipc.RecordBatchStreamReader) -> Iterator[pa.RecordBatch]:
    """The reader's record batches; a damaged shard raises InputError after its readable batches."""
    try:
        yield from reader
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"damaged (cut short or overwritten?): {exc}") from None


def row_source(batch: pa.RecordBatch, row: int) -> str | None:
    """``file:line`` of a row of a batch (a packed row's first example), for problem lines."""
    try:
        file, line = batch.column("source_file")[row].as_py(), batch.column("source_line")[row].as_py()
    except (KeyError, IndexError):
        return None
    if isinstance(file, list):  # a packed row: its first example
        file, line = (file[0], line[0]) if file else (None, None)
    return f"{file}:{line}" if file is not None else None
