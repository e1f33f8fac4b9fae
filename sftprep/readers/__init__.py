"""Read training records from JSONL, JSON, CSV/TSV and Parquet inputs, one at a time.

The reader is the first step of the build (read -> render -> tokenize -> label -> write). It
streams: memory stays flat however large the input, except for one record at a time (at most
``max_record_bytes``). It never loses a record silently: every record it meets is yielded, either
with its parsed ``data`` or with an ``error`` saying what is wrong, so the build can stop on it or
count it under its reason code. Only problems with a whole file (missing, unreadable, not gzip,
no CSV header, ...) raise :class:`~sftprep.errors.InputError`.

A ``.jsonl`` or ``.ndjson`` name (also ``.gz``) means JSON Lines. Other formats are sniffed from
the content, not trusted from the file name (``.json`` files are often JSON Lines): ``[``
starts a JSON array; ``{`` starts JSON Lines, unless the first line is an unfinished JSON value,
which makes it one (or more) pretty-printed JSON objects; ``PAR1`` is Parquet; anything else is CSV or TSV, told by the extension or by the header line. Gzip is
decompressed by the ``.gz`` suffix or by its magic bytes.

Example::

    for record in read_records(expand_inputs(["data/*.jsonl"])):
        if record.error:
            print(record.error)          # data.jsonl:17: malformed JSON: ...
        else:
            use(record.data)
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import functools
import glob
import gzip
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from sftprep import storage
from sftprep.errors import ConfigError, InputError, RecordError

__all__ = ["FORMATS", "InputFile", "Record", "expand_inputs", "read_records", "settle"]

FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")
STDIN_NAME = "<stdin>"
DEFAULT_MAX_RECORD_BYTES = 16 * 2**20
# Large reads keep the per-call overhead out of the hot path; tests shrink it to hit boundaries.
CHUNK_SIZE = 2**20
SNIFF_BYTES = 64 * 2**10
PARQUET_BATCH_ROWS = 1024

_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# Byte-order marks of encodings sftprep does not read, longest first.
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32 (little-endian)"),
    (codecs.BOM_UTF32_BE, "UTF-32 (big-endian)"),
    (codecs.BOM_UTF16_LE, "UTF-16 (little-endian)"),
    (codecs.BOM_UTF16_BE, "UTF-16 (big-endian)"),
)
_JSON_WS = b" \t\r\n"
_NUL = b"\0"
_WS_RE = re.compile(r"[ \t\r\n]*")
# A JSON string (``closed`` unset when the text ends inside it) or a bracket.
_SCAN_RE = re.compile(r'"(?:[^"\\]|\\.)*(?P<closed>")?|[\[\]{}]', re.DOTALL)
_DECODER = json.JSONDecoder()
_STOPPED = "; the rest of the file cannot be read"
# Python's json parser and pickle recurse once per nesting level and give up near
# sys.getrecursionlimit() (1000); training records are never nested this deep.
MAX_DEPTH = 200
_TOO_DEEP = f"JSON nested too deeply (over {MAX_DEPTH} levels of arrays or objects)"


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
            yet; :func:`settle` parses it (into ``data`` or ``error``).
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
        return _where(self.source, self.number, self.unit)


def _where(source: str, number: int, unit: str) -> str:
    return f"{source}:{number}" if unit == "line" else f"{source}: record {number}"


def settle(records: list[Record]) -> list[Record]:
    """The records with every pending one parsed: its ``data``, or its ``error``.

    A build reads JSON Lines with ``records(lazy=True)`` and settles each batch
    in the worker that transforms it, so that the main process, which reads and
    writes for all workers, does not parse JSON too, and a line crosses to the
    worker as one string instead of a parsed object and its text.
    """
    return [_parse_line(r.source, r.number, r.raw or "") if r.pending else r for r in records]


def _parse_line(source: str, number: int, raw: str) -> Record:
    """A JSON Lines record from its line (without the line ending)."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        return _bad_record(
            source, number, "malformed_json", f"malformed JSON: {e.msg} at column {e.colno}", raw
        )
    except RecursionError:
        return _bad_record(source, number, "too_deeply_nested", _TOO_DEEP, raw)
    if type(data) is not dict:
        return _bad_record(source, number, "not_an_object", _not_an_object(data), raw)
    if _too_deep(raw, data):
        return _bad_record(source, number, "too_deeply_nested", _TOO_DEEP, raw)
    return Record(source, number, "line", data, None, raw)


