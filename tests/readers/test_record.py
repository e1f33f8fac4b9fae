"""The Record and shared messages (sftprep.readers.base): where it names, how it pickles, sizes."""

from __future__ import annotations

from reader_support import LIMIT_HINT, as_tuples, read, write

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
