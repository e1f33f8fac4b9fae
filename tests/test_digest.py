"""content_sha256: a hash of the rows that does not depend on how they are chunked."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from sftprep.digest import RowDigest

SCHEMA = pa.schema(
    [
        ("input_ids", pa.list_(pa.int32())),
        ("source_file", pa.string()),
        ("source_line", pa.int64()),
        ("truncated", pa.bool_()),
    ]
)

rows = st.lists(
    st.tuples(
        st.lists(st.integers(-100, 50_000), max_size=6),
        st.sampled_from(["a.jsonl", "b.jsonl", "ü.csv", ""]),
        st.integers(0, 10**9),
        st.booleans(),
    ),
    max_size=12,
)


def _batch(part: list[tuple]) -> pa.RecordBatch:
    columns = list(zip(*part, strict=True)) if part else [[], [], [], []]
    return pa.record_batch(
        [pa.array(list(c), f.type) for c, f in zip(columns, SCHEMA, strict=True)], schema=SCHEMA
    )


def _digest(batches: list[pa.RecordBatch]) -> str:
    digest = RowDigest(SCHEMA)
    for batch in batches:
        digest.update(batch)
    return digest.hexdigest()


@given(rows, st.lists(st.integers(0, 12), max_size=4))
def test_chunking_does_not_change_the_digest(data, cuts):
    whole = _digest([_batch(data)])
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert _digest([_batch(p) for p in pieces]) == whole
    # slices of one batch (what the shard writer and merge hand over) hash like copies
    batch = _batch(data)
    assert (
        _digest([batch.slice(a, b - a) for a, b in zip([0, *points], [*points, len(data)], strict=True)])
        == whole
    )


@given(rows.filter(lambda r: len(r) >= 2))
def test_the_digest_sees_order_and_values(data):
    base = _digest([_batch(data)])
    swapped = [data[1], data[0], *data[2:]]
    if swapped != data:
        assert _digest([_batch(swapped)]) != base
    ids, name, line, flag = data[0]
    assert _digest([_batch([(ids, name, line + 1, flag), *data[1:]])]) != base
    assert _digest([_batch([([*ids, 7], name, line, flag), *data[1:]])]) != base
    # moving a token from one row to the next keeps the flat values but not the rows
    if ids:
        moved = [(ids[:-1], name, line, flag), (ids[-1:] + data[1][0], *data[1][1:])]
        assert _digest([_batch(moved + data[2:])]) != base


def test_no_rows_and_empty_batches_agree():
    assert _digest([]) == _digest([_batch([])]) == _digest([_batch([]), _batch([])])
