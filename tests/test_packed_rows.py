"""The packed row (sftprep.packed_rows): its schema and the helpers training code reads it with."""

from __future__ import annotations

import numpy as np

from sftprep.labels import IGNORE_INDEX
from sftprep.packed_rows import (
    PACKED_FIELDS,
    block_causal_mask,
    cu_seqlens,
    packed_schema_for,
    segment_ids,
    unpack_row,
)


def test_schema_has_the_model_columns_then_the_per_example_lists():
    assert packed_schema_for("shifted").names[:3] == ["input_ids", "target_ids", "loss_mask"]
    assert packed_schema_for("hf").names[:2] == ["input_ids", "labels"]
    assert "attention_mask" not in packed_schema_for("hf").names  # one mask per row would join the examples
    for labels in ("shifted", "hf"):
        assert packed_schema_for(labels).names[-len(PACKED_FIELDS) :] == [f.name for f in PACKED_FIELDS]


def test_docstring_examples():
    assert cu_seqlens([3, 2]).tolist() == [0, 3, 5]
    assert cu_seqlens([]).tolist() == [0]
    assert segment_ids([2, 1], length=5).tolist() == [0, 0, 1, 2, 2]
    assert block_causal_mask([2, 1]).astype(int).tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]


def test_padding_attends_only_to_padding():
    mask = block_causal_mask([2], length=4)
    assert mask.astype(int).tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]
    assert mask.any(axis=1).all()  # no empty softmax row


def test_unpack_row_gives_each_example_as_an_unpacked_build_writes_it():
    row = {
        "input_ids": [1, 2, 3, 9, 9],
        "labels": [IGNORE_INDEX, 2, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX],  # padded to 5
        "position_ids": [0, 1, 0, 0, 1],
        "seq_lengths": [2, 1],
        "source_file": ["a.jsonl", "b.jsonl"],
        "source_line": [4, 7],
        "num_trained_tokens": 1,
        "truncated": [False, True],
        "boundary_adjusted": [True, False],
        "turn": [None, 2],
    }
    first, second = unpack_row(row)
    assert first == {
        "input_ids": [1, 2],
        "attention_mask": [1, 1],
        "labels": [IGNORE_INDEX, 2],
        "source_file": "a.jsonl",
        "source_line": 4,
        "num_trained_tokens": 1,
        "truncated": False,
        "boundary_adjusted": True,
        "turn": None,
    }
    assert (second["input_ids"], second["num_trained_tokens"], second["turn"]) == ([3], 0, 2)
    shifted = {**row, "target_ids": [2, IGNORE_INDEX, 5, 9, 9], "loss_mask": [1, 0, 1, 0, 0]}
    del shifted["labels"]
    a, b = unpack_row(shifted)
    assert (a["target_ids"], a["loss_mask"], a["num_trained_tokens"]) == ([2, IGNORE_INDEX], [1, 0], 1)
    assert (b["target_ids"], b["loss_mask"], b["num_trained_tokens"]) == ([5], [1], 1)
    assert "attention_mask" not in a
    assert np.array_equal(cu_seqlens(row["seq_lengths"]), [0, 2, 3])
