"""Padding (sftprep.padding): padded tokens are never attended to and never trained.

Worked examples on hand-made rows: the exact values of every padded column, for unpacked
rows of both label styles and for a packed row (its padding is one more segment).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from sftprep.labels import IGNORE_INDEX, schema_for
from sftprep.packing import packed_schema_for
from sftprep.padding import pad_batch, padded_lengths, padded_schema

PAD = 7
META = {
    "source_file": "d.jsonl",
    "source_line": 1,
    "truncated": False,
    "boundary_adjusted": False,
    "turn": None,
}


def test_padded_lengths_worked_examples():
    assert padded_lengths(np.array([3, 9]), multiple_of=4).tolist() == [4, 12]
    assert padded_lengths(np.array([3, 8]), length=8).tolist() == [8, 8]
    assert padded_lengths(np.array([3, 5]), length=6, multiple_of=4).tolist() == [8, 8]
    assert padded_lengths(np.array([3]), multiple_of=1).tolist() == [3]
    with pytest.raises(ValueError, match="a row of 9 tokens cannot be padded to 8"):
        padded_lengths(np.array([3, 9]), length=8)


def test_shifted_rows_are_padded_untrained_and_unattended():
    rows = [
        {"input_ids": [1, 2, 3], "target_ids": [-100, 3, 4], "loss_mask": [0, 1, 1], "num_trained_tokens": 2},
        {"input_ids": [5], "target_ids": [6], "loss_mask": [1], "num_trained_tokens": 1},
    ]
    batch = pa.RecordBatch.from_pylist(
        [{**r, **META} for r in rows], schema=schema_for("sequence", "shifted")
    )
    padded = pad_batch(batch, PAD, multiple_of=4)
    assert padded.schema == padded_schema(batch.schema)
    assert padded.schema.names[:2] == ["input_ids", "attention_mask"]
    got = padded.to_pylist()
    assert [r["input_ids"] for r in got] == [[1, 2, 3, PAD], [5, PAD, PAD, PAD]]
    assert [r["attention_mask"] for r in got] == [[1, 1, 1, 0], [1, 0, 0, 0]]
    assert [r["target_ids"] for r in got] == [
        [-100, 3, 4, IGNORE_INDEX],
        [6, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX],
    ]
    assert [r["loss_mask"] for r in got] == [[0, 1, 1, 0], [1, 0, 0, 0]]
    # Columns that are not per token are untouched.
    assert [r["num_trained_tokens"] for r in got] == [2, 1]
    assert [r["source_file"] for r in got] == ["d.jsonl", "d.jsonl"]


def test_hf_rows_keep_their_attention_mask_column_and_pad_labels():
    row = {
        "input_ids": [1, 2],
        "attention_mask": [1, 1],
        "labels": [-100, 2],
        "num_trained_tokens": 1,
        **META,
    }
    batch = pa.RecordBatch.from_pylist([row], schema=schema_for("sequence", "hf"))
    padded = pad_batch(batch, PAD, length=4)
    assert padded.schema.names == batch.schema.names
    (got,) = padded.to_pylist()
    assert (got["input_ids"], got["attention_mask"], got["labels"]) == (
        [1, 2, PAD, PAD],
        [1, 1, 0, 0],
        [-100, 2, IGNORE_INDEX, IGNORE_INDEX],
    )


def test_packed_padding_is_one_more_segment_with_its_own_positions():
    row = {
        "input_ids": [1, 2, 3],
        "target_ids": [2, -100, -100],
        "loss_mask": [1, 0, 0],
        "position_ids": [0, 1, 0],
        "seq_lengths": [2, 1],
        "source_file": ["d.jsonl", "d.jsonl"],
        "source_line": [1, 2],
        "num_trained_tokens": 1,
        "truncated": [False, False],
        "boundary_adjusted": [False, False],
        "turn": [None, None],
    }
    batch = pa.RecordBatch.from_pylist([row], schema=packed_schema_for("shifted"))
    (got,) = pad_batch(batch, PAD, length=6).to_pylist()
    assert got["input_ids"] == [1, 2, 3, PAD, PAD, PAD]
    assert got["position_ids"] == [0, 1, 0, 0, 1, 2]
    assert got["attention_mask"] == [1, 1, 1, 0, 0, 0]
    assert got["loss_mask"] == [1, 0, 0, 0, 0, 0]
    assert got["seq_lengths"] == [2, 1]  # the examples, not the padding
