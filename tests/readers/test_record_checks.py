"""Record validation (sftprep.readers.validate): nesting too deep is one bad record, in JSONL and JSON."""

from __future__ import annotations

import pytest
from reader_support import STOPPED, as_tuples, error, good, read, write

from sftprep import readers
from sftprep.readers import InputFile, base

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("depth", [100_000, 300])
def test_deeply_nested_jsonl_is_one_bad_record(depth):
    nested = "[" * depth + "]" * depth
    write("d.jsonl", f'{{"q": 1}}\n{{"question": {nested}, "answer": "a"}}\n{{"q": 3}}\n')
    records = read("d.jsonl")
    message = f"JSON nested too deeply (over {readers.MAX_DEPTH} levels of arrays or objects)"
    assert error(records[1]) == ("d.jsonl:2", "too_deeply_nested", message)
    assert good([records[0], records[2]]) == [{"q": 1}, {"q": 3}]
    lazy = readers.settle(list(InputFile("d.jsonl").records(lazy=True)))
    assert as_tuples(lazy) == as_tuples(records)


def test_nesting_up_to_the_limit_is_kept():
    inner = "[" * (readers.MAX_DEPTH - 1) + "]" * (readers.MAX_DEPTH - 1)
    write("d.jsonl", f'{{"question": {inner}}}\n')
    assert len(good(read("d.jsonl"))) == 1


@pytest.mark.parametrize("chunk_size", [7, 2**20])
@pytest.mark.parametrize("layout", ["array", "objects"])
def test_deeply_nested_json_element_is_a_bad_record_and_the_file_reads_on(chunk_size, layout, monkeypatch):
    monkeypatch.setattr(base, "CHUNK_SIZE", chunk_size)
    # Brackets and escaped quotes inside strings must not upset the skipping.
    deep = '[{"s": "]]}\\"[", "t": "\\\\"}, ' + "[" * 3000 + '"x]"' + "]" * 3000 + "]"
    elements = ['{\n"q": 1}', f'{{"question": {deep}, "answer": "a"}}', '{"q": "[3"}', '{"q": 4}']
    write("d.json", "[" + ", ".join(elements) + "]" if layout == "array" else "\n".join(elements))
    records = read("d.json")
    message = f"JSON nested too deeply (over {readers.MAX_DEPTH} levels of arrays or objects)"
    assert error(records[1]) == ("d.json: record 2", "too_deeply_nested", message)
    assert good([records[0], *records[2:]]) == [{"q": 1}, {"q": "[3"}, {"q": 4}]
    shallow = "[" * 300 + "]" * 300  # parses, but over the limit: a bad record too
    write("e.json", f'[{{"question": {shallow}}}, {{"q": 3}}]')
    records = read("e.json")
    assert error(records[0]) == ("e.json: record 1", "too_deeply_nested", message)
    assert good(records[1:]) == [{"q": 3}]


def test_unfinished_deep_json_stops_the_file():
    write("d.json", '[{"q": 1}, {"question": ' + "[" * 3000 + '"x"')
    records = read("d.json")
    assert good(records[:1]) == [{"q": 1}]
    assert error(records[1]) == (
        "d.json: record 2",
        "malformed_json",
        f"malformed JSON: unfinished array or object, found the end of the file{STOPPED}",
    )
