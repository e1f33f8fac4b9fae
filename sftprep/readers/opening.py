"""Finding and opening inputs: globs, local files, URLs and stdin, as hashed, peekable byte streams."""

from __future__ import annotations

import glob
import hashlib
import io
import os
import sys
from collections.abc import Sequence
from typing import BinaryIO

from sftprep import storage
from sftprep.errors import InputError

SNIFF_BYTES = 64 * 2**10


def expand_inputs(patterns: Sequence[str]) -> list[str]:
    """Expand globs into the list of input names, in a deterministic order.

    Each pattern's matches are sorted; ``-`` (stdin) passes through; a file named twice (even
    through different paths to it) is kept once, at its first place.

    Args:
        patterns: file names, glob patterns (``data/*.jsonl``, ``data/**/*.csv``) or ``-``.

    Returns:
        The input names, as given or as the glob spelled them.

    Raises:
        InputError: a file that does not exist or cannot be read, a directory, or a glob
            that matches no file.
    """
    names: list[str] = []
    seen: set[str] = set()
    for pattern in patterns:
        for name in _expand_one(pattern):
            key = name if name == "-" or storage.is_url(name) else os.path.realpath(name)
            if key not in seen:
                seen.add(key)
                names.append(name)
    return names


def _expand_one(pattern: str) -> list[str]:
    if storage.is_url(pattern):
        return storage.expand_url(pattern)
    # An existing name wins over glob syntax, so a file called "data[1].jsonl" still works.
    if pattern == "-" or os.path.exists(pattern):
        names = [pattern]
    elif any(c in pattern for c in "*?["):
        names = sorted(n for n in glob.glob(pattern, recursive=True) if not os.path.isdir(n))
        if not names:
            raise InputError(f"no file matches '{pattern}'")
    else:
        raise InputError(f"no such file: {pattern}")
    for name in names:
        if name == "-":
            continue
        if os.path.isdir(name):
            raise InputError(f"{name}: is a directory (give files, or a glob such as '{name}/*.jsonl')")
        if not os.access(name, os.R_OK):
            raise InputError(f"{name}: permission denied")
    return names


class Hashing(io.RawIOBase):
    """Pass bytes through, hashing and counting them on the way.

    Sitting under the decompressor and the parser, it sees the input's bytes exactly once, so
    the manifest gets the sha256 and the progress bar gets the byte count without a second read.
    """

    def __init__(self, inner: BinaryIO):
        self._inner = inner
        self.sha = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = self._inner.readinto(buf)  # type: ignore[attr-defined]
        if n:
            self.sha.update(memoryview(buf)[:n])
            self.count += n
        return n or 0


class Peekable(io.RawIOBase):
    """A raw stream that can look ahead as far as sniffing needs.

    ``io.BufferedReader.peek`` returns whatever one read gave (a few bytes from a pipe); sniffing
    needs a whole first line, so the looked-at bytes are kept here and served again first.
    """

    def __init__(self, inner):
        self._inner = inner
        self._head = b""

    def readable(self) -> bool:
        return True

    def peek(self, n: int) -> bytes:
        """Return the next ``n`` bytes (fewer at the end of the input) without consuming them."""
        while len(self._head) < n:
            more = self._inner.read(n - len(self._head))
            if not more:
                break
            self._head += more
        return self._head

    def grow(self) -> bytes | None:
        """Read once more, whatever the input has now (a pipe may give a few bytes).

        Returns everything looked at so far, or None at the end of the input.
        Sniffing grows the head only until it can decide, so records from a pipe
        flow as soon as they arrive.
        """
        more = self._inner.read(SNIFF_BYTES)
        if not more:
            return None
        self._head += more
        return self._head

    def readinto(self, buf) -> int:
        if not self._head:
            return self._inner.readinto(buf) or 0
        n = min(len(buf), len(self._head))
        buf[:n] = self._head[:n]
        self._head = self._head[n:]
        return n


def open_raw(name: str, stdin: BinaryIO | None = None) -> tuple[BinaryIO, BinaryIO | None, int | None]:
    """Open an input's raw bytes.

    Args:
        name: a path, a URL (``s3://...``, read through fsspec), or ``-`` for stdin.
        stdin: the stream to read for ``-`` (default: the unbuffered ``sys.stdin``).

    Returns:
        ``(stream, file, size)``: ``file`` is what the caller must close (``None`` for stdin,
        which is never closed), ``size`` the size in bytes (``None`` for stdin).

    Raises:
        InputError: the file is missing, unreadable or a directory.
    """
    if name == "-":
        # The unbuffered stdin: a read returns what the pipe has, so records flow
        # as they arrive instead of waiting for a full buffer.
        if stdin is not None:
            return stdin, None, None
        return getattr(sys.stdin.buffer, "raw", sys.stdin.buffer), None, None
    if storage.is_url(name):  # s3://, gs://, file://, ... through fsspec
        file, size = storage.open_input(name)
        return file, file, size
    try:
        file = open(name, "rb", buffering=0)  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise InputError(f"no such file: {name}") from None
    except PermissionError:
        raise InputError(f"{name}: permission denied") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a directory") from None
    return file, file, os.fstat(file.fileno()).st_size
