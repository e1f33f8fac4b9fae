"""``sftprep inspect --stats`` against the shards and the manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest
from inspect_support import (
    REAL_TOKENIZERS,
    rows_of,
    run,
)

pytestmark = pytest.mark.usefixtures("repo_root")


# -- --stats ---------------------------------------------------------------------------


@pytest.mark.parametrize("tokenizer", REAL_TOKENIZERS)
def test_stats_agree_with_the_shards(built, tok, tokenizer):
    out = built(tok(tokenizer), "sample_data/summarization.jsonl", max_length=190)
    ds = rows_of(out)
    stats = json.loads(run(out, "--stats", "--format", "json").stdout)
    lengths = np.sort([len(ids) for ids in ds["input_ids"]])
    assert stats["rows"] == stats["examples"] == len(ds)
    assert stats["tokens"] == lengths.sum()
    assert stats["trained_tokens"] == sum(sum(m) for m in ds["loss_mask"])
    assert stats["trained_fraction"] == pytest.approx(stats["trained_tokens"] / stats["tokens"])
    assert stats["length"] == {
        "min": lengths[0],
        "median": float(np.median(lengths)),
        "p95": lengths[int(np.ceil(0.95 * len(lengths))) - 1],
        "max": lengths[-1],
    }
    assert sum(b["count"] for b in stats["histogram"]) == len(ds)
    for b in stats["histogram"]:
        assert b["count"] == int(((lengths >= b["from"]) & (lengths <= b["to"])).sum())
    assert stats["at_max_length"] == int((lengths == 190).sum()) > 0
    assert stats["truncated"] == sum(ds["truncated"]) > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert stats["build_counts"] == manifest["counts"]
    assert stats["tokenizer"]["name"] == tok(tokenizer)
    text = run(out, "--stats").stdout
    assert f"rows        {len(ds)}\n" in text
    assert f"max length  190: {stats['at_max_length']} examples at the limit" in text
    assert f"tokenizer   {tok(tokenizer)}\n" in text


def test_stats_of_exploded_and_sequence_builds_agree(built, tok):
    seq = json.loads(run(built(tok("gpt2")), "--stats", "--format", "json").stdout)
    exp = json.loads(run(built(tok("gpt2"), mode="exploded"), "--stats", "--format", "json").stdout)
    for key in ("examples", "tokens", "trained_tokens", "length", "histogram"):
        assert exp[key] == seq[key], key
    assert exp["rows"] == seq["trained_tokens"]


def test_stats_of_selected_rows(built, tok):
    out = built(tok("gpt2"))
    stats = json.loads(run(out, "--stats", "--format", "json", "-i", "0-9").stdout)
    ds = rows_of(out).select(range(10))
    assert stats["selection"] and stats["rows"] == 10
    assert stats["tokens"] == sum(len(ids) for ids in ds["input_ids"])
