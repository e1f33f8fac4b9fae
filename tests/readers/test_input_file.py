"""Readers: every format, every bad-record reason, and the real files in ../shared/data."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sftprep import readers
from sftprep.errors import ConfigError, InputError
from sftprep.readers import InputFile, Record, base, expand_inputs, opening, parquet, read_records

LIMIT_HINT = "(raise it with --max-record-bytes)"
UTF8_HINT = "(re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8)"
STOPPED = "; the rest of the file cannot be read"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Work in tmp_path, so inputs have short relative names as a user would type them."""
    monkeypatch.chdir(tmp_path)


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


# -- Record and names ------------------------------------------------------------------------


def test_where_names_a_line_or_a_record():
    assert Record("data.jsonl", 17, "line", {}).where == "data.jsonl:17"
    assert Record("data.json", 17, "record", {}).where == "data.json: record 17"


def test_expand_inputs_sorts_each_glob_and_keeps_the_first_of_duplicates():
    os.makedirs("d/sub")
    for name in ("d/b.jsonl", "d/a.jsonl", "d/c.csv", "d/sub/e.jsonl"):
        write(name, "")
    patterns = ["d/c.csv", "d/*.jsonl", "-", "./d/a.jsonl", "d/**/*.jsonl"]
    assert expand_inputs(patterns) == ["d/c.csv", "d/a.jsonl", "d/b.jsonl", "-", "d/sub/e.jsonl"]


def test_expand_inputs_skips_directories_a_glob_matches():
    os.makedirs("d/sub.jsonl")
    write("d/a.jsonl", "")
    assert expand_inputs(["d/*.jsonl"]) == ["d/a.jsonl"]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("x.jsonl", "no such file: x.jsonl"),
        ("data/*.jsonl", "no file matches 'data/*.jsonl'"),
        (".", ".: is a directory (give files, or a glob such as './*.jsonl')"),
    ],
)
def test_expand_inputs_errors(pattern, message):
    with pytest.raises(InputError) as exc:
        expand_inputs([pattern])
    assert str(exc.value) == message


def test_unreadable_file_is_an_input_error(monkeypatch):
    write("secret.jsonl", "{}\n")
    if os.geteuid() == 0:
        # Root reads any file (as in CI containers): have the OS answer as it would a user.
        def deny(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
        monkeypatch.setattr(opening, "open", deny, raising=False)
    else:
        os.chmod("secret.jsonl", 0)
    with pytest.raises(InputError, match=r"^secret.jsonl: permission denied$"):
        expand_inputs(["secret.jsonl"])
    with pytest.raises(InputError, match=r"^secret.jsonl: permission denied$"):
        InputFile("secret.jsonl")


def test_missing_file_and_directory_are_input_errors():
    with pytest.raises(InputError, match=r"^no such file: gone.jsonl$"):
        InputFile("gone.jsonl")
    os.mkdir("dir")
    with pytest.raises(InputError, match=r"^dir: is a directory$"):
        InputFile("dir")


def test_read_records_chains_inputs_in_order():
    write("a.jsonl", '{"n": 1}\n{"n": 2}\n')
    write("b.json", '[{"n": 3}]')
    records = list(read_records(["a.jsonl", "b.json"]))
    assert [(r.where, r.data) for r in records] == [
        ("a.jsonl:1", {"n": 1}),
        ("a.jsonl:2", {"n": 2}),
        ("b.json: record 1", {"n": 3}),
    ]


def test_unknown_format_is_a_config_error():
    write("a.jsonl", "{}\n")
    with pytest.raises(ConfigError, match="unknown input format 'xml'"):
        InputFile("a.jsonl", format="xml")


# -- format sniffing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "fmt"),
    [
        ("jsonl_named.json", '{"a": 1}\n{"a": 2}\n', "jsonl"),
        ("array_named.jsonl", '[{"a": 1}]', "jsonl"),  # the name says JSON Lines: one bad line
        ("array_named.json", '[{"a": 1}]', "json"),
        ("array_unnamed", '[{"a": 1}]', "json"),
        ("pretty.json", '{\n  "a": [\n    1\n  ]\n}\n', "json"),
        ("spaced.json", '  \n\n  [{"a": 1}]', "json"),
        ("bom.json", '\ufeff[{"a": 1}]', "json"),
        ("bad_first_line.jsonl", '{"a": 1,}\n{"a": 2}\n', "jsonl"),
        ("one_line.txt", '{"a": 1}', "jsonl"),
        ("header.txt", "q,a\nx,y\n", "csv"),
        ("header.dat", "q\ta\nx\ty\n", "tsv"),
        ("commas_in_tsv.tab", "q\ta\nx,1\ty\n", "tsv"),
        ("data.csv", "q\n", "csv"),
        ("data.tsv", "q\n", "tsv"),
        ("strings.jsonl", '"a"\n', "jsonl"),
        ("empty.json", "", "jsonl"),
        ("empty", "", "jsonl"),
    ],
)
def test_format_is_sniffed_from_the_content(name, content, fmt):
    assert InputFile(write(name, content)).format == fmt


