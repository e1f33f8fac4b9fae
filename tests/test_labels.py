"""The label convention: shifted, hf and exploded rows train the same pairs."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from sftprep.encode import EncodedBatch
from sftprep.labels import (
    IGNORE_INDEX,
    exploded_batches,
    hf_labels,
    schema_for,
    sequence_batch,
    shifted_labels,
    trained_token_mask,
)


def _batch(rows: list[list[int]], prompt_lens: list[int]) -> EncodedBatch:
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    n = len(rows)
    return EncodedBatch(
        ids=np.array([t for r in rows for t in r], dtype=np.int32),
        offsets=offsets,
        prompt_lens=np.array(prompt_lens, dtype=np.int64),
        index=np.arange(n),
        truncated=np.zeros(n, dtype=bool),
        boundary_adjusted=np.zeros(n, dtype=bool),
    )


def test_docstring_example():
    enc = _batch([[1, 50, 51, 60, 2]], [3])
    trained = trained_token_mask(enc.offsets, enc.prompt_lens)
    assert shifted_labels(enc.ids, enc.offsets, trained).tolist() == [-100, -100, 60, 2, -100]
    assert hf_labels(enc.ids, trained).tolist() == [-100, -100, -100, 60, 2]
    schema = schema_for("exploded", "shifted")
    (batch,) = exploded_batches(enc, ["f"], np.array([1]), schema)
    assert batch.column("input_ids").to_pylist() == [[1, 50, 51], [1, 50, 51, 60]]
    assert batch.column("target_id").to_pylist() == [60, 2]
    assert batch.column("position").to_pylist() == [3, 4]


def test_rows_do_not_leak_into_each_other():
    # Row 1's first token is a target token only for row 1, never for row 0's last position.
    enc = _batch([[5, 6], [0, 7, 8]], [1, 0])
    trained = trained_token_mask(enc.offsets, enc.prompt_lens)
    assert trained.tolist() == [False, True, False, True, True]
    assert shifted_labels(enc.ids, enc.offsets, trained).tolist() == [6, -100, 7, 8, -100]


rows_strategy = st.lists(
    st.lists(st.integers(0, 1000), min_size=1, max_size=30).flatmap(
        lambda r: st.tuples(st.just(r), st.integers(0, len(r) - 1))
    ),
    min_size=1,
    max_size=8,
)


@given(rows_strategy)
def test_three_views_train_the_same_pairs(rows):
    """shifted, hf (with the model's shift) and exploded rows give the same (prefix, next) pairs."""
    enc = _batch([r for r, _ in rows], [p for _, p in rows])
    sources, lines = ["f"] * len(rows), np.arange(len(rows))
    shifted = sequence_batch(enc, sources, lines, "shifted", schema_for("sequence", "shifted")).to_pydict()
    hf = sequence_batch(enc, sources, lines, "hf", schema_for("sequence", "hf")).to_pydict()
    exploded = [
        b.to_pydict()
        for b in exploded_batches(enc, sources, lines, schema_for("exploded", "shifted"), max_values=7)
    ]
    pairs_shifted, pairs_hf = [], []
    for k, ids in enumerate(shifted["input_ids"]):
        target, mask = shifted["target_ids"][k], shifted["loss_mask"][k]
        assert len(target) == len(ids) == len(mask)
        assert target[-1] == IGNORE_INDEX
        assert mask == [int(t != IGNORE_INDEX) for t in target]
        pairs_shifted += [(k, tuple(ids[: t + 1]), target[t]) for t in range(len(ids)) if mask[t]]
        labels = hf["labels"][k]
        assert hf["input_ids"][k] == ids and hf["attention_mask"][k] == [1] * len(ids)
        # what a Hugging Face model does: logits[:-1] predict labels[1:]
        pairs_hf += [(k, tuple(ids[:t]), labels[t]) for t in range(1, len(ids)) if labels[t] != IGNORE_INDEX]
        prompt_len = rows[k][1]
        assert shifted["num_trained_tokens"][k] == len(ids) - max(prompt_len, 1)
    pairs_exploded = [
        (line, tuple(prefix), target)
        for b in exploded
        for line, prefix, target in zip(b["source_line"], b["input_ids"], b["target_id"], strict=True)
    ]
    assert pairs_shifted == pairs_hf == pairs_exploded
    expected = [(k, tuple(r[:j]), r[j]) for k, (r, p) in enumerate(rows) for j in range(max(p, 1), len(r))]
    assert pairs_shifted == expected
