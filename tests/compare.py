"""Helpers for tests that check two builds hold the same rows: engines, slices + merge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datasets import load_from_disk

# NQ-open's "answer" is a list of accepted answers: the qa template, trained on the first one.
NQ_OPTIONS = ("-t", "qa", "-f", "answer=answer.0")  # on the command line
NQ_CONFIG: dict[str, Any] = {"template": "qa", "fields": {"answer": "answer.0"}}  # as BuildConfig fields

# What must agree between two builds of the same data with the same options.
SAME = (
    "config",
    "counts",
    "content_sha256",
    "tokenizer",
    "template",
    "label_convention",
    "columns",
    "inputs",
)


def manifest(output: str | Path) -> dict[str, Any]:
    return json.loads((Path(output) / "manifest.json").read_text())


def assert_same_build(a: str | Path, b: str | Path) -> None:
    """``datasets`` loads the same rows in the same order; the manifests agree; rejects too."""
    ma, mb = manifest(a), manifest(b)
    for key in SAME:
        assert ma[key] == mb[key], key
    rows_a, rows_b = load_from_disk(str(a)), load_from_disk(str(b))
    assert len(rows_a) == len(rows_b) == ma["counts"]["rows_written"]
    assert rows_a.to_dict() == rows_b.to_dict()
    rejects_a, rejects_b = Path(a) / "rejects.jsonl", Path(b) / "rejects.jsonl"
    assert rejects_a.exists() == rejects_b.exists()
    if rejects_a.exists():
        assert rejects_a.read_text() == rejects_b.read_text()
