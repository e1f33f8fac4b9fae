"""``sftprep inspect`` on packed and padded rows: examples, --unpack, padding, packing stats."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from inspect_support import (
    rows_of,
    run,
    split_examples,
    split_rows,
    token_table,
)

pytestmark = pytest.mark.usefixtures("repo_root")


# -- packed and padded rows ------------------------------------------------------------------

PACKED = {"max_length": 64, "pack": True}


def by_line(stdout: str) -> dict[int, list[str]]:
    """The text view of an unpacked build: body lines by source line."""
    return {int(re.search(r":(\d+) · ", "".join(h)).group(1)): body for h, body in split_rows(stdout)}


@pytest.mark.parametrize("labels", ["shifted", "hf"])
def test_packed_rows_show_each_example_as_its_unpacked_row(built, tok, labels):
    """Under each example's own rule: exactly the text the unpacked build shows for that source line."""
    packed = built(tok("gpt2"), labels=labels, **PACKED)
    ds = rows_of(packed)
    unpacked = by_line(run(built(tok("gpt2"), labels=labels, max_length=64), "-a").stdout)
    rows = split_rows(run(packed, "-a").stdout)
    assert len(rows) == len(ds) < 42
    for i, ((header, body), row) in enumerate(zip(rows, ds, strict=True)):
        n = len(row["seq_lengths"])
        assert header[0].startswith(f"── row {i} · {n} examples · {sum(row['seq_lengths'])} tokens, ")
        examples = split_examples(body)
        assert len(examples) == n
        for k, ((rule, text), line, length) in enumerate(
            zip(examples, row["source_line"], row["seq_lengths"], strict=True)
        ):
            assert f"┄┄ example {k + 1} of {n} · sample_data/qa.jsonl:{line} · {length} tokens" in "".join(
                rule
            )
            assert text == unpacked[line]


@pytest.mark.parametrize("labels", ["shifted", "hf"])
def test_unpack_gives_the_rows_an_unpacked_build_writes(built, tok, labels):
    packed = built(tok("gpt2"), labels=labels, **PACKED)
    unpacked = built(tok("gpt2"), labels=labels, max_length=64)
    plain = {
        o["source_line"]: o
        for o in map(json.loads, run(unpacked, "-a", "--format", "json").stdout.splitlines())
    }
    objects = [json.loads(x) for x in run(packed, "-a", "--unpack", "--format", "json").stdout.splitlines()]
    assert sorted(o["source_line"] for o in objects) == sorted(plain) == list(range(1, 43))
    ds = rows_of(packed)
    for obj in objects:
        assert ds[obj["row"]]["source_line"][obj["example"]] == obj["source_line"]
        expected = dict(plain[obj["source_line"]], row=obj["row"], example=obj["example"])
        assert obj == expected
    # the text view of one example: its own header, the unpacked build's body
    text = run(packed, "--unpack", "--source", f"qa.jsonl:{ds[2]['source_line'][1]}").stdout
    ((header, body),) = split_rows(text)
    assert header[0].startswith(
        f"── row 2 · example 2 of {len(ds[2]['seq_lengths'])} · sample_data/qa.jsonl:"
    )
    assert body == by_line(run(unpacked, "-a").stdout)[ds[2]["source_line"][1]]


def test_packed_token_table_shows_position_ids_and_where_examples_start(built, tok):
    out = built(tok("gpt2"), **PACKED)
    row = rows_of(out)[0]
    stdout = run(out, "--tokens", "-i", 0).stdout
    lines = stdout.splitlines()
    assert lines[1].split()[:3] == ["pos", "pid", "id"]
    table = token_table(stdout)
    assert [int(c[0]) for c in table] == list(range(len(row["input_ids"])))
    assert [int(c[1]) for c in table] == row["position_ids"]
    assert [int(c[2]) for c in table] == row["input_ids"]
    ends = np.cumsum(row["seq_lengths"])
    for t, cols in enumerate(table):
        # an example's last position predicts nothing: the next token starts another example
        if t + 1 in ends:
            assert cols[4:] == ["-"] and row["target_ids"][t] == -100
        else:
            assert cols[4] == "→" and int(cols[5]) == row["input_ids"][t + 1]
    rules = [line for line in lines if line.startswith("┄┄ example")]
    assert len(rules) == len(row["seq_lengths"])
    starts = [lines.index(r) for r in rules]
    assert [int(lines[i + 1].split()[0]) for i in starts] == [0, *ends[:-1].tolist()]


