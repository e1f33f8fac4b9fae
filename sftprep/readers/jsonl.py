"""JSON Lines: one JSON object per line (``.jsonl``, ``.ndjson``; often ``.json`` too).

A bad line is one bad record and the file reads on. A build reads with ``lazy=True``: lines
stay text (``pending``) until :func:`settle` parses them in the worker that transforms them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from sftprep.readers import base
from sftprep.readers.base import NUL, Format, Opened, Record, bad_record, bad_utf8, lossy, nul, too_large
from sftprep.readers.validate import TOO_DEEP, checked


def parse_line(source: str, number: int, raw: str) -> Record:
    """A JSON Lines record from its line (without the line ending)."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        return bad_record(
            source, number, "malformed_json", f"malformed JSON: {e.msg} at column {e.colno}", raw
        )
    except RecursionError:
        return bad_record(source, number, "too_deeply_nested", TOO_DEEP, raw)
    return checked(source, number, "line", data, raw)


def settle(records: list[Record]) -> list[Record]:
    """The records with every pending one parsed: its ``data``, or its ``error``.

    A build reads JSON Lines with ``records(lazy=True)`` and settles each batch
    in the worker that transforms it, so that the main process, which reads and
    writes for all workers, does not parse JSON too, and a line crosses to the
    worker as one string instead of a parsed object and its text.
    """
    return [parse_line(r.source, r.number, r.raw or "") if r.pending else r for r in records]


def read(opened: Opened, lazy: bool = False) -> Iterator[Record]:
    """Yield the records of a JSON Lines input; blank lines are not records."""
    limit = opened.max_record_bytes
    readline = opened.buffered().readline
    offset = opened.offset
    number = 0
    # A bounded readline keeps an overlong line from being read into memory whole.
    while line := readline(limit + 1):
        number += 1
        start = offset
        offset += len(line)
        if len(line) > limit and not line.endswith(b"\n"):
            rest = base.discard_line(readline)
            offset += rest
            yield opened.bad(number, "line", "record_too_large", too_large(len(line) + rest, limit))
        elif line.isspace():
            continue
        elif NUL in line:
            yield opened.bad(number, "line", "nul_byte", nul(start + line.index(NUL)), lossy(line))
        else:
            try:
                text = line.decode()
            except UnicodeDecodeError as e:
                yield opened.bad(number, "line", "invalid_utf8", bad_utf8(start + e.start), lossy(line))
                continue
            raw = text.rstrip("\r\n")
            if lazy:
                yield Record(opened.source, number, "line", None, None, raw, pending=True)
            else:
                yield parse_line(opened.source, number, raw)


base.register(Format("jsonl", read, extensions=(".jsonl", ".ndjson", ".json")))