def _too_deep(raw: str, data: object) -> bool:
    """Nested deeper than MAX_DEPTH: such a record would not pickle for a worker process.

    Counting brackets in the text is a fast upper bound on the depth (one C pass); only
    a record with many brackets is walked.
    """
    if raw.count("[") + raw.count("{") <= MAX_DEPTH:
        return False
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return False


def _bad_record(
    source: str, number: int, reason: str, message: str, raw: str | None, unit: str = "line"
) -> Record:
    return Record(source, number, unit, None, RecordError(_where(source, number, unit), reason, message), raw)


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


def read_records(names: Sequence[str], **kwargs) -> Iterator[Record]:
    """Yield the records of several inputs in turn.

    Args:
        names: input names, as returned by :func:`expand_inputs`.
        **kwargs: passed to :class:`InputFile` (``max_record_bytes``, ``format``, ``stdin``).

    Raises:
        InputError: an input that cannot be read as a whole.
    """
    for name in names:
        with InputFile(name, **kwargs) as f:
            yield from f.records()


class _Hashing(io.RawIOBase):
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


class _Peekable(io.RawIOBase):
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


class InputFile:
    """One input: opened and sniffed on construction, read by :meth:`records`.

    Args:
        name: a path, a URL (``s3://...``, read through fsspec), or ``-`` for stdin.
        max_record_bytes: records larger than this are reported as ``record_too_large``
            and never held in memory whole.
        format: one of :data:`FORMATS` to skip sniffing.
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
        if format is not None and format not in FORMATS:
            raise ConfigError(f"unknown input format '{format}' (choose from {', '.join(FORMATS)})")
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
                self._hashing = _Hashing(self._open(stdin))
                self._stream = self._decompressed(_Peekable(self._hashing))
                self.format = self._sniff(format)
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
            lazy: leave JSON Lines records ``pending`` (their text only, for :func:`settle`).
                Bad lines (not UTF-8, NUL bytes, too large) are reported here all the same.

        Raises:
            InputError: the input cannot be read as a whole (corrupt gzip or Parquet, no CSV
                header, an I/O error).
        """
        if self._started:
            raise RuntimeError(f"{self.source}: records() can be read only once")
        self._started = True
        readers: dict[str, Callable[[], Iterator[Record]]] = {
            "jsonl": functools.partial(self._jsonl_records, lazy),
            "json": self._json_records,
            "csv": self._csv_records,
            "tsv": self._csv_records,
            "parquet": self._parquet_records,
        }
        try:
            with self._read_errors():
                yield from readers[self.format]()
                # Read what parsing left (bytes after the gzip stream, the rest after a broken
                # JSON array), so the hash covers the whole input.
                while self._hashing.read(CHUNK_SIZE):
                    pass
        finally:
            self.close()

    # -- opening and sniffing -------------------------------------------------------------

    def _open(self, stdin: BinaryIO | None) -> BinaryIO:
        if self.name == "-":
            # The unbuffered stdin: a read returns what the pipe has, so records flow
            # as they arrive instead of waiting for a full buffer.
            if stdin is not None:
                return stdin
            return getattr(sys.stdin.buffer, "raw", sys.stdin.buffer)
        if storage.is_url(self.name):  # s3://, gs://, file://, ... through fsspec
            self._file, self.size = storage.open_input(self.name)
            return self._file
        try:
            self._file = open(self.name, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        except FileNotFoundError:
            raise InputError(f"no such file: {self.name}") from None
        except PermissionError:
            raise InputError(f"{self.name}: permission denied") from None
        except IsADirectoryError:
            raise InputError(f"{self.name}: is a directory") from None
        self.size = os.fstat(self._file.fileno()).st_size
        return self._file

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

    def _decompressed(self, raw: _Peekable) -> _Peekable:
        if self.source.endswith(".gz") or raw.peek(2) == b"\x1f\x8b":
            self.compression = "gzip"
            return _Peekable(gzip.GzipFile(fileobj=raw, mode="rb"))
        return raw

    def _sniff(self, forced: str | None) -> str:
        head = self._stream.peek(4)
        # UTF-32 first: its little-endian BOM starts with UTF-16's.
        encoding = next((name for bom, name in _WIDE_BOMS if head.startswith(bom)), None)
        if encoding is not None:
            raise InputError(
                f"{self.source}: the file is {encoding} encoded, not UTF-8"
                f" (re-encode it, e.g. iconv -f {encoding.split()[0].lower()} -t utf-8)"
            )
        if forced == "parquet" or (forced is None and head == b"PAR1"):
            return "parquet"
        if head.startswith(codecs.BOM_UTF8):
            self._stream.read(3)
            self._offset = 3
        if forced:
            return forced
        if self._format_from_name() == "jsonl" and not self.name.endswith((".json", ".json.gz")):
            # .jsonl/.ndjson say JSON Lines: a broken first line is one bad record, not a sign
            # that the file is one JSON document (only .json names are often either).
            return "jsonl"
        first = self._first_byte()
        if first == b"[":
            return "json"
        if first == b"{":
            return self._brace_format()
        if self.name == "-":
            return "jsonl"  # the documented default for stdin; --format csv for CSV
        return self._format_from_name() or self._format_from_header()

    def _first_byte(self) -> bytes:
        """The first non-whitespace byte, or b"" for an empty (or all-whitespace) input."""
        head: bytes | None = self._stream.peek(0)
        while head is not None:
            rest = head.lstrip(_JSON_WS)
            if rest:
                return rest[:1]
            if len(head) > self.max_record_bytes:
                return b""
            head = self._stream.grow()
        return b""

    def _brace_format(self) -> str:
        """Tell JSON Lines from pretty-printed objects by the input's first line."""
        text: bytes | None = self._stream.peek(0)
        while True:
            assert text is not None
            newline = text.lstrip(_JSON_WS).find(b"\n")
            if newline >= 0:
                break
            if len(text) > self.max_record_bytes:
                return "jsonl"  # a first line too long to be anything but JSONL
            grown = self._stream.grow()
            if grown is None:
                return "jsonl"  # one line
            text = grown
        try:
            line = text.lstrip(_JSON_WS)[:newline].decode().rstrip()
            json.loads(line)
        except UnicodeDecodeError:
            return "jsonl"
        except json.JSONDecodeError as e:
            # A value that goes on to the next line fails exactly at the end of the first line;
            # an error earlier in the line is just a bad first JSONL record.
            return "json" if e.pos >= len(line) else "jsonl"
        return "jsonl"

    def _format_from_name(self) -> str | None:
        stem = self.name[:-3] if self.name.endswith(".gz") else self.name
        return _EXTENSIONS.get(os.path.splitext(stem)[1].lower())

    def _format_from_header(self) -> str:
        line = self._stream.peek(SNIFF_BYTES).split(b"\n", 1)[0]
        if line.count(b"\t") > 0 and line.count(b"\t") >= line.count(b","):
            return "tsv"
        if b"," in line:
            return "csv"
        if not line.strip():
            return "jsonl"  # empty input: zero records
        raise InputError(
            f"{self.source}: cannot tell the format: not JSON, JSON Lines or Parquet, and the"
            " first line has no comma or tab (name the file .csv/.tsv or pass --format)"
        )

    def _text_stream(self) -> io.BufferedReader:
        return io.BufferedReader(self._stream, CHUNK_SIZE)

    def _bad(self, number: int, unit: str, reason: str, message: str, raw: str | None = None) -> Record:
        return _bad_record(self.source, number, reason, message, raw, unit)

    # -- JSON Lines ---------------------------------------------------------------------------

    def _jsonl_records(self, lazy: bool = False) -> Iterator[Record]:
        limit = self.max_record_bytes
        readline = self._text_stream().readline
        offset = self._offset
        number = 0
        # A bounded readline keeps an overlong line from being read into memory whole.
        while line := readline(limit + 1):
            number += 1
            start = offset
            offset += len(line)
            if len(line) > limit and not line.endswith(b"\n"):
                rest = _discard_line(readline)
                offset += rest
                yield self._bad(number, "line", "record_too_large", _too_large(len(line) + rest, limit))
            elif line.isspace():
                continue
            elif _NUL in line:
                yield self._bad(number, "line", "nul_byte", _nul(start + line.index(_NUL)), _lossy(line))
            else:
                try:
                    text = line.decode()
                except UnicodeDecodeError as e:
                    yield self._bad(number, "line", "invalid_utf8", _bad_utf8(start + e.start), _lossy(line))
                    continue
                raw = text.rstrip("\r\n")
                if lazy:
                    yield Record(self.source, number, "line", None, None, raw, pending=True)
                else:
                    yield _parse_line(self.source, number, raw)

    # -- JSON: an array, or one or more top-level objects --------------------------------------

    def _json_records(self) -> Iterator[Record]:
        text = _JsonText(self._text_stream(), self._offset, self.max_record_bytes)
        number = 0
        try:
            text.skip_ws()
            if text.peek() == "[":
                text.pos += 1
                items = text.array_items()
            else:
                items = text.top_level_values()
            for number, item in enumerate(items, 1):  # number is read in the except below
                yield self._json_record(number, item)
        except _Broken as e:
            # The structure is lost, so there is no next element to resync on: report the
            # break as the record that would have come next, and stop.
            yield self._bad(number + 1, "record", e.reason, e.message + _STOPPED)

    def _json_record(self, number: int, item: object) -> Record:
        if isinstance(item, _TooDeep):
            return self._bad(number, "record", "too_deeply_nested", _TOO_DEEP)
        if isinstance(item, _TooLarge):
            message = _too_large(item.size, self.max_record_bytes)
            return self._bad(number, "record", "record_too_large", message)
        try:
            raw = json.dumps(item, ensure_ascii=False)
        except RecursionError:
            return self._bad(number, "record", "too_deeply_nested", _TOO_DEEP)
        if type(item) is not dict:
            return self._bad(number, "record", "not_an_object", _not_an_object(item), raw)
        if _too_deep(raw, item):
            return self._bad(number, "record", "too_deeply_nested", _TOO_DEEP, raw)
        return Record(self.source, number, "record", item, None, raw)

    # -- CSV and TSV ----------------------------------------------------------------------------

    def _csv_records(self) -> Iterator[Record]:
        delimiter = "\t" if self.format == "tsv" else ","
        lines = _CsvLines(self._text_stream(), self._offset, self.max_record_bytes)
        # The csv module's own field limit (128 KiB by default) must not reject records we
        # accept. It is process-wide; raising it is harmless.
        csv.field_size_limit(max(csv.field_size_limit(), self.max_record_bytes))
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        header = self._csv_header(reader, lines)
        while True:
            try:
                row = next(reader, None)
            except _LineTooLarge:
                start, _, problem = lines.take()  # the problem is record_too_large
                assert problem is not None
                yield self._bad(start, "line", *problem)
                # A fresh reader starts clean on the next line (the old one is mid-record).
                reader = csv.reader(lines, delimiter=delimiter, strict=True)
                continue
            except csv.Error as e:
                start, raw, _ = lines.take()
                yield self._bad(start, "line", *_csv_problem(str(e), self.max_record_bytes), raw)
                continue
            if row is None:
                return
            start, raw, problem = lines.take()
            if not row:
                continue  # a blank line is not a record
            if problem:
                yield self._bad(start, "line", *problem, raw)
            elif len(row) != len(header):
                yield self._bad(start, "line", "csv_field_count", _field_count(header, row), raw)
            else:
                yield Record(self.source, start, "line", dict(zip(header, row, strict=True)), None, raw)

    def _csv_header(self, reader, lines: _CsvLines) -> list[str]:
        """Read and check the header row: column names must be present and distinct."""
        try:
            row: list[str] | None = []
            while not row:
                row = next(reader, None)
                start, _, problem = lines.take()
                if row is None:
                    raise InputError(f"{self.source}: empty {self.format.upper()} file: no header row")
        except (_LineTooLarge, csv.Error) as e:
            raise InputError(f"{self.source}:{lines.take()[0]}: cannot read the header row: {e}") from None
        where = f"{self.source}:{start}"
        if problem:
            raise InputError(f"{where}: {problem[1]} in the header row")
        seen: dict[str, int] = {}
        for column, name in enumerate(row, 1):
            if not name.strip():
                raise InputError(f"{where}: empty column name in the header row (column {column})")
            if name in seen:
                columns = f"columns {seen[name]} and {column}"
                raise InputError(f"{where}: duplicate column name '{name}' in the header row ({columns})")
            seen[name] = column
        return row

    # -- Parquet --------------------------------------------------------------------------------

    def _parquet_records(self) -> Iterator[Record]:
        import pyarrow.lib
        import pyarrow.parquet as pq  # imported here: pyarrow takes a while to load

        with contextlib.ExitStack() as stack:
            try:
                parquet = pq.ParquetFile(self._parquet_path(stack))
                total = parquet.metadata.num_rows or 1
                number = 0
                for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                    for row in batch.to_pylist():
                        number += 1
                        yield Record(self.source, number, "record", row)
                    self._hash_up_to(number / total)
            except pyarrow.lib.ArrowException as e:
                raise InputError(f"{self.source}: not a valid Parquet file: {e}") from None

    def _parquet_path(self, stack: contextlib.ExitStack):
        """A seekable copy of the input for pyarrow: the file itself, or a spooled temp file."""
        if self._file is not None and self.compression is None and not storage.is_url(self.name):
            return self.name
        # Parquet needs random access, which stdin and gzip cannot give.
        spool = stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 - closed by the stack
        while chunk := self._stream.read(CHUNK_SIZE):
            spool.write(chunk)
        spool.seek(0)
        return spool

    def _hash_up_to(self, fraction: float) -> None:
        """Hash the file alongside pyarrow's reads, so bytes_read tracks progress."""
        if self.size is None:
            return
        while self._hashing.count < self.size * fraction and self._hashing.read(CHUNK_SIZE):
            pass


# -- incremental JSON -------------------------------------------------------------------------


class _Broken(Exception):
    """The JSON structure is broken (or a record too large to skip): stop reading the file."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class _TooDeep:
    """Stands in for a complete JSON value nested too deeply to parse."""


@dataclass(slots=True)
class _TooLarge:
    """Stands in for a complete JSON value that is over the size limit."""

    size: int


class _JsonText:
    """A sliding window of decoded text over a binary stream, for parsing JSON incrementally.

    ``json.JSONDecoder.raw_decode`` parses one value from a string, so the window only has to
    hold the value being parsed: after each value, consumed text is dropped at the next read.
    Bytes are decoded chunk by chunk; an invalid UTF-8 or NUL byte ends the readable text there.
    """

    def __init__(self, stream: BinaryIO, offset: int, limit: int):
        self._read = stream.read
        self.limit = limit
        self.buf = ""
        self.pos = 0
        self.eof = False
        self._end = offset  # byte offset in the input just after self.buf
        self._tail = b""  # the start of a UTF-8 sequence cut by the chunk end
        self._bad: tuple[str, str] | None = None  # (reason, message) where readable text ends

    def offset(self, index: int) -> int:
        """Byte offset in the input of ``self.buf[index]`` (computed only for error messages)."""
        return self._end - len(self.buf[index:].encode())

    def fill(self) -> bool:
        """Drop consumed text, read one more chunk; False at the end of the input.

        Raises:
            _Broken: the unparsed text is over the size limit, or bad bytes were reached.
        """
        if len(self.buf) - self.pos > self.limit:
            message = f"record is over the {_size(self.limit)} limit (raise it with --max-record-bytes)"
            raise _Broken("record_too_large", message)
        if self._bad:
            raise _Broken(*self._bad)
        if self.eof:
            return False
        # Read at least as much as is pending, so re-parsing a long value stays linear overall.
        data = self._read(max(CHUNK_SIZE, len(self.buf) - self.pos))
        if not data:
            self.eof = True
            if self._tail:
                self._bad = ("invalid_utf8", _bad_utf8(self._end))
                raise _Broken(*self._bad)
            return False
        data, self._tail = _split_utf8(self._tail + data)
        text, self._bad = _decode_until_bad(data, self._end)
        self._end += len(data) if self._bad is None else len(text.encode())
        self.buf = self.buf[self.pos :] + text
        self.pos = 0
        return bool(text) or self.fill()

    def skip_ws(self) -> None:
        """Move past whitespace; afterwards pos < len(buf) unless the input has ended."""
        while True:
            self.pos = _WS_RE.match(self.buf, self.pos).end()  # type: ignore[union-attr]  # matches ""
            if self.pos < len(self.buf) or not self.fill():
                return

    def peek(self) -> str:
        return self.buf[self.pos : self.pos + 1]

    def value(self) -> object:
        """Parse the next JSON value (after skip_ws); a _TooLarge stands in for a huge one."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except RecursionError:
                self._skip_container()
                return _TooDeep()
            except json.JSONDecodeError as e:
                if self.eof or not _maybe_cut(e):
                    message = f"malformed JSON: {e.msg} at byte offset {self.offset(e.pos)}"
                    raise _Broken("malformed_json", message) from None
                self.fill()
                continue
            # A number that ends with the window may go on in the next chunk ("12" + "34").
            if end == len(self.buf) and not self.eof and type(value) in (int, float):
                self.fill()
                continue
            start, self.pos = self.pos, end
            # chars <= bytes <= 4 * chars: encode only values that might be over the limit.
            if (end - start) * 4 > self.limit and (size := len(self.buf[start:end].encode())) > self.limit:
                return _TooLarge(size)
            return value

    def _skip_container(self) -> None:
        """Move past the array or object at pos, counting brackets outside strings.

        For a value too deep for the json module's recursive parser: the file reads on
        after it. Broken JSON inside it is not noticed; the value is rejected anyway.
        """
        depth, at = 0, 0  # at: where to scan, relative to pos (fill() moves pos to 0)
        while True:
            m = _SCAN_RE.search(self.buf, self.pos + at)
            if m is None or (m.group()[0] == '"' and m.group("closed") is None):
                at = (len(self.buf) if m is None else m.start()) - self.pos
                if not self.fill():
                    self.pos = len(self.buf)
                    raise self._unexpected("unfinished array or object")
                continue
            depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(m.group(), 0)
            at = m.end() - self.pos
            if depth == 0:
                self.pos = m.end()
                return

    def array_items(self) -> Iterator[object]:
        """Yield the elements of an array whose ``[`` was just consumed, then check the end."""
        self.skip_ws()
        if self.peek() == "]":
            self.pos += 1
        else:
            while True:
                self.skip_ws()
                yield self.value()
                self.skip_ws()
                separator = self.peek()
                if separator not in (",", "]") or not separator:
                    raise self._unexpected("expecting ',' or ']' after an element")
                self.pos += 1
                if separator == "]":
                    break
        self.skip_ws()
        if self.pos < len(self.buf):
            raise self._unexpected("unexpected data after the end of the array")

    def top_level_values(self) -> Iterator[object]:
        """Yield values separated only by whitespace: one object, or several (`jq .` output)."""
        while True:
            self.skip_ws()
            if self.pos >= len(self.buf):
                return
            yield self.value()

    def _unexpected(self, what: str) -> _Broken:
        if self.pos < len(self.buf):
            found = f"found {self.buf[self.pos]!r} at byte offset {self.offset(self.pos)}"
        else:
            found = "found the end of the file"
        return _Broken("malformed_json", f"malformed JSON: {what}, {found}")


def _maybe_cut(error: json.JSONDecodeError) -> bool:
    """Could this parse error be the window ending mid-value, rather than bad JSON?"""
    # An unterminated string always runs to the end of the window; other errors of a cut
    # value sit at its very end (a few characters back for a cut \\uXXXX escape).
    return error.msg.startswith("Unterminated string") or error.pos >= len(error.doc) - 6


def _split_utf8(data: bytes) -> tuple[bytes, bytes]:
    """Split off a UTF-8 sequence cut short by the end of ``data``, to be completed by the next read.

    Example: ``b"ab\\xc3"`` -> ``(b"ab", b"\\xc3")``.
    """
    n = len(data)
    for i in range(n - 1, max(n - 4, -1), -1):
        byte = data[i]
        if byte < 0x80:
            break
        if byte >= 0xC0:
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return (data[:i], data[i:]) if n - i < need else (data, b"")
    return data, b""


def _decode_until_bad(data: bytes, offset: int) -> tuple[str, tuple[str, str] | None]:
    """Decode ``data`` up to its first invalid UTF-8 or NUL byte, and say what stopped it."""
    bad = None
    nul = data.find(_NUL)
    if nul >= 0:
        data, bad = data[:nul], ("nul_byte", _nul(offset + nul))
    try:
        return data.decode(), bad
    except UnicodeDecodeError as e:
        return data[: e.start].decode(), ("invalid_utf8", _bad_utf8(offset + e.start))


# -- CSV helpers ------------------------------------------------------------------------------


class _LineTooLarge(Exception):
    """A physical line over the size limit (already skipped), ending the current CSV record."""


class _CsvLines:
    """The lines fed to ``csv.reader``, with what csv cannot tell: where each record starts.

    It also keeps the record's raw text for the rejects file, notes the first NUL or invalid
    UTF-8 byte (the line is decoded with replacement so csv stays in step with the quoting),
    and raises _LineTooLarge instead of reading an overlong line into memory.
    """

    def __init__(self, stream: io.BufferedReader, offset: int, limit: int):
        self._readline = stream.readline
        self.limit = limit
        self.line = 0  # physical lines read so far
        self.offset = offset  # byte offset of the next line
        self._start = 1
        self._start_offset = offset
        self._parts: list[str] = []
        self._problem: tuple[str, str] | None = None

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        line = self._readline(self.limit + 1)
        if not line:
            raise StopIteration
        self.line += 1
        at = self.offset
        self.offset += len(line)
        if len(line) > self.limit and not line.endswith(b"\n"):
            rest = _discard_line(self._readline)
            self.offset += rest
            raise _LineTooLarge(f"line {self.line} is over the {_size(self.limit)} limit")
        if _NUL in line and not self._problem:
            self._problem = ("nul_byte", _nul(at + line.index(_NUL)))
        try:
            text = line.decode()
        except UnicodeDecodeError as e:
            self._problem = self._problem or ("invalid_utf8", _bad_utf8(at + e.start))
            text = line.decode(errors="replace")
        if self.offset - self._start_offset <= self.limit:
            self._parts.append(text)
        return text

    def take(self) -> tuple[int, str, tuple[str, str] | None]:
        """End the current record: return its first line, raw text and problem, if any."""
        start, raw, problem = self._start, "".join(self._parts), self._problem
        size = self.offset - self._start_offset
        if size > self.limit:
            problem = ("record_too_large", _too_large(size, self.limit))
        self._start, self._start_offset = self.line + 1, self.offset
        self._parts, self._problem = [], None
        return start, raw.removesuffix("\n").removesuffix("\r"), problem


def _csv_problem(error: str, limit: int) -> tuple[str, str]:
    """Reason and message for a csv.Error, in words that suggest the fix."""
    if error.startswith("field larger than field limit"):
        message = f"a field is over the {_size(limit)} limit (raise it with --max-record-bytes)"
        return "record_too_large", message
    if error == "unexpected end of data":
        return "malformed_csv", "malformed CSV: the file ends inside a quoted field (a quote is not closed)"
    if error.startswith("new-line character seen"):
        return "malformed_csv", "malformed CSV: carriage return (\\r) inside an unquoted field"
    if "expected after" in error:
        message = 'text after the closing quote of a quoted field (a quote inside one is written "")'
        return "malformed_csv", f"malformed CSV: {message}"
    return "malformed_csv", f"malformed CSV: {error}"


def _field_count(header: list[str], row: list[str]) -> str:
    names = ", ".join(header[:10]) + (", ..." if len(header) > 10 else "")
    return f"expected {len(header)} fields ({names}), found {len(row)}"


# -- shared helpers ---------------------------------------------------------------------------


def _discard_line(readline) -> int:
    """Read and drop the rest of an overlong line; return how many bytes that was."""
    skipped = 0
    while part := readline(CHUNK_SIZE):
        skipped += len(part)
        if part.endswith(b"\n"):
            break
    return skipped


def _size(n: int | float) -> str:
    """Human size: 16 MiB, 20.1 MiB, 1.5 KiB, 100 bytes."""
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def _too_large(size: int, limit: int) -> str:
    return f"record is {_size(size)}, over the {_size(limit)} limit (raise it with --max-record-bytes)"


def _bad_utf8(offset: int) -> str:
    return (
        f"invalid UTF-8 at byte offset {offset} of the file"
        " (re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8)"
    )


def _nul(offset: int) -> str:
    return f"NUL byte at byte offset {offset}"


def _not_an_object(value: object) -> str:
    kinds = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return f"expected a JSON object, found {kinds.get(type(value), 'null')}"


def _lossy(line: bytes) -> str:
    """A bad line as text for the rejects file: undecodable bytes kept as \\x escapes."""
    return line.decode(errors="backslashreplace").rstrip("\r\n")
