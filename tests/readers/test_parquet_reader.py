"""Parquet (sftprep.readers.parquet): batches, spooling from gzip and stdin, corrupt files."""

from __future__ import annotations

import hashlib
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reader_support import good, read, write

from sftprep.errors import InputError
from sftprep.readers import InputFile, parquet


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
