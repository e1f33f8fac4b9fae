"""Exact deduplication and n-gram decontamination (sftprep.dedup), on the module docstring's example."""

from __future__ import annotations

from sftprep.dedup import ExactDedup, NgramIndex, ngram_hashes, words


def test_words_are_lowercased_runs_of_letters_and_digits():
    assert words("What's up?") == ["what", "s", "up"]
    assert words("  Grüße, 2 Köln!") == ["grüße", "2", "köln"]
    assert words("...") == []


def test_ngram_hashes_ignore_case_punctuation_and_spacing():
    a = list(ngram_hashes("What is the capital of France?", 3))
    assert len(a) == 4  # (what is the) (is the capital) (the capital of) (capital of france)
    assert list(ngram_hashes("what  IS the, capital of france", 3)) == a
    assert len(set(a)) == 4
    assert list(ngram_hashes("two words", 3)) == []  # shorter than n: no n-gram


def test_exact_dedup_keeps_the_first_of_each_key():
    dedup = ExactDedup()
    assert [dedup.seen(k) for k in (1, 2, 1, 3, 2)] == [False, False, True, False, True]


def test_ngram_index_finds_the_docstring_overlap():
    index = NgramIndex(3)
    assert index.overlap(["anything at all here"]) is None  # empty index
    index.add("What is the capital of France?")
    assert index.texts == 1
    assert index.overlap(["Tell me: what is the capital of Peru"]) == "what is the"
    assert index.overlap(["The capital city of France", "is the"]) is None
    # The first overlapping n-gram of the first text that has one.
    assert index.overlap(["no overlap here", "so: the capital of Spain"]) == "the capital of"
