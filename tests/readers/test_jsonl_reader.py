"""JSON Lines (sftprep.readers.jsonl): line numbers, raw text, lazy records, every bad-line reason."""

from __future__ import annotations

import tracemalloc

import pytest
from reader_support import LIMIT_HINT, UTF8_HINT, as_tuples, error, good, read, write

from sftprep import readers
from sftprep.readers import InputFile


def test_jsonl_lines_numbers_and_raw_text():
    write("d.jsonl", '{"a": 1}\r\n\n  \n{"a": "x\\ny"}\r\n{"a": 3}')  # CRLF, blank lines, no final \n
    records = read("d.jsonl")
    assert good(records) == [{"a": 1}, {"a": "x\ny"}, {"a": 3}]
    assert [r.where for r in records] == ["d.jsonl:1", "d.jsonl:4", "d.jsonl:5"]
    assert [r.raw for r in records] == ['{"a": 1}', '{"a": "x\\ny"}', '{"a": 3}']
    assert {r.unit for r in records} == {"line"}


def test_jsonl_does_not_split_on_unicode_line_separators():
    # U+0085 and U+2028 are valid inside JSON strings; str.splitlines() would split on them.
    write("d.jsonl", '{"a": "x\u0085y"}\n{"a": "x\u2028y"}\n{"a": "\u00e9"}\n')
    assert good(read("d.jsonl")) == [{"a": "x\u0085y"}, {"a": "x\u2028y"}, {"a": "\u00e9"}]


def test_jsonl_cut_off_line_names_the_column_after_its_end():
    write("d.jsonl", '{"a": 0}\n{"a": 1\n{"a": \r\n')
    assert [error(r)[2] for r in read("d.jsonl")[1:]] == [
        "malformed JSON: Expecting ',' delimiter at column 8",
        "malformed JSON: Expecting value at column 7",
    ]


def test_lazy_jsonl_records_settle_to_what_eager_reading_gives():
    """A build reads JSON Lines lazily (workers parse them); settled, nothing differs."""
    lines = [b'{"a": 1}', b"", b'{"a": 1 "b": 2}', b"[1, 2]", b'{"a": "\xc3\xa9"}', b'{"a": "x\x00"}',
             b'{"a": "\xff"}', b"   ", b'{"a": [1, {"b": null}]}', b'"text"']  # fmt: skip
    write("d.jsonl", b"\r\n".join(lines) + b"\n")
    eager = read("d.jsonl")
    lazy = list(InputFile("d.jsonl").records(lazy=True))
    assert [r.number for r in lazy] == [r.number for r in eager]
    assert all(r.pending for r in lazy if r.error is None)
    assert all(not r.pending and r.data is None for r in lazy if r.error is not None)  # NUL, bad UTF-8
    assert as_tuples(readers.settle(lazy)) == as_tuples(eager)
    assert as_tuples(readers.settle(eager)) == as_tuples(eager)


def test_jsonl_bom_is_skipped():
    write("d.jsonl", b'\xef\xbb\xbf{"a": 1}\n')
    assert good(read("d.jsonl")) == [{"a": 1}]


def test_jsonl_malformed_line_is_reported_and_reading_goes_on():
    write("d.jsonl", '{"a": 1}\n{"a": 1 "b": 2}\n{"a": 3}\n')
    records = read("d.jsonl")
    assert error(records[1]) == (
        "d.jsonl:2",
        "malformed_json",
        "malformed JSON: Expecting ',' delimiter at column 9",
    )
    assert records[1].raw == '{"a": 1 "b": 2}'
    assert good([records[0], records[2]]) == [{"a": 1}, {"a": 3}]


@pytest.mark.parametrize(
    ("line", "found"),
    [
        ("[1, 2]", "a list"),
        ('"text"', "a string"),
        ("3.5", "a number"),
        ("true", "a boolean"),
        ("null", "null"),
    ],
)
def test_jsonl_value_that_is_not_an_object(line, found):
    write("d.jsonl", '{"a": 0}\n' + line + "\n")
    record = read("d.jsonl")[1]
    assert error(record) == ("d.jsonl:2", "not_an_object", f"expected a JSON object, found {found}")
    assert record.raw == line


def test_jsonl_invalid_utf8_names_the_absolute_byte_offset():
    write("d.jsonl", b'{"a": 1}\n{"a": "caf\xe9"}\n{"a": 3}\n')
    records = read("d.jsonl")
    assert error(records[1]) == (
        "d.jsonl:2",
        "invalid_utf8",
        f"invalid UTF-8 at byte offset 19 of the file {UTF8_HINT}",
    )
    assert records[1].raw == '{"a": "caf\\xe9"}'
    assert good([records[0], records[2]]) == [{"a": 1}, {"a": 3}]


def test_jsonl_nul_byte():
    write("d.jsonl", b'{"a": 1}\n{"a"\x00: 2}\n')
    records = read("d.jsonl")
    assert error(records[1]) == ("d.jsonl:2", "nul_byte", "NUL byte at byte offset 13")


def test_jsonl_line_over_the_limit_is_skipped_not_loaded():
    big = '{"a": "' + "x" * 243 + '"}'  # 252 bytes
    write("d.jsonl", '{"a": 1}\n' + big + '\n{"a": 3}\n')
    records = read("d.jsonl", max_record_bytes=100)
    assert error(records[1]) == (
        "d.jsonl:2",
        "record_too_large",
        f"record is 253 bytes, over the 100 bytes limit {LIMIT_HINT}",
    )
    assert records[1].raw is None
    assert good([records[0], records[2]]) == [{"a": 1}, {"a": 3}]
    assert records[2].where == "d.jsonl:3"


def test_jsonl_memory_stays_under_the_limit_for_a_huge_line():
    write("d.jsonl", '{"a": "' + "x" * (24 * 2**20) + '"}\n{"a": 2}\n')
    tracemalloc.start()
    try:
        records = read("d.jsonl", max_record_bytes=2**10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error(records[0])[2] == f"record is 24 MiB, over the 1 KiB limit {LIMIT_HINT}"
    assert good(records[1:]) == [{"a": 2}]
    assert peak < 8 * 2**20  # read buffers (a few MiB, whatever the line length), not the 24 MiB line
