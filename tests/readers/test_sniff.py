"""Format sniffing (sftprep.readers.sniff): content first, the name as a hint, wide encodings refused."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reader_support import error, good, read, write

from sftprep.errors import InputError
from sftprep.readers import InputFile


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


def test_gzip_csv_is_told_by_the_inner_extension():
    write("d.csv.gz", "q,a\n1,2\n")
    assert good(read("d.csv.gz")) == [{"q": "1", "a": "2"}]
