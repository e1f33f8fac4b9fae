"""CSV and TSV: a header row names the columns; every later row is one record.

A record may span lines (a quoted field with newlines), so :class:`_CsvLines` tells
``csv.reader`` lines and keeps what it cannot: where each record starts, its raw text,
and the first bad byte. A bad row is one bad record and the file reads on.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from sftprep.errors import InputError
from sftprep.readers import base
from sftprep.readers.base import NUL, Format, Opened, Record, bad_utf8, nul, too_large


def read(opened: Opened, lazy: bool = False) -> Iterator[Record]:
    """Yield the records of a CSV (``format == "csv"``) or TSV input."""
    delimiter = "\t" if opened.format == "tsv" else ","
    lines = _CsvLines(opened.buffered(), opened.offset, opened.max_record_bytes)
    # The csv module's own field limit (128 KiB by default) must not reject records we
    # accept. It is process-wide; raising it is harmless.
    csv.field_size_limit(max(csv.field_size_limit(), opened.max_record_bytes))
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    header = _header(opened, reader, lines)
    while True:
        try:
            row = next(reader, None)
        except _LineTooLarge:
            start, _, problem = lines.take()  # the problem is record_too_large
            assert problem is not None
            yield opened.bad(start, "line", *problem)
            # A fresh reader starts clean on the next line (the old one is mid-record).
            reader = csv.reader(lines, delimiter=delimiter, strict=True)
            continue
        except csv.Error as e:
            start, raw, _ = lines.take()
            yield opened.bad(start, "line", *_csv_problem(str(e), opened.max_record_bytes), raw)
            continue
        if row is None:
            return
        start, raw, problem = lines.take()
        if not row:
            continue  # a blank line is not a record
        if problem:
            yield opened.bad(start, "line", *problem, raw)
        elif len(row) != len(header):
            yield opened.bad(start, "line", "csv_field_count", _field_count(header, row), raw)
        else:
            yield Record(opened.source, start, "line", dict(zip(header, row, strict=True)), None, raw)


def _header(opened: Opened, reader, lines: _CsvLines) -> list[str]:
    """Read and check the header row: column names must be present and distinct."""
    try:
        row: list[str] | None = []
        while not row:
            row = next(reader, None)
            start, _, problem = lines.take()
            if row is None:
                raise InputError(f"{opened.source}: empty {opened.format.upper()} file: no header row")
    except (_LineTooLarge, csv.Error) as e:
        raise InputError(f"{opened.source}:{lines.take()[0]}: cannot read the header row: {e}") from None
    where = f"{opened.source}:{start}"
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
            rest = base.discard_line(self._readline)
            self.offset += rest
            raise _LineTooLarge(f"line {self.line} is over the {base.size(self.limit)} limit")
        if NUL in line and not self._problem:
            self._problem = ("nul_byte", nul(at + line.index(NUL)))
        try:
            text = line.decode()
        except UnicodeDecodeError as e:
            self._problem = self._problem or ("invalid_utf8", bad_utf8(at + e.start))
            text = line.decode(errors="replace")
        if self.offset - self._start_offset <= self.limit:
            self._parts.append(text)
        return text

    def take(self) -> tuple[int, str, tuple[str, str] | None]:
        """End the current record: return its first line, raw text and problem, if any."""
        start, raw, problem = self._start, "".join(self._parts), self._problem
        size = self.offset - self._start_offset
        if size > self.limit:
            problem = ("record_too_large", too_large(size, self.limit))
        self._start, self._start_offset = self.line + 1, self.offset
        self._parts, self._problem = [], None
        return start, raw.removesuffix("\n").removesuffix("\r"), problem


def _csv_problem(error: str, limit: int) -> tuple[str, str]:
    """Reason and message for a csv.Error, in words that suggest the fix."""
    if error.startswith("field larger than field limit"):
        message = f"a field is over the {base.size(limit)} limit (raise it with --max-record-bytes)"
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


base.register(Format("csv", read, extensions=(".csv",)), Format("tsv", read, extensions=(".tsv", ".tab")))