def test_parquet_is_sniffed_by_its_magic():
    pq.write_table(pa.table({"q": ["x"]}), "table.bin")
    assert InputFile("table.bin").format == "parquet"


def test_explicit_format_overrides_sniffing():
    write("data.csv", "a\tb\n1\t2\n")
    assert good(read("data.csv", format="tsv")) == [{"a": "1", "b": "2"}]


def test_undetectable_format_is_an_input_error():
    write("notes.txt", "just some prose\n")
    with pytest.raises(InputError, match=r"^notes.txt: cannot tell the format: .* pass --format\)$"):
        InputFile("notes.txt")


@pytest.mark.parametrize(
    ("bom", "codec", "named"),
    [
        (b"", "utf-16", "UTF-16 (little-endian)"),  # Python writes its own BOM
        (b"\xfe\xff", "utf-16-be", "UTF-16 (big-endian)"),
        (b"", "utf-32", "UTF-32 (little-endian)"),
        (b"\x00\x00\xfe\xff", "utf-32-be", "UTF-32 (big-endian)"),
    ],
)
@pytest.mark.parametrize("name", ["wide.jsonl", "wide.jsonl.gz", "wide.csv"])
def test_utf16_and_utf32_are_one_input_error(bom, codec, named, name):
    write(name, bom + '{"question": "a", "answer": "b"}\n{"question": "c", "answer": "d"}\n'.encode(codec))
    hint = f"(re-encode it, e.g. iconv -f {named.split()[0].lower()} -t utf-8)"
    with pytest.raises(InputError) as caught:
        InputFile(name)
    assert str(caught.value) == f"{name}: the file is {named} encoded, not UTF-8 {hint}"


# -- JSON Lines ----------------------------------------------------------------------------------


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


@pytest.mark.parametrize("first", ['{"question": "a",', '["a", "b"]'])
@pytest.mark.parametrize("name", ["d.jsonl", "d.jsonl.gz", "d.ndjson"])
def test_a_jsonl_name_means_json_lines_whatever_the_first_line(first, name):
    """A broken first line that looks like the start of a JSON document is one bad record."""
    lines = [json.dumps({"question": f"q{i}", "answer": f"a{i}"}) for i in range(199)]
    write(name, "\n".join([first, *lines]) + "\n")
    source = InputFile(name)
    assert source.format == "jsonl"
    records = list(source.records())
    assert error(records[0])[:2] == (f"{name}:1", "malformed_json" if first[0] == "{" else "not_an_object")
    assert records[0].raw == first
    assert good(records[1:]) == [json.loads(line) for line in lines]


def test_a_json_name_still_sniffs_pretty_printed_json():
    write("d.json", '{"question": "a",\n "answer": "b"}\n')
    assert InputFile("d.json").format == "json"


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


def test_records_pickle_as_they_are():
    import pickle

    records = read(write("d.jsonl", '{"a": 1}\n{"a": 1 "b": 2}\n'))
    records += list(InputFile("d.jsonl").records(lazy=True))
    assert as_tuples(pickle.loads(pickle.dumps(records))) == as_tuples(records)


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