@pytest.mark.parametrize("options", [{"pack": True}, {}], ids=["packed", "unpacked"])
def test_padding_is_shown_once_not_token_by_token(built, tok, options):
    out = built(tok("phi-3-mini"), max_length=64, pad_to="max-length", **options)
    ds = rows_of(out)
    real = [sum(r["attention_mask"]) for r in ds]
    assert all(len(r["input_ids"]) == 64 for r in ds) and min(real) < 64
    rows = split_rows(run(out, "-a").stdout)
    for (header, body), n in zip(rows, real, strict=True):
        pad = 64 - n
        joined = "".join(body)
        assert joined.count("<pad×") == (pad > 0) and joined.count("<|endoftext|>") <= 64 - pad
        if pad:
            assert joined.endswith(f"]]<pad×{pad}>") and f"64 tokens ({pad} padding)" in "".join(header)
    i = int(np.argmin(real))
    stdout = run(out, "--tokens", "-i", i).stdout
    assert len(token_table(stdout)) == real[i]
    assert stdout.splitlines()[-1].startswith(f"┄┄ padding · positions {real[i]}–63: {64 - real[i]} × ")
    stats = json.loads(run(out, "--stats", "--format", "json").stdout)
    assert stats["padding_tokens"] == 64 * len(ds) - sum(real)
    assert stats["tokens"] == sum(real) and stats["examples"] == 42
    obj = json.loads(run(out, "--format", "json", "-i", i).stdout)
    assert obj["padding"] == 64 - real[i] and len(obj["input_ids"]) == 64


def packing_figures(rows) -> dict:
    """The manifest's packing figures, computed from the rows' seq_lengths by hand."""
    per_row = [len(r["seq_lengths"]) for r in rows]
    tokens = sum(sum(r["seq_lengths"]) for r in rows)
    return {
        "rows": len(rows),
        "examples": sum(per_row),
        "tokens": tokens,
        "efficiency": round(tokens / (len(rows) * 64), 6),
        "mean": round(sum(per_row) / len(rows), 3),
        "histogram": {str(k): per_row.count(k) for k in sorted(set(per_row))},
    }


def test_packing_stats_from_the_manifest_and_from_selected_rows(built, tok):
    out = built(tok("gpt2"), **PACKED)
    ds = rows_of(out)
    manifest = json.loads((out / "manifest.json").read_text())
    stats = json.loads(run(out, "--stats", "--format", "json").stdout)
    assert stats["packing"] == stats["build_packing"] == manifest["packing"]
    assert stats["examples"] == 42 and stats["rows"] == len(ds)
    lengths = sorted(n for r in ds for n in r["seq_lengths"])
    assert stats["length"]["min"] == lengths[0] and stats["length"]["max"] == lengths[-1]
    selected = json.loads(run(out, "--stats", "--format", "json", "-i", "1-3").stdout)
    packing, expected = selected["packing"], packing_figures(ds.select(range(1, 4)))
    assert {k: packing[k] for k in ("rows", "examples", "tokens", "efficiency")} == {
        k: expected[k] for k in ("rows", "examples", "tokens", "efficiency")
    }
    assert packing["examples_per_row"]["mean"] == expected["mean"]
    assert packing["examples_per_row"]["histogram"] == expected["histogram"]
    assert selected["build_packing"] == manifest["packing"]
    text = run(out, "--stats", "-i", "1-3").stdout
    assert (
        f"packing     efficiency {packing['efficiency']:.1%}: {packing['tokens']} tokens in 3 rows of 64\n"
        in text
    )
    assert f"whole build efficiency {manifest['packing']['efficiency']:.1%}" in text


@pytest.fixture(scope="session")
def alpaca_packed(built, tok, data_path):
    return built(
        tok("gpt2"), data_path("instruction", "alpaca_5000.json"), max_length=2048, pack=True, on_error="skip"
    )


def test_alpaca_packing_efficiency_is_reported(alpaca_packed):
    """Issue 7's acceptance: alpaca_5000, gpt2, L=2048: efficiency >= 0.98 in inspect --stats and the manifest."""
    manifest = json.loads((alpaca_packed / "manifest.json").read_text())
    stats = json.loads(run(alpaca_packed, "--stats", "--format", "json").stdout)
    assert stats["packing"]["efficiency"] == manifest["packing"]["efficiency"] >= 0.98
    assert stats["packing"] == manifest["packing"]
    assert stats["examples"] == manifest["packing"]["examples"] == 4998
    text = run(alpaca_packed, "--stats").stdout
    assert f"efficiency {manifest['packing']['efficiency']:.1%}: " in text
