"""The Record and shared messages (sftprep.readers.base): where it names, how it pickles, sizes."""

from __future__ import annotations

import hashlib

import pytest
from reader_support import LIMIT_HINT, as_tuples, good, read, write

from sftprep import readers
from sftprep.readers import InputFile, Record, base


def test_where_names_a_line_or_a_record():
    assert Record("data.jsonl", 17, "line", {}).where == "data.jsonl:17"
    assert Record("data.json", 17, "record", {}).where == "data.json: record 17"


def test_records_pickle_as_they_are():
    import pickle

    records = read(write("d.jsonl", '{"a": 1}\n{"a": 1 "b": 2}\n'))
    records += list(InputFile("d.jsonl").records(lazy=True))
    assert as_tuples(pickle.loads(pickle.dumps(records))) == as_tuples(records)


def test_size_messages_use_mib():
    assert base.too_large(int(20.1 * 2**20), 16 * 2**20) == (
        f"record is 20.1 MiB, over the 16 MiB limit {LIMIT_HINT}"
    )


def test_a_new_format_is_one_registered_reader(monkeypatch):
    """A format registered with base.register is sniffed by its extension, forced by name, read and hashed."""

    def read_lines(opened, lazy):
        for number, line in enumerate(opened.buffered(), 1):
            yield Record(opened.source, number, "line", {"text": line.decode().rstrip("\n")})

    monkeypatch.setitem(base.REGISTRY, "lines", base.Format("lines", read_lines, extensions=(".txt",)))
    write("notes.txt", "first\nsecond\n")
    f = InputFile("notes.txt")
    assert f.format == "lines"
    assert good(list(f.records())) == [{"text": "first"}, {"text": "second"}]
    assert f.sha256 == hashlib.sha256(b"first\nsecond\n").hexdigest()
    assert InputFile(write("notes.dat", "x\n"), format="lines").format == "lines"


def test_the_light_options_module_lists_the_registered_formats():
    """--format's choices (declared where importing is cheap) are the registered readers, in order."""
    options = pytest.importorskip("sftprep.options")  # issue 17's options module, once merged
    assert options.INPUT_FORMATS == readers.FORMATS