def test_size_messages_use_mib():
    assert base.too_large(int(20.1 * 2**20), 16 * 2**20) == (
        f"record is 20.1 MiB, over the 16 MiB limit {LIMIT_HINT}"
    )


# -- JSON arrays and objects -----------------------------------------------------------------------


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


# -- CSV and TSV ---------------------------------------------------------------------------------


def test_csv_quoted_newlines_keep_physical_line_numbers():
    write("d.csv", 'q,a\n"one",x\n"two\nlines",y\n\nthree,"say ""hi"""\n')
    records = read("d.csv")
    assert good(records) == [
        {"q": "one", "a": "x"},
        {"q": "two\nlines", "a": "y"},
        {"q": "three", "a": 'say "hi"'},
    ]
    assert [r.where for r in records] == ["d.csv:2", "d.csv:3", "d.csv:6"]
    assert records[1].raw == '"two\nlines",y'


def test_csv_bom_crlf_and_no_final_newline():
    write("d.csv", b'\xef\xbb\xbfq,a\r\n1,"x\r\ny"\r\n2,3')
    records = read("d.csv")
    assert good(records) == [{"q": "1", "a": "x\r\ny"}, {"q": "2", "a": "3"}]
    assert [r.number for r in records] == [2, 4]


def test_tsv_values_stay_strings():
    write("d.tsv", "id\ttext\n007\t1.50\n")
    assert good(read("d.tsv")) == [{"id": "007", "text": "1.50"}]


def test_csv_field_count():
    write("d.csv", "metadata,problem,answer\na,b,c\na,b,c,d\na\n")
    records = read("d.csv")
    expected = "expected 3 fields (metadata, problem, answer), found {}"
    assert error(records[1]) == ("d.csv:3", "csv_field_count", expected.format(4))
    assert error(records[2]) == ("d.csv:4", "csv_field_count", expected.format(1))
    assert records[1].raw == "a,b,c,d"


def test_csv_invalid_utf8_and_nul_byte_keep_csv_in_step():
    write("d.csv", b'q,a\n"caf\xe9\nau lait",x\nn\x00l,y\nok,z\n')
    records = read("d.csv")
    assert error(records[0]) == (
        "d.csv:2",
        "invalid_utf8",
        f"invalid UTF-8 at byte offset 8 of the file {UTF8_HINT}",
    )
    assert error(records[1]) == ("d.csv:4", "nul_byte", "NUL byte at byte offset 22")
    assert good(records[2:]) == [{"q": "ok", "a": "z"}]
    assert records[2].where == "d.csv:5"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            'q,a\n"x"y,z\nok,1\n',
            'text after the closing quote of a quoted field (a quote inside one is written "")',
        ),
        ('q,a\nok,1\n"x,z\n', "the file ends inside a quoted field (a quote is not closed)"),
    ],
)
def test_csv_malformed_quoting(content, message):
    records = read(write("d.csv", content))
    bad = [r for r in records if r.error]
    assert [error(r)[1:] for r in bad] == [("malformed_csv", f"malformed CSV: {message}")]
    assert {"q": "ok", "a": "1"} in [r.data for r in records]


def test_csv_line_over_the_limit():
    write("d.csv", "q,a\n" + "x" * 300 + ",y\nok,1\n")
    records = read("d.csv", max_record_bytes=100)
    assert error(records[0]) == (
        "d.csv:2",
        "record_too_large",
        f"record is 303 bytes, over the 100 bytes limit {LIMIT_HINT}",
    )
    assert good(records[1:]) == [{"q": "ok", "a": "1"}]
    assert records[1].where == "d.csv:3"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "d.csv: empty CSV file: no header row"),
        ("\n\n", "d.csv: empty CSV file: no header row"),
        ("q,,a\n1,2,3\n", "d.csv:1: empty column name in the header row (column 2)"),
        ("q,a,q\n1,2,3\n", "d.csv:1: duplicate column name 'q' in the header row (columns 1 and 3)"),
        (b"q,\xff\n", f"d.csv:1: invalid UTF-8 at byte offset 2 of the file {UTF8_HINT} in the header row"),
    ],
)
def test_csv_bad_header_is_an_input_error(content, message):
    write("d.csv", content)
    with pytest.raises(InputError) as exc:
        read("d.csv")
    assert str(exc.value) == message


