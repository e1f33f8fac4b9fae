"""Telling an input's format from its content, its name only as a hint.

A ``.jsonl`` or ``.ndjson`` name (also ``.gz``) means JSON Lines. Otherwise ``[`` starts a
JSON array; ``{`` starts JSON Lines, unless the first line is an unfinished JSON value, which
makes it one (or more) pretty-printed JSON objects; a registered magic number (``PAR1``) names
a binary format; anything else is CSV or TSV, told by the extension or by the header line.
"""

from __future__ import annotations

import codecs
import json
import os

from sftprep.errors import InputError
from sftprep.readers.base import REGISTRY
from sftprep.readers.opening import SNIFF_BYTES, Peekable

# Byte-order marks of encodings sftprep does not read, longest first.
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32 (little-endian)"),
    (codecs.BOM_UTF32_BE, "UTF-32 (big-endian)"),
    (codecs.BOM_UTF16_LE, "UTF-16 (little-endian)"),
    (codecs.BOM_UTF16_BE, "UTF-16 (big-endian)"),
)
_JSON_WS = b" \t\r\n"


def sniff(
    stream: Peekable, name: str, source: str, forced: str | None, max_record_bytes: int
) -> tuple[str, int]:
    """Decide the format of a decompressed input, and move past a UTF-8 BOM.

    Args:
        stream: the decompressed input, not yet read.
        name: the input's name (its extension is a hint); ``-`` for stdin.
        source: the name used in messages.
        forced: the ``--format`` value, if any (then only the BOM is handled).
        max_record_bytes: how far to look for the end of the first line.

    Returns:
        ``(format, offset)``: ``offset`` is 3 when a BOM was skipped, else 0.

    Raises:
        InputError: a UTF-16/32 input, or a text input that is none of the known formats.
    """
    head = stream.peek(4)
    # UTF-32 first: its little-endian BOM starts with UTF-16's.
    encoding = next((label for bom, label in _WIDE_BOMS if head.startswith(bom)), None)
    if encoding is not None:
        raise InputError(
            f"{source}: the file is {encoding} encoded, not UTF-8"
            f" (re-encode it, e.g. iconv -f {encoding.split()[0].lower()} -t utf-8)"
        )
    for fmt in REGISTRY.values():  # binary formats are read as bytes: no BOM to skip
        if fmt.magic and (
            forced == fmt.name or (forced is None and stream.peek(len(fmt.magic)) == fmt.magic)
        ):
            return fmt.name, 0
    offset = 0
    if head.startswith(codecs.BOM_UTF8):
        stream.read(3)
        offset = 3
    if forced:
        return forced, offset
    return _text_format(stream, name, source, max_record_bytes), offset


def _text_format(stream: Peekable, name: str, source: str, max_record_bytes: int) -> str:
    if format_from_name(name) == "jsonl" and not name.endswith((".json", ".json.gz")):
        # .jsonl/.ndjson say JSON Lines: a broken first line is one bad record, not a sign
        # that the file is one JSON document (only .json names are often either).
        return "jsonl"
    first = _first_byte(stream, max_record_bytes)
    if first == b"[":
        return "json"
    if first == b"{":
        return _brace_format(stream, max_record_bytes)
    if name == "-":
        return "jsonl"  # the documented default for stdin; --format csv for CSV
    return format_from_name(name) or _format_from_header(stream, source)


def format_from_name(name: str) -> str | None:
    """The format a file name suggests (``data.csv.gz`` -> ``csv``), or None."""
    stem = name[:-3] if name.endswith(".gz") else name
    extension = os.path.splitext(stem)[1].lower()
    return next((fmt.name for fmt in REGISTRY.values() if extension in fmt.extensions), None)


def _first_byte(stream: Peekable, max_record_bytes: int) -> bytes:
    """The first non-whitespace byte, or b"" for an empty (or all-whitespace) input."""
    head: bytes | None = stream.peek(0)
    while head is not None:
        rest = head.lstrip(_JSON_WS)
        if rest:
            return rest[:1]
        if len(head) > max_record_bytes:
            return b""
        head = stream.grow()
    return b""


def _brace_format(stream: Peekable, max_record_bytes: int) -> str:
    """Tell JSON Lines from pretty-printed objects by the input's first line."""
    text: bytes | None = stream.peek(0)
    while True:
        assert text is not None
        newline = text.lstrip(_JSON_WS).find(b"\n")
        if newline >= 0:
            break
        if len(text) > max_record_bytes:
            return "jsonl"  # a first line too long to be anything but JSONL
        grown = stream.grow()
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


def _format_from_header(stream: Peekable, source: str) -> str:
    line = stream.peek(SNIFF_BYTES).split(b"\n", 1)[0]
    if line.count(b"\t") > 0 and line.count(b"\t") >= line.count(b","):
        return "tsv"
    if b"," in line:
        return "csv"
    if not line.strip():
        return "jsonl"  # empty input: zero records
    raise InputError(
        f"{source}: cannot tell the format: not JSON, JSON Lines or Parquet, and the"
        " first line has no comma or tab (name the file .csv/.tsv or pass --format)"
    )
