"""One input, opened and sniffed, read record by record: :class:`InputFile`."""

from __future__ import annotations

import contextlib
import gzip
import zlib
from collections.abc import Iterator, Sequence
from typing import BinaryIO

from sftprep import storage
from sftprep.errors import ConfigError, InputError
from sftprep.readers import base
from sftprep.readers.base import DEFAULT_MAX_RECORD_BYTES, REGISTRY, STDIN_NAME, Opened, Record
from sftprep.readers.opening import Hashing, Peekable, open_raw
from sftprep.readers.sniff import sniff


class InputFile:
    """One input: opened and sniffed on construction, read by :meth:`records`.

    Args:
        name: a path, a URL (``s3://...``, read through fsspec), or ``-`` for stdin.
        max_record_bytes: records larger than this are reported as ``record_too_large``
            and never held in memory whole.
        format: one of :data:`~sftprep.readers.FORMATS` to skip sniffing.
        stdin: the stream to read for ``-`` (default ``sys.stdin.buffer``).

    Attributes:
        name: as given. ``source`` is the name used in messages (``<stdin>`` for ``-``).
        format: ``jsonl``, ``json``, ``csv``, ``tsv`` or ``parquet`` (after decompression).
        compression: ``"gzip"`` or ``None``.
        size: the file size in bytes, ``None`` for stdin.

    Raises:
        InputError: the input is missing, unreadable, not valid gzip, or UTF-16/32 encoded.
        ConfigError: an unknown ``format``.
    """

    def __init__(
        self,
        name: str,
        *,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        format: str | None = None,
        stdin: BinaryIO | None = None,
    ):
        if format is not None and format not in REGISTRY:
            raise ConfigError(f"unknown input format '{format}' (choose from {', '.join(REGISTRY)})")
        self.name = name
        self.source = STDIN_NAME if name == "-" else name
        self.max_record_bytes = max_record_bytes
        self.size: int | None = None
        self.compression: str | None = None
        self._file: BinaryIO | None = None
        self._started = False
        self._offset = 0  # where parsing starts in the decompressed input: 3 after a BOM
        try:
            with self._read_errors():
                raw, self._file, self.size = open_raw(name, stdin)
                self._hashing = Hashing(raw)
                self._stream = self._decompressed(Peekable(self._hashing))
                self.format, self._offset = sniff(self._stream, name, self.source, format, max_record_bytes)
        except BaseException:
            self.close()
            raise

    @property
    def sha256(self) -> str:
        """Hex sha256 of the raw (still compressed) bytes; complete once records() is exhausted."""
        return self._hashing.sha.hexdigest()

    @property
    def bytes_read(self) -> int:
        """Raw bytes consumed so far, for throughput and progress."""
        return self._hashing.count

    def __enter__(self) -> InputFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (never the caller's stdin stream)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def records(self, lazy: bool = False) -> Iterator[Record]:
        """Yield every record of the input, in order; bad ones carry an ``error``.

        The input is a stream, so this can be called once per InputFile.

        Args:
            lazy: leave JSON Lines records ``pending`` (their text only, for
                :func:`~sftprep.readers.settle`). Bad lines (not UTF-8, NUL bytes, too large)
                are reported here all the same.

        Raises:
            InputError: the input cannot be read as a whole (corrupt gzip or Parquet, no CSV
                header, an I/O error).
        """
        if self._started:
            raise RuntimeError(f"{self.source}: records() can be read only once")
        self._started = True
        opened = Opened(
            source=self.source,
            format=self.format,
            stream=self._stream,
            offset=self._offset,
            max_record_bytes=self.max_record_bytes,
            local_path=self._local_path(),
            hash_up_to=self._hash_up_to,
        )
        try:
            with self._read_errors():
                yield from REGISTRY[self.format].read(opened, lazy)
                # Read what parsing left (bytes after the gzip stream, the rest after a broken
                # JSON array), so the hash covers the whole input.
                while self._hashing.read(base.CHUNK_SIZE):
                    pass
        finally:
            self.close()

    def _local_path(self) -> str | None:
        """The input as a plain local file a reader may open itself, if it is one."""
        if self._file is not None and self.compression is None and not storage.is_url(self.name):
            return self.name
        return None

    def _hash_up_to(self, fraction: float) -> None:
        """Hash the file alongside a reader's own reads, so bytes_read tracks progress."""
        if self.size is None:
            return
        while self._hashing.count < self.size * fraction and self._hashing.read(base.CHUNK_SIZE):
            pass

    @contextlib.contextmanager
    def _read_errors(self) -> Iterator[None]:
        """Turn low-level read failures into one-line InputErrors naming the input."""
        try:
            yield
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            if self.compression is None:
                raise
            raise InputError(f"{self.source}: not a valid gzip file: {e}") from None
        except OSError as e:
            raise InputError(f"{self.source}: cannot read: {e.strerror or e}") from None

    def _decompressed(self, raw: Peekable) -> Peekable:
        if self.source.endswith(".gz") or raw.peek(2) == b"\x1f\x8b":
            self.compression = "gzip"
            return Peekable(gzip.GzipFile(fileobj=raw, mode="rb"))
        return raw


def read_records(names: Sequence[str], **kwargs) -> Iterator[Record]:
    """Yield the records of several inputs in turn.

    Args:
        names: input names, as returned by :func:`~sftprep.readers.expand_inputs`.
        **kwargs: passed to :class:`InputFile` (``max_record_bytes``, ``format``, ``stdin``).

    Raises:
        InputError: an input that cannot be read as a whole.
    """
    for name in names:
        with InputFile(name, **kwargs) as f:
            yield from f.records()
