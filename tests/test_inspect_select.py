"""``sftprep inspect``: choosing rows (--limit, --index, --random, --source, --where) and exploded rows."""

from __future__ import annotations

import json
import re

import pytest
from inspect_support import (
    headers,
    rows_of,
    run,
)
from rich.cells import cell_len

pytestmark = pytest.mark.usefixtures("repo_root")


# -- choosing rows -----------------------------------------------------------------------


def row_numbers(stdout: str) -> list[int]:
    return [int(re.match(r"── rows? (\d+)", h).group(1)) for h in headers(stdout)]


def test_default_shows_the_first_three_rows(built, tok):
    assert row_numbers(run(built(tok("gpt2"))).stdout) == [0, 1, 2]


def test_index_ranges(built, tok):
    out = built(tok("gpt2"))
    assert row_numbers(run(out, "-i", "3-4,40").stdout) == [3, 4, 40]
    assert row_numbers(run(out, "-i", "39-", "-i", "0").stdout) == [0, 39, 40, 41]
    assert row_numbers(run(out, "-i", "10-30", "-n", 2).stdout) == [10, 11]


def test_source_file_and_line(built, tok):
    out = built(tok("gpt2"))
    (header,) = headers(run(out, "--source", "qa.jsonl:5").stdout)
    assert header.startswith("── row 4 · sample_data/qa.jsonl:5 · ")
    assert row_numbers(run(out, "--source", "sample_data/qa.jsonl:10-12").stdout) == [9, 10, 11]
    assert row_numbers(run(out, "--source", ":42").stdout) == [41]
    missing = run(out, "--source", "other.jsonl")
    assert missing.stdout == "" and "no rows match" in missing.stderr


def test_random_rows_are_reproducible(built, tok):
    out = built(tok("gpt2"))
    first = row_numbers(run(out, "--random", 5, "--seed", 1).stdout)
    assert first == row_numbers(run(out, "--random", 5, "--seed", 1).stdout)
    assert first != row_numbers(run(out, "--random", 5, "--seed", 2).stdout)
    assert len(set(first)) == 5 and first == sorted(first) and max(first) < 42


def test_where_truncated_and_max_length(built, tok):
    out = built(tok("gpt2"), "sample_data/summarization.jsonl", max_length=185)
    ds = rows_of(out)

    def json_rows(*args):
        return [json.loads(x)["row"] for x in run(out, "--format", "json", "-a", *args).stdout.splitlines()]

    truncated = [i for i, t in enumerate(ds["truncated"]) if t]
    at_limit = [i for i, ids in enumerate(ds["input_ids"]) if len(ids) == 185]
    assert 0 < len(truncated) < len(ds)
    assert json_rows("-w", "truncated") == truncated
    assert json_rows("-w", "max-length") == at_limit
    assert json_rows("-w", "max-length", "-w", "truncated") == sorted(set(truncated) & set(at_limit))


def test_where_no_eos(built, tok):
    out = built(tok("gpt2"), "sample_data/summarization.jsonl", max_length=180, truncation="target")
    ds = rows_of(out)
    eos = 50256
    expected = [i for i, targets in enumerate(ds["target_ids"]) if eos not in targets]
    assert 0 < len(expected) < len(ds)  # cutting the target's end loses the EOS
    assert row_numbers(run(out, "-w", "no-eos", "-a").stdout) == expected


def test_where_boundary_adjusted(built, tok, tmp_path):
    template = tmp_path / "spaced.toml"
    template.write_text('name = "spaced"\nprompt = "Question: {question} Answer: "\ntarget = "{answer}"\n')
    out = built(tok("gpt2"), template=str(template))
    ds = rows_of(out)
    expected = [i for i, flag in enumerate(ds["boundary_adjusted"]) if flag]
    assert expected
    stdout = run(out, "-w", "boundary-adjusted", "-a").stdout
    assert row_numbers(stdout) == expected
    assert all("boundary adjusted" in h for h in headers(stdout))


def test_exploded_rows_grouped_by_example(built, tok):
    out = built(tok("gpt2"), mode="exploded")
    stdout = run(out, "-n", 2).stdout
    lines = stdout.splitlines()
    assert lines[0].startswith("── rows 0–1 · sample_data/qa.jsonl:1 · 2 trained tokens")
    assert lines[1] == " 11  Question: What is the capital of France? Answer: → [[ Paris]]"
    assert lines[2] == " 12  Question: What is the capital of France? Answer: Paris → [[<|endoftext|>]]"
    assert lines[3].startswith("── rows 2–4 · sample_data/qa.jsonl:2 · 3 trained tokens")
    assert len(lines) == 3 + 4
    # a single exploded row by its number
    one = run(out, "-i", 3).stdout.splitlines()
    assert one[0].startswith("── row 3 · sample_data/qa.jsonl:2 · 1 trained token ")
    assert one[1].endswith("→ [[.]]")


def test_exploded_long_prefixes_are_elided_with_a_count(built, tok):
    out = built(tok("gpt2"), "sample_data/summarization.jsonl", mode="exploded")
    lines = run(out, "-n", 1).stdout.splitlines()
    elided = [line for line in lines[1:] if "tokens⟩…" in line]
    assert len(elided) == len(lines) - 1
    ds = rows_of(out)
    for line, row in zip(lines[1:], ds, strict=False):
        position, hidden = int(line.split()[0]), int(re.search(r"…⟨(\d+) tokens⟩…", line).group(1))
        assert position == row["position"] and 0 < hidden < position
        assert cell_len(line) <= 80
