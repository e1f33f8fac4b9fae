"""Helpers shared by the reader tests: write an input, read it, look at good and bad records."""

from __future__ import annotations

import gzip

from sftprep.readers import InputFile, Record

LIMIT_HINT = "(raise it with --max-record-bytes)"
UTF8_HINT = "(re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8)"
STOPPED = "; the rest of the file cannot be read"


def write(name: str, content: bytes | str) -> str:
    data = content.encode() if isinstance(content, str) else content
    with open(name, "wb") as f:
        f.write(gzip.compress(data, mtime=0) if name.endswith(".gz") else data)
    return name


def read(name: str, **kwargs) -> list[Record]:
    return list(InputFile(name, **kwargs).records())


def good(records: list[Record]) -> list[dict]:
    assert all(r.error is None for r in records), [str(r.error) for r in records if r.error]
    return [r.data for r in records]


def as_tuples(records: list[Record]) -> list[tuple]:
    """Records as comparable tuples (errors are exceptions, which compare by identity)."""
    return [(r.source, r.number, r.unit, r.data, r.raw, r.pending, r.error and (r.error.reason, str(r.error)))
            for r in records]  # fmt: skip


def error(record: Record) -> tuple[str, str, str]:
    """(where, reason, message) of a bad record, checking the invariants every bad record keeps."""
    assert record.data is None and record.error is not None
    assert record.error.where == record.where
    assert str(record.error) == f"{record.where}: {record.error.detail}"
    return record.where, record.error.reason, record.error.detail
