"""A recipe build's output pieces (sftprep.recipe_output): the split digest and the per-source table."""

from __future__ import annotations

import hashlib

from sftprep.recipe_output import content_digest, source_table


def test_content_digest_is_over_split_lines_in_order():
    digests = {"train": "aa", "validation": "bb"}
    assert content_digest(digests) == hashlib.sha256(b"train:aa\nvalidation:bb\n").hexdigest()
    assert content_digest({"validation": "bb", "train": "aa"}) != content_digest(digests)
    assert content_digest({"train": "ab"}) != content_digest({"train": "aa"})


def _source(name: str, weight: float, read: int, train: int, validation: int) -> dict:
    return {
        "name": name, "weight": weight, "records_read": read, "rejected": 1, "dropped_too_long": 0,
        "duplicates": 2, "contaminated": 0, "sampled_out": 0,
        "train": {"examples": train, "tokens": train * 100, "trained_tokens": train * 10},
        "validation": {"examples": validation, "tokens": validation * 100, "trained_tokens": validation * 10},
    }  # fmt: skip


def test_source_table_has_a_column_group_per_split_and_aligns():
    manifest = {
        "sources": [_source("nq", 2, 3610, 6000, 300), _source("alma", 0.5, 1002, 450, 50)],
        "splits": {"train": {}, "validation": {}},
    }
    lines = source_table(manifest)
    assert lines[0].split() == [
        "source", "weight", "read", "rejected", "too", "long", "dup", "contam", "sampled", "out",
        "train", "ex", "train", "tokens", "train", "trained",
        "validation", "ex", "validation", "tokens", "validation", "trained",
    ]  # fmt: skip
    assert lines[1].split() == ["nq", "2", "3,610", "1", "0", "2", "0", "0", "6,000", "600,000", "60,000",
                                "300", "30,000", "3,000"]  # fmt: skip
    assert lines[2].split()[:3] == ["alma", "0.5", "1,002"]
    assert len({len(line) for line in lines}) == 1  # columns aligned: every line as wide
    assert lines[1].startswith("nq  ") and lines[2].startswith("alma")


def test_source_table_without_splits_is_train_only():
    lines = source_table({"sources": [_source("only", 1, 5, 2, 0)]})
    assert lines[0].split()[-6:] == ["train", "ex", "train", "tokens", "train", "trained"]
    assert lines[1].split()[-3:] == ["2", "200", "20"]
