"""JSON arrays and top-level objects (sftprep.readers.json): incremental parsing across read chunks."""

from __future__ import annotations

import hashlib
import json

import pytest
from reader_support import LIMIT_HINT, STOPPED, UTF8_HINT, error, good, read, write

from sftprep.readers import InputFile, base


def test_json_array_elements_are_records():
    write("d.json", '[\n  {"a": 1},\n  {"a": "\u00e9"}\n]\n')
    records = read("d.json")
    assert good(records) == [{"a": 1}, {"a": "\u00e9"}]
    assert [r.where for r in records] == ["d.json: record 1", "d.json: record 2"]
    assert [r.raw for r in records] == ['{"a": 1}', '{"a": "\u00e9"}']


def test_json_array_after_a_bom():
    write("d.json", b'\xef\xbb\xbf[{"a": 1}, {"a": 2,]')
    records = read("d.json")
    assert good(records[:1]) == [{"a": 1}]
    assert (
        error(records[1])[2]
        == f"malformed JSON: Expecting property name enclosed in double quotes at byte offset 22{STOPPED}"
    )


def test_json_empty_array_and_empty_file_have_no_records():
    assert read(write("d.json", " [ ] \n")) == []
    assert read(write("e.json", "")) == []


def test_json_element_that_is_not_an_object_does_not_stop_reading():
    write("d.json", '[{"a": 1}, "x", {"a": 3}]')
    records = read("d.json")
    assert error(records[1]) == (
        "d.json: record 2",
        "not_an_object",
        "expected a JSON object, found a string",
    )
    assert records[1].raw == '"x"'
    assert good([records[0], records[2]]) == [{"a": 1}, {"a": 3}]


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 7, 64])
def test_json_array_across_read_chunk_boundaries(monkeypatch, chunk_size):
    monkeypatch.setattr(base, "CHUNK_SIZE", chunk_size)
    items = [{"t": "\u00e4\U0001f600 \\u00e4", "n": 12345}, 67890, {"x": [1.5e3, None, True]}, {}]
    write("d.json", json.dumps(items, ensure_ascii=False))
    records = read("d.json")
    assert [r.data for r in records] == [items[0], None, items[2], items[3]]
    assert error(records[1]) == (
        "d.json: record 2",
        "not_an_object",
        "expected a JSON object, found a number",
    )
    assert records[1].raw == "67890"  # not 678 + 90 read apart


@pytest.mark.parametrize(
    ("content", "number", "message"),
    [
        (
            '[{"a": 1}, {"a": 2,, {"a": 3}]',
            2,
            "Expecting property name enclosed in double quotes at byte offset 19",
        ),
        ('[{"a": 1} {"a": 2}]', 2, "expecting ',' or ']' after an element, found '{' at byte offset 10"),
        ('[{"a": 1}, {"a":', 2, "Expecting value at byte offset 16"),
        ('[{"a": 1}', 2, "expecting ',' or ']' after an element, found the end of the file"),
        ('[{"a": 1}, ]', 2, "Expecting value at byte offset 11"),
        (
            '[{"a": 1}]\n[{"a": 2}]',
            2,
            "unexpected data after the end of the array, found '[' at byte offset 11",
        ),
    ],
)
def test_json_broken_structure_stops_the_file_with_one_error(content, number, message):
    write("d.json", content)
    records = read("d.json")
    assert good(records[:-1]) == [{"a": 1}]
    assert error(records[-1]) == (
        f"d.json: record {number}",
        "malformed_json",
        f"malformed JSON: {message}{STOPPED}",
    )


@pytest.mark.parametrize("chunk_size", [3, 2**20])
def test_json_invalid_utf8_stops_after_the_good_records(monkeypatch, chunk_size):
    monkeypatch.setattr(base, "CHUNK_SIZE", chunk_size)
    content = b'[{"a": 1}, {"a": "caf' + b"\xe9" + b'"}, {"a": 3}]'
    write("d.json", content)
    f = InputFile("d.json")
    records = list(f.records())
    assert good(records[:1]) == [{"a": 1}]
    assert error(records[1]) == (
        "d.json: record 2",
        "invalid_utf8",
        f"invalid UTF-8 at byte offset 21 of the file {UTF8_HINT}{STOPPED}",
    )
    assert len(records) == 2
    # The rest was still read, for the hash.
    assert f.sha256 == hashlib.sha256(content).hexdigest()


def test_json_nul_byte_stops_the_file():
    write("d.json", b'[{"a": 1}, {"a": "\x00"}]')
    records = read("d.json")
    assert error(records[1]) == ("d.json: record 2", "nul_byte", f"NUL byte at byte offset 18{STOPPED}")


def test_json_element_over_the_limit_is_skipped_when_it_fits_one_read():
    write("d.json", '[{"a": "' + "x" * 200 + '"}, {"a": 2}]')
    records = read("d.json", max_record_bytes=100)
    assert error(records[0]) == (
        "d.json: record 1",
        "record_too_large",
        f"record is 209 bytes, over the 100 bytes limit {LIMIT_HINT}",
    )
    assert good(records[1:]) == [{"a": 2}]


def test_json_element_over_the_limit_across_reads_stops_the_file(monkeypatch):
    monkeypatch.setattr(base, "CHUNK_SIZE", 16)
    write("d.json", '[{"a": 1}, {"a": "' + "x" * 200 + '"}, {"a": 3}]')
    records = read("d.json", max_record_bytes=100)
    assert good(records[:1]) == [{"a": 1}]
    assert error(records[1]) == (
        "d.json: record 2",
        "record_too_large",
        f"record is over the 100 bytes limit {LIMIT_HINT}{STOPPED}",
    )


def test_json_single_pretty_printed_object_is_one_record():
    write("conv.json", '{\n  "conversations": [\n    {"from": "human", "value": "hi"}\n  ]\n}\n')
    (record,) = read("conv.json")
    assert record.where == "conv.json: record 1"
    assert record.data == {"conversations": [{"from": "human", "value": "hi"}]}


def test_json_concatenated_pretty_objects_are_records():
    # What `jq . data.jsonl > data.json` writes.
    write("d.json", '{\n  "a": 1\n}\n{\n  "a": 2\n}\n')
    assert [(r.where, r.data) for r in read("d.json")] == [
        ("d.json: record 1", {"a": 1}),
        ("d.json: record 2", {"a": 2}),
    ]
