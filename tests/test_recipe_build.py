"""run_recipe (sftprep.recipe_build) on tiny hand-written sources: every record accounted for, per source.

tests/test_recipe.py builds real data through the whole feature; here the inputs are small
enough to know every outcome: a rejected record, a duplicate within a source and one across
sources, and which source each written row came from.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from sftprep.recipe import load_recipe
from sftprep.recipe_build import run_recipe


def _jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _rows(directory: Path) -> pa.Table:
    shards = sorted(directory.glob("data-*.arrow"))
    return pa.concat_tables(pa.ipc.open_stream(pa.memory_map(str(s))).read_all() for s in shards)


def test_rejects_and_duplicates_are_counted_and_listed_per_source(tmp_path, tokenizer_path):
    qa = lambda i: {"question": f"question {i}?", "answer": f"answer {i}"}  # noqa: E731
    _jsonl(tmp_path / "a.jsonl", [qa(1), qa(2), {"question": "no answer"}, qa(1)])
    _jsonl(tmp_path / "b.jsonl", [qa(2), qa(3)])
    (tmp_path / "r.toml").write_text(
        f"""
tokenizer = "{tokenizer_path("gpt2")}"
template = "qa"
on-error = "skip"
[[sources]]
path = "a.jsonl"
[[sources]]
path = "b.jsonl"
[dedup]
exact = true
""",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    manifest = run_recipe(load_recipe(str(tmp_path / "r.toml")), str(out)).manifest
    a, b = manifest["sources"]
    assert (a["name"], a["records_read"], a["rejected"], a["duplicates"], a["train"]["examples"]) == (
        "a",
        4,
        1,
        1,
        2,
    )
    assert (b["name"], b["records_read"], b["rejected"], b["duplicates"], b["train"]["examples"]) == (
        "b",
        2,
        0,
        1,
        1,
    )
    for s in (a, b):
        accounted = (
            s["rejected"] + s["dropped_too_long"] + s["duplicates"] + s["contaminated"] + s["sampled_out"]
        )
        assert accounted + s["train"]["examples"] == s["records_read"]
    listed = [json.loads(line) for line in (out / "duplicates.jsonl").read_text().splitlines()]
    assert [(e["source"], e["line"], e["reason"]) for e in listed] == [
        ("a", 4, "duplicate"),
        ("b", 1, "duplicate"),
    ]
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [3]
    rows = _rows(out)
    assert sorted(zip(rows["source"].to_pylist(), rows["source_line"].to_pylist(), strict=True)) == [
        ("a", 1),
        ("a", 2),
        ("b", 2),
    ]
    assert manifest["counts"]["records_read"] == 6 and manifest["counts"]["examples_written"] == 3


def test_a_conversation_built_one_row_per_turn_is_one_example(tmp_path, tokenizer_path):
    """Qwen3's template is not prefix-stable: each conversation becomes one row per assistant turn.
    The conversation is still one example: counted once, in one split, repeated whole."""

    def chat(i: int, turns: int) -> dict:
        messages = []
        for t in range(turns):
            messages += [{"role": "user", "content": f"question {i}.{t}?"},
                         {"role": "assistant", "content": f"answer {i}.{t}"}]  # fmt: skip
        return {"messages": messages}

    _jsonl(tmp_path / "chat.jsonl", [chat(i, 1 + i % 3) for i in range(12)])
    (tmp_path / "r.toml").write_text(
        f"""
tokenizer = "{tokenizer_path("qwen3")}"
seed = 5
[[sources]]
path = "chat.jsonl"
weight = 2
[split]
validation = 3
""",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    manifest = run_recipe(load_recipe(str(tmp_path / "r.toml")), str(out)).manifest
    (source,) = manifest["sources"]
    assert (source["records_read"], source["unique_train"], source["rejected"]) == (12, 9, 0)
    rows = {split: _rows(out / split).to_pydict() for split in ("train", "validation")}
    turns = {
        split: sorted(set(zip(r["source_line"], r["turn"], strict=True)), key=lambda x: (x[0], x[1] or 0))
        for split, r in rows.items()
    }
    lines = {split: {line for line, _ in t} for split, t in turns.items()}
    assert len(lines["validation"]) == 3 and not lines["train"] & lines["validation"]

    def expected(line: int) -> list[tuple[int, int | None]]:  # one row, or one per assistant turn
        n = 1 + (line - 1) % 3
        return [(line, None)] if n == 1 else [(line, 2 * k + 1) for k in range(n)]

    for split, t in turns.items():  # every row of each conversation in the split, and in no other
        assert t == sorted(
            (row for line in lines[split] for row in expected(line)), key=lambda x: (x[0], x[1] or 0)
        )
    # weight 2: each train conversation's rows twice, the rows of one copy together
    runs = [
        line
        for i, line in enumerate(rows["train"]["source_line"])
        if i == 0 or rows["train"]["source_line"][i - 1] != line
    ]
    assert sorted(runs) == sorted(2 * list(lines["train"]))
    assert source["train"]["examples"] == 2 * sum(len(expected(line)) for line in lines["train"])