def test_csv_header_only_has_no_records():
    assert read(write("d.csv", "q,a\n")) == []


# -- Parquet -------------------------------------------------------------------------------------


def test_parquet_rows_stream_in_batches(monkeypatch):
    monkeypatch.setattr(parquet, "PARQUET_BATCH_ROWS", 2)
    pq.write_table(pa.table({"q": ["a", "b", "c"], "n": [1, 2, None]}), "d.parquet", row_group_size=2)
    f = InputFile("d.parquet")
    records = list(f.records())
    assert good(records) == [{"q": "a", "n": 1}, {"q": "b", "n": 2}, {"q": "c", "n": None}]
    assert [r.where for r in records] == ["d.parquet: record 1", "d.parquet: record 2", "d.parquet: record 3"]
    with open("d.parquet", "rb") as raw:
        assert f.sha256 == hashlib.sha256(raw.read()).hexdigest()
    assert f.bytes_read == f.size


def test_parquet_from_gzip_and_stdin():
    pq.write_table(pa.table({"q": ["a"]}), "d.parquet")
    with open("d.parquet", "rb") as raw:
        data = raw.read()
    write("d.parquet.gz", data)
    assert good(read("d.parquet.gz")) == [{"q": "a"}]
    assert good(read("-", stdin=io.BytesIO(data))) == [{"q": "a"}]


def test_corrupt_parquet_is_an_input_error():
    write("d.parquet", "not parquet at all")
    with pytest.raises(InputError, match=r"^d.parquet: not a valid Parquet file: "):
        read("d.parquet")


# -- gzip, stdin, hashing ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["d.jsonl.gz", "d.bin"])
def test_gzip_by_suffix_or_magic(name):
    content = gzip.compress(b'{"a": 1}\n{"a": 2}\n')
    with open(name, "wb") as raw:
        raw.write(content)
    f = InputFile(name)
    assert (f.format, f.compression) == ("jsonl", "gzip")
    assert good(list(f.records())) == [{"a": 1}, {"a": 2}]
    assert f.sha256 == hashlib.sha256(content).hexdigest()  # of the compressed bytes
    assert f.bytes_read == f.size == len(content)


def test_gzip_csv_is_told_by_the_inner_extension():
    write("d.csv.gz", "q,a\n1,2\n")
    assert good(read("d.csv.gz")) == [{"q": "1", "a": "2"}]


def test_invalid_utf8_offset_counts_decompressed_bytes():
    write("d.jsonl.gz", b'{"a": 1}\n{"a": "\xff"}\n')
    assert error(read("d.jsonl.gz")[1])[2].startswith("invalid UTF-8 at byte offset 16 of the file")


def test_gzip_suffix_on_a_plain_file_is_an_input_error():
    with open("d.jsonl.gz", "wb") as f:
        f.write(b'{"a": 1}\n')
    with pytest.raises(InputError) as exc:
        InputFile("d.jsonl.gz")
    assert str(exc.value) == "d.jsonl.gz: not a valid gzip file: Not a gzipped file (b'{\"')"


