"""JSON documents: one array of records, or one or more top-level objects (pretty-printed, `jq .`).

The document is parsed incrementally (one element at a time, over a sliding window of text),
so memory stays flat however large the array. A bad element is one bad record; broken JSON
structure ends the file, reported as the record that would have come next.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from sftprep.readers import base
from sftprep.readers.base import NUL, Format, Opened, Record, bad_utf8, nul, too_large
from sftprep.readers.validate import TOO_DEEP, checked

_WS_RE = re.compile(r"[ \t\r\n]*")
# A JSON string (``closed`` unset when the text ends inside it) or a bracket.
_SCAN_RE = re.compile(r'"(?:[^"\\]|\\.)*(?P<closed>")?|[\[\]{}]', re.DOTALL)
_DECODER = json.JSONDecoder()
_STOPPED = "; the rest of the file cannot be read"


def read(opened: Opened, lazy: bool = False) -> Iterator[Record]:
    """Yield the records of a JSON array, or of top-level objects separated by whitespace."""
    text = _JsonText(opened.buffered(), opened.offset, opened.max_record_bytes)
    number = 0
    try:
        text.skip_ws()
        if text.peek() == "[":
            text.pos += 1
            items = text.array_items()
        else:
            items = text.top_level_values()
        for number, item in enumerate(items, 1):  # number is read in the except below
            yield _record(opened, number, item)
    except _Broken as e:
        # The structure is lost, so there is no next element to resync on: report the
        # break as the record that would have come next, and stop.
        yield opened.bad(number + 1, "record", e.reason, e.message + _STOPPED)


def _record(opened: Opened, number: int, item: object) -> Record:
    if isinstance(item, _TooDeep):
        return opened.bad(number, "record", "too_deeply_nested", TOO_DEEP)
    if isinstance(item, _TooLarge):
        message = too_large(item.size, opened.max_record_bytes)
        return opened.bad(number, "record", "record_too_large", message)
    try:
        raw = json.dumps(item, ensure_ascii=False)
    except RecursionError:
        return opened.bad(number, "record", "too_deeply_nested", TOO_DEEP)
    return checked(opened.source, number, "record", item, raw)


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
            message = f"record is over the {base.size(self.limit)} limit (raise it with --max-record-bytes)"
            raise _Broken("record_too_large", message)
        if self._bad:
            raise _Broken(*self._bad)
        if self.eof:
            return False
        # Read at least as much as is pending, so re-parsing a long value stays linear overall.
        data = self._read(max(base.CHUNK_SIZE, len(self.buf) - self.pos))
        if not data:
            self.eof = True
            if self._tail:
                self._bad = ("invalid_utf8", bad_utf8(self._end))
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
    at = data.find(NUL)
    if at >= 0:
        data, bad = data[:at], ("nul_byte", nul(offset + at))
    try:
        return data.decode(), bad
    except UnicodeDecodeError as e:
        return data[: e.start].decode(), ("invalid_utf8", bad_utf8(offset + e.start))


base.register(Format("json", read))
