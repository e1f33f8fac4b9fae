"""Inputs and outputs named by URL (``s3://``, ``gs://``, ``file://``, ...) through fsspec.

Local paths keep their own fast paths (plain ``open``, and a staging directory
renamed into place); everything with a ``scheme://`` goes through the fsspec
filesystem for that scheme, which must be installed (``s3fs`` for ``s3://``,
``gcsfs`` for ``gs://``). Credentials and endpoints come from those libraries'
usual environment and config files (``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID``,
``AWS_ENDPOINT_URL``, ``GOOGLE_APPLICATION_CREDENTIALS``, ...): sftprep has no
flags for them and never prints them.

Atomic completion on object storage. A bucket has no atomic rename of a
directory, so a build to a URL keeps the rule "no manifest, not complete"
instead: each shard is written to a local scratch directory and uploaded as
soon as it is full (so scratch space is one shard, not the whole output),
under a temporary name; at the end the shards get their final names
(server-side copies), then the rejects file, ``state.json`` and
``dataset_info.json`` are uploaded, and ``manifest.json`` last. An interrupted
build leaves objects without a manifest, which sftprep (``--overwrite``,
``sftprep merge``, ``sftprep inspect``) treats as an incomplete build. With
``--overwrite``, the old build's manifest is deleted first, when the first new
shard is uploaded, so from then on the old build no longer looks complete.
``datasets.load_from_disk`` does not look at the manifest: check for it (with
:func:`is_complete`) before loading a build from object storage.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from sftprep.errors import ConfigError, InputError, OutputError
from sftprep.manifest import NAME as MANIFEST

# Upload order: everything else first (sorted, shards in order), then these, manifest last.
_LAST = ("state.json", "dataset_info.json", MANIFEST)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_url(name: str | os.PathLike[str]) -> bool:
    """``s3://bucket/x`` -> True; ``data/x.jsonl``, ``-`` -> False."""
    return isinstance(name, str) and bool(_SCHEME.match(name))


def local_path(name: str) -> str | None:
    """The local path a name stands for (``file:///tmp/x`` -> ``/tmp/x``), or None for a remote URL."""
    if name.startswith("file://"):
        return name[len("file://") :]
    return None if is_url(name) else name


