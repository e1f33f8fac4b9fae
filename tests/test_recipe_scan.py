"""recipe_scan: the verdicts a recipe takes from the keys its builds hand back.

The keys are made where the transform runs (Keyer) and the verdicts taken in this
process (Scanner), batch by batch in input order; so the verdicts, the listing and the
split must not depend on how the records were cut into batches.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sftprep.dedup import ExactDedup, NgramIndex
from sftprep.mixture import content_key
from sftprep.readers import Record
from sftprep.recipe import load_recipe
from sftprep.recipe_output import CONTAMINATED, DUPLICATE, KEEP, UNREAD
from sftprep.recipe_scan import Keyer, Listing, Scanner

PAIRS = [("q1", "a1"), ("q2", "a2"), None, ("q1", "a1"), ("the quick brown fox jumps", "x"), ("q2", "a2")]


def _records(name: str) -> list[Record]:
    return [Record(name, i + 1, "line", {}) for i in range(len(PAIRS))]


def _scan(tmp_path, cuts: list[int]):
    ngrams = NgramIndex(3)
    ngrams.add("a quick brown fox")
    listing = Listing(tmp_path / f"dup-{len(cuts)}.jsonl")
    scanner = Scanner("s", ["a.jsonl"], ExactDedup(), ngrams, listing)
    records = _records("a.jsonl")
    for begin, end in zip([0, *cuts], [*cuts, len(PAIRS)], strict=True):
        scanner.add(scanner.keyer(records[begin:end], PAIRS[begin:end]))
    listing.close()
    (tmp_path / "a.jsonl").write_text("{}\n")
    (tmp_path / "r.toml").write_text('[[sources]]\npath = "a.jsonl"\n[split]\nvalidation = 0.5\n')
    return scanner.scan(load_recipe(str(tmp_path / "r.toml"))), listing.path.read_text().splitlines()


@pytest.mark.parametrize("cuts", [[], [1], [2, 4], [1, 2, 3, 4, 5]])
def test_verdicts_and_listing_do_not_depend_on_the_batches(tmp_path, cuts):
    scan, listed = _scan(tmp_path, cuts)
    assert scan.verdict.tolist() == [KEEP, KEEP, UNREAD, DUPLICATE, CONTAMINATED, DUPLICATE]
    assert scan.codes.tolist() == [(0 << 40) | n for n in range(1, 7)]
    assert scan.keys[2] == 0 and scan.keys[0] == content_key(["q1", "a1"]) == scan.keys[3]
    assert [(e["line"], e["reason"]) for e in map(json.loads, listed)] == [
        (4, "duplicate"),
        (5, "contaminated"),
        (6, "duplicate"),
    ]
    assert json.loads(listed[1])["message"] == "shares the 3-gram 'quick brown fox' with an evaluation file"
    whole, _ = _scan(tmp_path, [])
    assert np.array_equal(scan.validation, whole.validation)
    assert not scan.validation[[2, 3, 4, 5]].any()  # only kept examples are split


def test_the_keyer_numbers_records_by_their_file(tmp_path):
    keyer = Keyer(["a.jsonl", "b.jsonl"], None)
    found = keyer([Record("b.jsonl", 7, "line", {}), Record("a.jsonl", 2, "line", {})], [("p", "t"), None])
    assert found.codes.tolist() == [(1 << 40) | 7, 2]
    assert found.rendered.tolist() == [True, False] and found.grams is None
