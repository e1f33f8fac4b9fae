"""What every reader shares: the :class:`Record` it yields, the format registry, the messages.

A format reader is a generator function ``read(opened, lazy) -> Iterator[Record]`` over an
:class:`Opened` input (decompressed, sniffed, positioned after any BOM). It registers itself
with :func:`register`; ``sftprep/readers/__init__.py`` imports each format module once, so a
new format is one new module (and its import line there).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sftprep.errors import RecordError

STDIN_NAME = "<stdin>"
DEFAULT_MAX_RECORD_BYTES = 16 * 2**20
# Large reads keep the per-call overhead out of the hot path; tests shrink it to hit boundaries.
# Read as ``base.CHUNK_SIZE`` at call time (never imported by name), so that patching it here
# reaches every reader.
CHUNK_SIZE = 2**20
NUL = b"\0"


@dataclass(frozen=True, slots=True)
class Record:
    """One input record, parsed or marked bad.

    Attributes:
        source: the input's name as the user gave it; ``"<stdin>"`` for ``-``.
        number: 1-based physical line where the record starts (unit ``"line"``: JSONL, CSV,
            TSV) or record number (unit ``"record"``: JSON array or objects, Parquet).
        unit: ``"line"`` or ``"record"``.
        data: the parsed object; ``None`` when ``error`` is set.
        error: why the record is bad; ``error.where == self.where``.
        raw: the record's text where it is cheap to keep, for the rejects file: the JSONL
            line, the CSV record's lines, ``json.dumps`` of a JSON element; ``None`` for Parquet.
        pending: a JSON Lines record read with ``records(lazy=True)``: only ``raw`` is set
            yet; :func:`~sftprep.readers.settle` parses it (into ``data`` or ``error``).
    """

    source: str
    number: int
    unit: str
    data: dict | None
    error: RecordError | None = None
    raw: str | None = None
    pending: bool = False

    def __reduce__(self) -> tuple:
        # Records travel to worker processes by the thousand: rebuilding them from a
        # tuple unpickles about twice as fast as the default for a slotted dataclass.
        return (Record, (self.source, self.number, self.unit, self.data, self.error, self.raw, self.pending))

    @property
    def fields(self) -> dict:
        """The parsed record; only for records without an error."""
        assert self.data is not None, f"{self.where}: a bad record has no fields"
        return self.data

    @property
    def where(self) -> str:
        """``data.jsonl:17`` for a line, ``data.json: record 17`` for a record."""
        return where(self.source, self.number, self.unit)


def where(source: str, number: int, unit: str) -> str:
    """The place of a record in messages: ``data.jsonl:17`` or ``data.json: record 17``."""
    return f"{source}:{number}" if unit == "line" else f"{source}: record {number}"


def bad_record(
    source: str, number: int, reason: str, message: str, raw: str | None = None, unit: str = "line"
) -> Record:
    """A record that carries an error (reason code and message) instead of data."""
    return Record(source, number, unit, None, RecordError(where(source, number, unit), reason, message), raw)


@dataclass
class Opened:
    """An input as a format reader gets it: opened, decompressed and sniffed.

    Attributes:
        source: the name used in messages (``<stdin>`` for ``-``).
        format: the sniffed or forced format (one reader may serve several, as CSV and TSV).
        stream: the decompressed bytes, positioned after any UTF-8 BOM.
        offset: the byte offset of ``stream``'s position in the decompressed input (3 after
            a BOM), so that messages can name byte offsets of the file.
        max_record_bytes: the size limit of one record.
        local_path: the input as a plain local file, when it is one (for readers that need
            random access, as Parquet does); ``None`` for stdin, URLs and compressed files.
        hash_up_to: for a reader that reads ``local_path`` itself: hash the raw input up to
            this fraction of its size, so the byte count tracks progress.
    """

    source: str
    format: str
    stream: io.RawIOBase
    offset: int
    max_record_bytes: int
    local_path: str | None
    hash_up_to: Callable[[float], None]

    def buffered(self) -> io.BufferedReader:
        """The stream, buffered for readline (one buffer per reader: call it once)."""
        return io.BufferedReader(self.stream, CHUNK_SIZE)

    def bad(self, number: int, unit: str, reason: str, message: str, raw: str | None = None) -> Record:
        """A bad record of this input."""
        return bad_record(self.source, number, reason, message, raw, unit)


@dataclass(frozen=True)
class Format:
    """An input format: its name, reader, and what identifies it.

    Attributes:
        name: the ``--format`` value.
        read: ``read(opened, lazy) -> Iterator[Record]``; ``lazy`` may be ignored.
        extensions: file name endings (before any ``.gz``) that suggest the format.
        magic: leading bytes that identify a binary format; such a format is read as
            bytes (no BOM is skipped).
    """

    name: str
    read: Callable[[Opened, bool], Iterator[Record]]
    extensions: tuple[str, ...] = ()
    magic: bytes = b""


REGISTRY: dict[str, Format] = {}


def register(*formats: Format) -> None:
    """Make formats known to sniffing, ``--format`` and :class:`~sftprep.readers.InputFile`."""
    for fmt in formats:
        REGISTRY[fmt.name] = fmt


# -- messages and helpers shared by the text formats -----------------------------------------


def discard_line(readline: Callable[[int], bytes]) -> int:
    """Read and drop the rest of an overlong line; return how many bytes that was."""
    skipped = 0
    while part := readline(CHUNK_SIZE):
        skipped += len(part)
        if part.endswith(b"\n"):
            break
    return skipped


def size(n: int | float) -> str:
    """Human size: 16 MiB, 20.1 MiB, 1.5 KiB, 100 bytes."""
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def too_large(n: int, limit: int) -> str:
    """The message of a record over the size limit."""
    return f"record is {size(n)}, over the {size(limit)} limit (raise it with --max-record-bytes)"


def bad_utf8(offset: int) -> str:
    """The message of an invalid UTF-8 byte, with the fix."""
    return (
        f"invalid UTF-8 at byte offset {offset} of the file"
        " (re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8)"
    )


def nul(offset: int) -> str:
    """The message of a NUL byte."""
    return f"NUL byte at byte offset {offset}"


def lossy(line: bytes) -> str:
    """A bad line as text for the rejects file: undecodable bytes kept as \\x escapes."""
    return line.decode(errors="backslashreplace").rstrip("\r\n")