def join(base: str | os.PathLike[str], name: str) -> str:
    """``join("s3://b/out", "manifest.json")`` -> ``s3://b/out/manifest.json``."""
    return f"{str(base).rstrip('/')}/{name}" if is_url(str(base)) else str(Path(base) / name)


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem for a URL and the path inside it, with no listings cached.

    fsspec keeps one filesystem object per process and caches directory
    listings in it; a build must see what other processes wrote or removed
    since (an interrupted build, a finished slice), so the cache is dropped.

    Raises:
        ConfigError: no fsspec implementation for the scheme is installed.
    """
    import fsspec.core

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        scheme = url.split("://", 1)[0]
        hint = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}.get(scheme)
        extra = f" (pip install {hint})" if hint else ""
        raise ConfigError(f"cannot use {scheme}:// URLs: {exc}{extra}") from None
    fs.invalidate_cache()
    return fs, path


def _with_scheme(url: str, path: str) -> str:
    return (
        url.split("://", 1)[0] + "://" + path.lstrip("/")
        if not url.startswith("file://")
        else "file://" + path
    )


@contextlib.contextmanager
def _remote_errors(what: str, error: type[Exception] = InputError) -> Iterator[None]:
    """One-line errors naming the URL; the libraries' messages never hold the secret key."""
    try:
        yield
    except FileNotFoundError:
        raise error(f"no such file: {what}") from None
    except PermissionError as exc:
        raise error(f"{what}: permission denied ({exc})") from None
    except (OSError, ValueError) as exc:
        raise error(f"{what}: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # botocore's and google-auth's own errors (no credentials, ...)
        if type(exc).__module__.split(".")[0] in ("botocore", "aiobotocore", "google", "s3fs", "gcsfs"):
            raise error(f"{what}: {type(exc).__name__}: {exc}") from None
        raise


def expand_url(pattern: str) -> list[str]:
    """The URLs a pattern names: itself if it exists, else its glob matches, sorted.

    Raises:
        InputError: nothing matches, or the URL is a directory.
    """
    fs, path = filesystem(pattern)
    with _remote_errors(pattern):
        if fs.exists(path):
            if fs.isdir(path):
                raise InputError(
                    f"{pattern}: is a directory (give files, or a glob such as '{pattern}/*.jsonl')"
                )
            return [pattern]
        if not any(c in path for c in "*?["):
            raise InputError(f"no such file: {pattern}")
        names = sorted(p for p in fs.glob(path) if not fs.isdir(p))
    if not names:
        raise InputError(f"no file matches '{pattern}'")
    return [_with_scheme(pattern, p) for p in names]


def open_input(url: str) -> tuple[BinaryIO, int | None]:
    """Open a URL for reading raw bytes (compression is left to the reader); return it and its size."""
    fs, path = filesystem(url)
    with _remote_errors(url):
        size = fs.size(path)
        return fs.open(path, "rb"), size


def size(name: str) -> int:
    """Bytes in an input (local path or URL)."""
    local = local_path(name)
    if local is not None:
        return os.path.getsize(local)
    fs, path = filesystem(name)
    with _remote_errors(name):
        return int(fs.size(path))


def read_text(name: str) -> str | None:
    """A small text file's content (local path or URL), or None when it does not exist."""
    local = local_path(name)
    if local is not None:
        return Path(local).read_text(encoding="utf-8") if os.path.isfile(local) else None
    fs, path = filesystem(name)
    with _remote_errors(name):
        if not fs.exists(path):
            return None
        return fs.cat_file(path).decode("utf-8")


def exists(name: str) -> bool:
    """Whether anything (file, directory, prefix) is at a local path or URL."""
    local = local_path(name)
    if local is not None:
        return os.path.exists(local)
    fs, path = filesystem(name)
    with _remote_errors(name):
        return bool(fs.exists(path))


def is_complete(output: str) -> bool:
    """Whether a build output (path or URL) is complete: its manifest.json exists."""
    local = local_path(output)
    if local is not None:
        return os.path.isfile(os.path.join(local, MANIFEST))
    fs, path = filesystem(output)
    with _remote_errors(output):
        return bool(fs.exists(f"{path.rstrip('/')}/{MANIFEST}"))


def _listing(fs: Any, path: str) -> list[str]:
    try:
        return [p for p in fs.find(path) if p.rstrip("/") != path.rstrip("/")]
    except FileNotFoundError:
        return []


# What an sftprep build (complete, or interrupted before its manifest) holds at a URL.
_BUILD_FILE = re.compile(
    r"^(shard-\d+\.arrow|data-\d+-of-\d+\.arrow|rejects\.jsonl|tokenizer\.json|state\.json|"
    r"dataset_info\.json|manifest\.json)$"
)


def check_output(output: str, overwrite: bool, inputs: list[str] | tuple[str, ...] = ()) -> None:
    """Fail early when the output cannot be written.

    An existing output needs ``--overwrite``, which replaces only an earlier
    sftprep build or an empty directory (prefix); an input inside the output is
    refused always.

    Raises:
        ConfigError: the output cannot be (re)placed as asked.
    """
    _check_inputs_outside(output, inputs)
    local = local_path(output)
    if local is not None:
        from sftprep.writer import check_output as check_local

        check_local(local, overwrite)
        return
    fs, path = filesystem(output)
    with _remote_errors(output, OutputError):
        existing = _listing(fs, path)
    if existing and not overwrite:
        state = "a complete build" if is_complete(output) else "an incomplete build (no manifest.json)"
        raise ConfigError(f"output {output} exists ({state}); pass --overwrite to replace it")
    root = path.rstrip("/") + "/"
    names = [p[len(root) :] if p.startswith(root) else p for p in existing]
    foreign = [n for n in names if not _BUILD_FILE.match(n)]
    if foreign:
        from sftprep.writer import describe_entries

        raise ConfigError(
            f"output {output} is not an sftprep build ({describe_entries(foreign)}); "
            "--overwrite replaces only an earlier build or an empty prefix: choose another -o"
        )


def _check_inputs_outside(output: str, inputs: list[str] | tuple[str, ...]) -> None:
    """Refuse an input inside the output: replacing the output would delete it."""
    local = local_path(output)
    out = os.path.realpath(local) if local is not None else output.rstrip("/")
    for name in inputs:
        if name == "-":
            continue
        where = local_path(name)
        if (where is None) != (local is None):
            continue
        path = os.path.realpath(where) if where is not None else name
        if path == out or path.startswith(out.rstrip(os.sep if local is not None else "/") + ("/")):
            raise ConfigError(
                f"input {name} is inside the output {output}: the build would replace it; choose another -o"
            )


class RemoteOutput:
    """A build output at a URL, completed by uploading its manifest last.

    The same interface as :class:`sftprep.writer.StagedOutput`: write into the
    local scratch directory ``path``, then :meth:`commit`. It is also the
    ``store`` of a :class:`sftprep.writer.ShardWriter`, which hands it each
    finished shard to upload. Leaving with an exception removes what was
    uploaded (best effort; a killed build leaves objects without a manifest).
    ``SFTPREP_SCRATCH`` names the scratch directory's parent (default: the
    system's temporary directory).
    """

    def __init__(self, url: str, overwrite: bool = False):
        self.url = url.rstrip("/")
        self.overwrite = overwrite
        check_output(self.url, overwrite)
        self.fs, self.root = filesystem(self.url)
        scratch = os.environ.get("SFTPREP_SCRATCH") or None
        self.path = Path(tempfile.mkdtemp(prefix="sftprep-upload-", dir=scratch))
        self.uploaded: list[str] = []
        self._cleared = False

    def __enter__(self) -> RemoteOutput:
        return self

    @property
    def store(self) -> RemoteOutput:
        """The :class:`sftprep.writer.ShardStore` for its shards: itself (each shard is uploaded when done)."""
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self.uploaded:
            # Best effort: without a manifest they never look complete anyway.
            with contextlib.suppress(Exception):
                self.fs.rm(self.uploaded)
        self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def _put(self, local: Path, name: str) -> None:
        with _remote_errors(self.url, OutputError):
            if not self._cleared:
                if not self.overwrite and _listing(self.fs, self.root):
                    # Object stores have no atomic rename: check as late as possible.
                    raise OutputError(
                        f"output {self.url} appeared while this build ran (another build?); "
                        "it was not replaced and this build was discarded"
                    )
                self._remove_old()
                self._cleared = True
            self.fs.put_file(str(local), f"{self.root}/{name}")
        self.uploaded.append(f"{self.root}/{name}")

    def shard_closed(self, path: Path) -> None:
        """Upload a finished shard (under its temporary name) and free its scratch space."""
        self._put(path, path.name)
        path.unlink()

    def rename(self, old: str, new: str) -> None:
        """Give an uploaded shard its final name (a server-side copy on object stores)."""
        with _remote_errors(self.url, OutputError):
            self.fs.mv(f"{self.root}/{old}", f"{self.root}/{new}")
        self.uploaded[self.uploaded.index(f"{self.root}/{old}")] = f"{self.root}/{new}"

    def commit(self) -> None:
        """Upload the files left in scratch (shards went already), manifest.json last."""
        for name in upload_order(p.name for p in self.path.iterdir()):
            self._put(self.path / name, name)
        self.discard()

    def _remove_old(self) -> None:
        old = _listing(self.fs, self.root)
        if not old:
            return
        # Its manifest goes first, so that from now on the old build no longer looks complete.
        manifest = f"{self.root}/{MANIFEST}"
        if manifest in old:
            self.fs.rm_file(manifest)
        rest = [p for p in old if p != manifest]
        if rest:
            self.fs.rm(rest)


def upload_order(names: Any) -> list[str]:
    """Data first, then datasets' files, manifest.json last: ``["a.arrow", ..., "manifest.json"]``."""
    names = list(names)
    return sorted(n for n in names if n not in _LAST) + [n for n in _LAST if n in names]


def staged_output(output: str, overwrite: bool = False):
    """Where a build writes: a staging directory renamed into place, or uploaded to a URL."""
    local = local_path(output)
    if local is not None:
        from sftprep.writer import StagedOutput

        return StagedOutput(local, overwrite=overwrite)
    return RemoteOutput(output, overwrite=overwrite)


def fetch_build(url: str, directory: str | os.PathLike[str]) -> Path:
    """Download a complete build from a URL into a local directory, for reading.

    Raises:
        InputError: the build has no manifest.json (incomplete or not a build).
    """
    if not is_complete(url):
        raise InputError(
            f"{url}: no manifest.json: an incomplete build (interrupted?) or not an sftprep build"
        )
    fs, root = filesystem(url)
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    with _remote_errors(url):
        for path in fs.find(root):
            name = path[len(root.rstrip("/")) + 1 :]
            if name and "/" not in name:
                fs.get_file(path, str(target / name))
    return target


def open_binary(name: str) -> BinaryIO:
    """A file (local path or URL) opened for reading bytes."""
    local = local_path(name)
    if local is not None:
        try:
            return open(local, "rb")
        except OSError as exc:
            raise InputError(f"{name}: cannot open: {exc.strerror}") from None
    fs, path = filesystem(name)
    with _remote_errors(name):
        return fs.open(path, "rb")
