"""mixture.py and dedup.py: the split, weights, order of repeats, exact dedup and n-gram overlap."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sftprep.dedup import ExactDedup, NgramIndex, words
from sftprep.mixture import content_key, copies, planned_total, train_order, validation_mask

KEYS = np.array([content_key([f"question {i}", f"answer {i}"]) for i in range(2000)], dtype=np.uint64)


def test_content_key_depends_on_content_only():
    assert content_key(["a", "b"]) == content_key(["a", "b"])
    assert content_key(["a", "b"]) != content_key(["ab", ""])  # the prompt/target boundary counts
    assert content_key([["user", "hi"]]) != content_key([["assistant", "hi"]])


def test_split_is_per_example_whatever_the_order_or_company():
    mask = validation_mask(KEYS, 3, 0.1)
    order = np.random.default_rng(0).permutation(len(KEYS))
    assert np.array_equal(validation_mask(KEYS[order], 3, 0.1), mask[order])
    assert np.array_equal(validation_mask(KEYS[:500], 3, 0.1), mask[:500])
    assert 150 < mask.sum() < 250
    assert not np.array_equal(validation_mask(KEYS, 4, 0.1), mask)  # the seed decides


def test_split_by_count_takes_exactly_that_many():
    assert validation_mask(KEYS, 1, 37).sum() == 37
    assert validation_mask(KEYS[:5], 1, 37).sum() == 5


@given(st.floats(min_value=0, max_value=5, allow_nan=False), st.integers(min_value=0, max_value=300))
def test_weight_gives_round_w_n_examples(weight, n):
    times = copies(KEYS[:n], 9, weight)
    assert times.sum() == planned_total(weight, n)
    assert set(np.unique(times)) <= {int(weight), int(weight) + 1}
    order = train_order(KEYS[:n], times, 9)
    assert np.array_equal(np.bincount(order, minlength=n), times)


def test_fraction_samples_without_repeats_in_input_order():
    times = copies(KEYS[:100], 2, 0.5)
    assert times.sum() == 50 and times.max() == 1
    order = train_order(KEYS[:100], times, 2)
    assert list(order) == sorted(order)


def test_repeats_come_after_the_first_copies_in_a_seeded_order():
    times = copies(KEYS[:50], 2, 2.0)
    order = train_order(KEYS[:50], times, 2)
    assert list(order[:50]) == list(range(50))
    assert sorted(order[50:]) == list(range(50)) and list(order[50:]) != list(range(50))
    assert list(train_order(KEYS[:50], times, 3)[50:]) != list(order[50:])


@pytest.mark.parametrize(
    ("weight", "n", "total"), [(0.5, 7, 4), (1.5, 3, 5), (2, 10, 20), (0, 10, 0), (0.25, 2, 1)]
)
def test_planned_total_rounds_halves_up(weight, n, total):
    assert planned_total(weight, n) == total


def test_exact_dedup_remembers_keys():
    dedup = ExactDedup()
    assert [dedup.seen(k) for k in (1, 2, 1, 3, 2)] == [False, False, True, False, True]


def test_exact_dedup_in_batches_matches_a_python_set():
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 3000, size=20_000, dtype=np.uint64)  # many repeats, within and across batches
    dedup, reference = ExactDedup(), set()
    got = []
    for begin in range(0, len(keys), 700):
        got += dedup.seen_many(keys[begin : begin + 700]).tolist()
    want = []
    for k in keys.tolist():
        want.append(k in reference)
        reference.add(k)
    assert got == want
    assert len(dedup) == len(reference)


def test_exact_dedup_keeps_8_bytes_per_key_in_few_runs():
    """The set spanning sources is bounded: its keys' bytes, in O(log n) sorted arrays."""
    dedup = ExactDedup()
    rng = np.random.default_rng(0)
    n = 0
    for _ in range(300):
        n += 4096
        dedup.seen_many(rng.integers(0, 2**64 - 1, size=4096, dtype=np.uint64, endpoint=True))
    assert len(dedup) == n  # random 64-bit keys: no collision at this size
    assert dedup.nbytes == 8 * n
    assert all(run.dtype == np.uint64 and run.flags.owndata for run in dedup.runs)
    assert len(dedup.runs) <= 2 * int(np.log2(n))
    assert all(np.all(run[1:] > run[:-1]) for run in dedup.runs)  # sorted, each key once


def test_ngram_overlap_ignores_case_and_punctuation():
    index = NgramIndex(3)
    index.add("What is the capital of France?")
    assert index.overlap(["Tell me: WHAT is, the capital of Peru"]) == "what is the"
    assert index.overlap(["the capital city of France"]) is None
    assert index.overlap(["France"]) is None  # shorter than n: no n-gram
    assert words("What's up?") == ["what", "s", "up"]
