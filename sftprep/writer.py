"""Write rows as Arrow shards that ``datasets.load_from_disk`` opens, atomically.

Layout of an output directory (what ``Dataset.save_to_disk`` writes, plus ours)::

    out/
      data-00000-of-00002.arrow   Arrow IPC stream shards, bounded in size
      data-00001-of-00002.arrow
      dataset_info.json           features, for datasets
      state.json                  shard list and fingerprint, for datasets
      manifest.json               sftprep's record of the build (written last)
      rejects.jsonl               records skipped with --on-error skip (if any)

Everything is written into a hidden sibling directory first; the build renames
it to its final name only when it is complete, so an interrupted build never
leaves a directory that looks finished. An existing output replaced with
``--overwrite`` stays intact until the new one is ready.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from sftprep.errors import ConfigError, OutputError
from sftprep.manifest import is_build, write_json

STAGING_PREFIX = ".sftprep-tmp-"


_VALUE_TYPES = {
    pa.int8(): "int8", pa.int32(): "int32", pa.int64(): "int64",
    pa.bool_(): "bool", pa.string(): "string",
}  # fmt: skip


def _feature(arrow_type: pa.DataType) -> dict[str, Any] | None:
    if pa.types.is_list(arrow_type):
        inner = _feature(arrow_type.value_type)
        return None if inner is None else {"feature": inner, "_type": "List"}
    dtype = _VALUE_TYPES.get(arrow_type)
    return None if dtype is None else {"dtype": dtype, "_type": "Value"}


def _features_dict(schema: pa.Schema) -> dict[str, Any]:
    """datasets' description of the columns (its ``Features``), as load_from_disk reads it.

    Importing datasets takes most of a second, paid by every build; for the
    column types sftprep writes, and the datasets versions that describe lists
    as ``List`` (4.0 and later), the same dict is written here directly (a test
    checks it against datasets). Otherwise datasets itself is asked.
    """
    try:
        modern = int(importlib.metadata.version("datasets").split(".")[0]) >= 4
    except (importlib.metadata.PackageNotFoundError, ValueError):
        modern = False
    features = {f.name: _feature(f.type) for f in schema} if modern else {}
    if not modern or any(v is None for v in features.values()):
        from datasets import Features

        return Features.from_arrow_schema(schema).to_dict()
    return features


def with_metadata(schema: pa.Schema, convention: dict[str, Any]) -> pa.Schema:
    """The schema with datasets' features and sftprep's label convention attached."""
    hf = {"info": {"features": _features_dict(schema)}}
    return schema.with_metadata(
        {"huggingface": json.dumps(hf, sort_keys=True), "sftprep": json.dumps(convention, sort_keys=True)}
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class StagedOutput:
    """A directory built under a temporary name and moved into place at the end.

    Use as a context manager: leaving it with an exception removes the staging
    directory; :meth:`commit` renames it to the final path. The rename never
    replaces what appeared at the final path while the build ran (without
    ``--overwrite``), and with ``--overwrite`` it swaps the old build for the
    new one in one step, so a reader sees one or the other, never a mixture
    (``renameat2`` on Linux; elsewhere a two-step rename).
    """

    def __init__(self, final: str | os.PathLike[str], overwrite: bool = False):
        # Absolute, so that `-o .` has a name and a parent to stage beside.
        self.final = Path(os.path.abspath(final))
        self.overwrite = overwrite
        check_output(self.final, overwrite)
        parent = self.final.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.path = Path(_mkdtemp(parent, STAGING_PREFIX + self.final.name + "-"))
        except OSError as exc:
            raise OutputError(f"cannot create output in {parent}: {exc.strerror}") from None

    # Shards stay in the staging directory, renamed into place with it (see ShardWriter).
    store: ShardStore | None = None

    def __enter__(self) -> StagedOutput:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def commit(self) -> None:
        """Move the finished directory into place (with --overwrite, swapping out the old build).

        Raises:
            OutputError: something appeared at the final path while the build ran
                (and --overwrite was not given, or it is not a build to replace).
        """
        try:
            if _rename_noreplace(self.path, self.final):
                return
            if not self.overwrite:
                raise OutputError(
                    f"output {self.final} appeared while this build ran (another build?); "
                    "it was not replaced and this build was discarded"
                )
            # Checked again: what is there now is what gets replaced.
            check_output(self.final, overwrite=True)
            if _rename_exchange(self.path, self.final):
                shutil.rmtree(self.path, ignore_errors=True)  # now the old build
                return
            self._replace_in_two_steps()
        except OSError as exc:
            raise OutputError(f"cannot move the output into place at {self.final}: {exc.strerror}") from None

    def _replace_in_two_steps(self) -> None:
        """Without renameat2: the old build moves aside, then the new one in (not one step)."""
        old = self.final.with_name(f"{STAGING_PREFIX}{self.final.name}-{os.getpid()}-old")
        os.rename(self.final, old)
        try:
            os.rename(self.path, self.final)
        except OSError:
            if not self.final.exists():
                os.rename(old, self.final)
            raise
        shutil.rmtree(old, ignore_errors=True)


_RENAME_NOREPLACE, _RENAME_EXCHANGE, _AT_FDCWD = 1, 2, -100


def _renameat2(src: Path, dst: Path, flags: int) -> bool | None:
    """Linux renameat2(2): True if done, False if dst exists (NOREPLACE), None if unsupported here."""
    libc = ctypes.CDLL(None, use_errno=True)
    call = getattr(libc, "renameat2", None)
    if call is None:
        return None
    if call(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), ctypes.c_uint(flags)) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EEXIST and flags == _RENAME_NOREPLACE:
        return False
    if err in (errno.ENOSYS, errno.EINVAL):  # old kernel, or a filesystem without the flag
        return None
    raise OSError(err, os.strerror(err), str(dst))


def _rename_noreplace(src: Path, dst: Path) -> bool:
    """Rename src to dst unless dst exists (atomically where the system allows); False if it does."""
    done = _renameat2(src, dst, _RENAME_NOREPLACE) if sys.platform == "linux" else None
    if done is not None:
        return done
    if os.path.lexists(dst):
        return False
    # Fallback: a rename onto a non-empty directory fails; onto an empty one made meanwhile it
    # would succeed, a window renameat2 closes.
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return False
        raise
    return True


def _rename_exchange(src: Path, dst: Path) -> bool:
    """Swap src and dst in one step; False where the system cannot."""
    return bool(_renameat2(src, dst, _RENAME_EXCHANGE)) if sys.platform == "linux" else False


def describe_entries(names: list[str]) -> str:
    """``["a.txt", "sub/"]`` -> ``'2 entries: a.txt, sub/'`` (the first few)."""
    shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
    return f"{len(names)} entr{'y' if len(names) == 1 else 'ies'}: {shown}"


def check_output(final: str | os.PathLike[str], overwrite: bool) -> None:
    """Fail early, before any work, when the output cannot be written.

    ``--overwrite`` replaces only an earlier sftprep build or an empty directory.

    Raises:
        ConfigError: the output exists (without --overwrite), or is something else.
    """
    path = Path(os.path.abspath(final))
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output {path} exists and is not a directory")
    if path.exists() and not overwrite:
        raise ConfigError(f"output {path} exists; pass --overwrite to replace it")
    if path.exists() and not is_build(path):
        entries = [p.name + ("/" if p.is_dir() else "") for p in path.iterdir()]
        if entries:
            raise ConfigError(
                f"output {path} is not an sftprep build ({describe_entries(entries)}); "
                "--overwrite replaces only an earlier build or an empty directory: choose another -o"
            )
    _remove_stale_staging(path)


def _remove_stale_staging(final: Path) -> None:
    """Remove staging directories of earlier builds of ``final`` that were killed.

    Their names carry the pid of the build that made them; one whose process
    is gone can never be completed.
    """
    parent = final.parent if final.parent.exists() else None
    if parent is None:
        return
    for candidate in parent.glob(f"{STAGING_PREFIX}{glob.escape(final.name)}-*"):
        pid = candidate.name[len(STAGING_PREFIX) + len(final.name) + 1 :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(candidate, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mkdtemp(parent: Path, prefix: str) -> str:
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent)


class ShardStore(Protocol):
    """Where a :class:`ShardWriter`'s finished shards go when not to its directory.

    :class:`sftprep.storage.RemoteOutput` is one: it uploads each shard as soon as
    it is complete.
    """

    def shard_closed(self, path: Path) -> None:
        """A shard file is complete; it may be moved away."""

    def rename(self, old: str, new: str) -> None:
        """Give a stored shard (file name ``old``) its final name ``new``."""


class ShardWriter:
    """Writes record batches into Arrow stream shards of bounded size.

    Args:
        directory: where the shards go (the staging directory).
        schema: the one schema of every batch, with metadata attached.
        shard_bytes: start a new shard once one holds this many bytes.
        store: where finished shards go when not to ``directory`` itself (a
            :class:`ShardStore`, such as the ``store`` of a URL's staged output).
            None keeps shards in ``directory``.
    """

    def __init__(self, directory: Path, schema: pa.Schema, shard_bytes: int, store: ShardStore | None = None):
        self.directory = Path(directory)
        self.store = store
        self.schema = schema
        self.shard_bytes = shard_bytes
        self.shards: list[dict[str, Any]] = []
        self._sink: pa.NativeFile | None = None
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None
        self._rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        """Append rows, splitting the batch where a shard fills up."""
        row_bytes = max(1, batch.nbytes // max(1, batch.num_rows))
        start = 0
        while start < batch.num_rows:
            if self._writer is None:
                self._open()
            assert self._writer is not None and self._sink is not None
            room = self.shard_bytes - self._sink.tell()
            count = min(batch.num_rows - start, max(1, room // row_bytes))
            try:
                self._writer.write_batch(batch.slice(start, count))
            except OSError as exc:
                raise OutputError(f"cannot write to {self.directory}: {exc}") from None
            self._rows += count
            start += count
            if self._sink.tell() >= self.shard_bytes:
                self._close()

    def _open(self) -> None:
        name = f"shard-{len(self.shards):05d}.arrow"
        self._sink = pa.OSFile(str(self.directory / name), "wb")
        self._writer = pa.ipc.new_stream(self._sink, self.schema)
        self.shards.append({"filename": name, "num_rows": 0})

    def _close(self) -> None:
        if self._writer is None:
            return
        assert self._sink is not None
        self._writer.close()
        self._sink.close()
        shard, path = self.shards[-1], self.directory / self.shards[-1]["filename"]
        shard["num_rows"] = self._rows
        shard["num_bytes"] = path.stat().st_size
        shard["sha256"] = sha256_file(path)
        self._writer = self._sink = None
        self._rows = 0
        if self.store is not None:
            self.store.shard_closed(path)

    def finish(self, fingerprint_extra: str = "") -> list[dict[str, Any]]:
        """Close the last shard, give shards their final names, write datasets' files.

        Returns:
            One dict per shard: filename, num_rows, num_bytes, sha256.
        """
        self._close()
        if not self.shards:  # no rows at all: still a loadable, empty dataset
            self._open()
            self._close()
        total = len(self.shards)
        for i, shard in enumerate(self.shards):
            final = f"data-{i:05d}-of-{total:05d}.arrow"
            if self.store is not None:
                self.store.rename(shard["filename"], final)
            else:
                os.rename(self.directory / shard["filename"], self.directory / final)
            shard["filename"] = final
        fingerprint = hashlib.sha256(
            ("".join(s["sha256"] for s in self.shards) + fingerprint_extra).encode()
        ).hexdigest()[:16]
        state: dict[str, Any] = {
            "_data_files": [{"filename": s["filename"]} for s in self.shards],
            "_fingerprint": fingerprint,
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        info = {
            "citation": "",
            "description": "Tokenized supervised fine-tuning rows written by sftprep.",
            "features": json.loads(self.schema.metadata[b"huggingface"])["info"]["features"],
            "homepage": "",
            "license": "",
        }
        write_json(self.directory / "state.json", state)
        write_json(self.directory / "dataset_info.json", info)
        return self.shards