def test_truncated_gzip_is_an_input_error():
    content = gzip.compress(b"".join(b'{"n": %d}\n' % i for i in range(10000)))
    with open("d.jsonl.gz", "wb") as f:
        f.write(content[: len(content) // 2])
    with pytest.raises(InputError, match=r"^d.jsonl.gz: not a valid gzip file: Compressed file ended"):
        read("d.jsonl.gz")


def test_stdin_is_sniffed_and_named():
    f = InputFile("-", stdin=io.BytesIO(b'{"a": 1}\n\n{"a": 2}\n'))
    records = list(f.records())
    assert (f.format, f.size, f.source) == ("jsonl", None, "<stdin>")
    assert [(r.where, r.data) for r in records] == [("<stdin>:1", {"a": 1}), ("<stdin>:3", {"a": 2})]
    assert f.sha256 == hashlib.sha256(b'{"a": 1}\n\n{"a": 2}\n').hexdigest()
    assert InputFile("-", stdin=io.BytesIO(b'[{"a": 1}]')).format == "json"
    assert good(read("-", stdin=io.BytesIO(b"q,a\n1,2\n"), format="csv")) == [{"q": "1", "a": "2"}]


def test_sha256_and_bytes_read_cover_the_whole_file():
    content = b"".join(b'{"n": %d}\n' % i for i in range(50000))
    write("d.jsonl", content)
    f = InputFile("d.jsonl")
    assert sum(1 for _ in f.records()) == 50000
    assert f.sha256 == hashlib.sha256(content).hexdigest()
    assert f.bytes_read == f.size == len(content)


def test_records_can_be_read_once():
    f = InputFile(write("d.jsonl", "{}\n"))
    list(f.records())
    with pytest.raises(RuntimeError):
        list(f.records())


# -- the real files in ../shared/data ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fmt", "count"),
    [
        ("instruction/alpaca_5000.json", "json", 5000),
        ("qa/NQ-open.dev.jsonl", "jsonl", 3610),
        ("qa/simple_qa_test_set.csv", "csv", 4326),
        ("qa/triviaqa_sm_sub.jsonl", "jsonl", 3000),
        ("summarization/scitldr_A_train.jsonl", "jsonl", 1992),
        ("translation/alma_train.cs-en.json", "jsonl", 12076),
        ("translation/alma_valid.de-en.json", "json", 1002),
        ("chat/axolotl_conversation.json", "json", 1),
    ],
)
def test_real_files_have_the_documented_record_counts(data_path, path, fmt, count):
    name = data_path(*path.split("/"))
    f = InputFile(name)
    records = list(f.records())
    assert f.format == fmt
    assert len(good(records)) == count
    assert records[-1].number == (count if fmt == "jsonl" else records[-1].number)
    with open(name, "rb") as raw:
        assert f.sha256 == hashlib.sha256(raw.read()).hexdigest()


def test_real_csv_line_numbers_after_multiline_records(data_path):
    records = read(data_path("qa", "simple_qa_test_set.csv"))
    multiline = [i for i, r in enumerate(records) if "\n" in r.raw]
    assert [records[i].number for i in multiline] == [1364, 2431, 2956, 3701, 4105, 4123]
    assert [records[i + 1].number for i in multiline] == [1366, 2433, 2958, 3703, 4107, 4125]
    assert records[-1].number == 4333
    assert records[multiline[0]].data["answer"] == "LET function\n"


def test_real_jsonl_keeps_u0085_inside_a_record(data_path):
    records = read(data_path("qa", "triviaqa_sm_sub.jsonl"))
    assert sum("\u0085" in json.dumps(r.data, ensure_ascii=False) for r in records) == 1


def test_real_reads_are_deterministic(data_path):
    name = data_path("translation", "alma_valid.de-en.json")
    assert read(name) == read(name)


def test_build_of_a_jsonl_with_a_broken_first_line_writes_the_other_rows(tmp_path):
    """Issue 16 item 4, end to end: one reject, 199 rows, the manifest says jsonl."""
    from sftprep import BuildConfig, run_build

    lines = [json.dumps({"question": f"q{i}", "answer": f"a{i}"}) for i in range(199)]
    write("d.jsonl", "\n".join(['{"question": "a",', *lines]) + "\n")
    config = BuildConfig(inputs=("d.jsonl",), output=str(tmp_path / "out"), on_error="skip", max_errors="5")
    manifest = run_build(config).manifest
    assert [i["format"] for i in manifest["inputs"]] == ["jsonl"]
    assert manifest["counts"]["records_read"] == 200 and manifest["counts"]["examples_written"] == 199
    assert manifest["counts"]["skipped"] == {"malformed_json": 1}
    reject = json.loads((tmp_path / "out" / "rejects.jsonl").read_text())
    assert (reject["line"], reject["record"]) == (1, '{"question": "a",')
