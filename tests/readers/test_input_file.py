"""InputFile and read_records (sftprep.readers.input_file): gzip, hashing, reading once, the real files in ../shared/data."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest
from reader_support import error, good, read, write

from sftprep.errors import ConfigError, InputError
from sftprep.readers import InputFile, read_records


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
