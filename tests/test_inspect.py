"""``sftprep inspect`` on real builds: markers, token tables, JSON, stats, pipes, goldens.

Builds are made once per session with ``run_build`` and the real tokenizers in
../shared, from sample_data/ (named relative to the repository root, as a user
in the checkout would, so that golden files hold no machine paths) and from
real datasets. Expected values are computed from the shards (``datasets``) and
the tokenizer directly, never from the view's own code.

Golden files: ``SFTPREP_UPDATE_GOLDEN=1 pytest tests/test_inspect.py`` rewrites
them; review the diff like any other change to the view.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from datasets import load_from_disk
from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.text import Text
from tokenizers import Tokenizer

from sftprep import view
from sftprep.build import BuildConfig, run_build
from sftprep.cli import cli
from sftprep.cli_inspect import inspect

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE_GOLDEN = os.environ.get("SFTPREP_UPDATE_GOLDEN") == "1"
QA = "sample_data/qa.jsonl"
REAL_TOKENIZERS = ("gpt2", "mistral-7b-v0.1", "phi-3-mini")


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    """Builds name their inputs and tokenizers relative to the checkout: run from there."""
    monkeypatch.chdir(ROOT)


@pytest.fixture(scope="session")
def tok(tokenizer_path):
    """tok("gpt2") -> "../shared/tokenizers/gpt2" (skips when ../shared is missing)."""
    return lambda name: os.path.relpath(tokenizer_path(name), ROOT)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """built(tokenizer, data=QA, **options) -> the output directory of that build, made once."""
    cache: dict[str, Path] = {}

    def build(tokenizer: str | None, data: str = QA, **options) -> Path:
        key = repr((tokenizer, data, sorted(options.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp("build") / "out"
            with contextlib.chdir(ROOT):
                config = BuildConfig(inputs=(data,), output=str(out), tokenizer=tokenizer, **options)
                run_build(config)
            cache[key] = out
        return cache[key]

    return build


def run(*args, ok: bool = True, env: dict | None = None):
    result = CliRunner(env=env).invoke(inspect, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def load_tok(name: str) -> Tokenizer:
    return Tokenizer.from_file(str(ROOT / name / "tokenizer.json"))


def rows_of(out: Path):
    return load_from_disk(str(out))


def split_rows(stdout: str) -> list[tuple[list[str], list[str]]]:
    """The text view as (header lines, body lines) per row."""
    return _split(stdout.splitlines(), "── row", "─")


def _split(lines: list[str], start: str, rule_end: str) -> list[tuple[list[str], list[str]]]:
    """Lines as (rule lines, lines under it) per part; a part starts at a line starting with ``start``."""
    parts: list[tuple[list[str], list[str]]] = []
    i = 0
    while i < len(lines):
        assert lines[i].startswith(start), lines[i]
        rule = [lines[i]]
        while not rule[-1].endswith(rule_end):
            i += 1
            rule.append(lines[i])
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(start):
            body.append(lines[i])
            i += 1
        parts.append((rule, body))
    return parts


def shown(text: str) -> str:
    """Text as the view writes it on one line (``\\n`` as ↵, tabs as ⇥, ...)."""
    return "".join(part for part, _ in view.visible(text, newlines=False))


def trained_tokens(mask: list[int]) -> np.ndarray:
    """Token j is trained when the shifted loss_mask says position j - 1 predicts it."""
    flags = np.zeros(len(mask), dtype=bool)
    flags[1:] = np.asarray(mask[:-1], dtype=bool)
    return flags


# -- the text view ----------------------------------------------------------------------


@pytest.mark.parametrize("tokenizer", REAL_TOKENIZERS)
@pytest.mark.parametrize(
    "data",
    [
        QA,
        "sample_data/summarization.jsonl",
        ("summarization", "dialogsum.dev.jsonl"),
        ("qa", "gsm8k_test.jsonl"),
    ],
    ids=lambda d: d if isinstance(d, str) else d[1],
)
def test_markers_exactly_around_the_trained_span(built, tok, data_path, tokenizer, data):
    """Every row: prompt text, then [[ trained text ]], each exactly as the tokenizer decodes it."""
    path = data if isinstance(data, str) else data_path(*data)
    out = built(tok(tokenizer), path)
    ds = rows_of(out)
    tokenizer_ = load_tok(tok(tokenizer))
    result = run(out, "-n", 40)
    rows = split_rows(result.stdout)
    assert len(rows) == min(40, len(ds))
    for (header, body), row in zip(rows, ds, strict=False):
        ids, flags = row["input_ids"], trained_tokens(row["loss_mask"])
        start = int(np.argmax(flags))
        assert flags[start:].all() and not flags[:start].any()  # one trained span, to the end
        prompt = tokenizer_.decode(ids[:start], skip_special_tokens=False)
        whole = tokenizer_.decode(ids, skip_special_tokens=False)
        assert whole.startswith(prompt)
        expected = shown(prompt) + "[[" + shown(whole[len(prompt) :]) + "]]"
        assert "".join(body) == expected, header
        assert f"{len(ids):,} tokens, {sum(row['loss_mask']):,} trained" in "".join(header)
        assert all(cell_len(line) <= 80 for line in header + body)


def test_special_tokens_and_whitespace_are_visible(tmp_path, tok):
    """EOS shows literally inside the markers; newlines, tabs and odd spaces show as ↵, ⇥, \\u00a0."""
    data = tmp_path / "spaces.jsonl"
    data.write_text(json.dumps({"question": "Two lines:\nfirst\tsecond", "answer": "a\u00a0b\nc"}) + "\n")
    out = tmp_path / "out"
    run_build(BuildConfig(inputs=(str(data),), output=str(out), tokenizer=tok("phi-3-mini")))
    body = split_rows(run(out).stdout)[0][1]
    assert body == ["Question: Two lines:↵", "first⇥second Answer:[[ a\\u00a0b↵", "c<|endoftext|>]]"]


def test_colour_on_a_terminal_and_markers_with_no_color(built, tok):
    out = built(tok("gpt2"))
    coloured = _on_a_terminal(["inspect", str(out), "-n", "1"], {})
    assert "\x1b[" in coloured and "[[" not in coloured and "Paris" in coloured
    plain = _on_a_terminal(["inspect", str(out), "-n", "1"], {"NO_COLOR": "1"})
    assert "\x1b[" not in plain and "[[ Paris<|endoftext|>]]" in plain


def _on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run sftprep with stdout on a pseudo-terminal; return what it wrote."""
    leader, follower = pty.openpty()
    unset = ("NO_COLOR", "COLUMNS", "LINES", "FORCE_COLOR")
    environment = {k: v for k, v in os.environ.items() if k not in unset} | env | {"TERM": "xterm-256color"}
    proc = subprocess.run(
        [sys.executable, "-m", "sftprep", *args],
        stdout=follower,
        stderr=subprocess.PIPE,
        env=environment,
        cwd=ROOT,
    )
    os.close(follower)
    chunks = []
    with contextlib.suppress(OSError):  # EIO once the terminal is closed and drained
        while chunk := os.read(leader, 65536):
            chunks.append(chunk)
    os.close(leader)
    assert proc.returncode == 0, proc.stderr
    return b"".join(chunks).decode()


# -- --tokens -------------------------------------------------------------------------


def token_table(stdout: str) -> list[list[str]]:
    """The data lines of --tokens output, split into columns (token strings hold no spaces)."""
    return [line.split() for line in stdout.splitlines() if re.match(r"^\s*\d+\s", line)]


@pytest.mark.parametrize("tokenizer", REAL_TOKENIZERS)
def test_tokens_rows_agree_with_the_stored_ids(built, tok, tokenizer):
    out = built(tok(tokenizer), "sample_data/translation.jsonl")
    ds = rows_of(out)
    tokenizer_ = load_tok(tok(tokenizer))
    table = token_table(run(out, "--tokens", "-a").stdout)
    assert len(table) == sum(len(r) for r in ds["input_ids"])
    k = 0
    for row in ds:
        ids, mask = row["input_ids"], row["loss_mask"]
        for t, token_id in enumerate(ids):
            cols = table[k]
            k += 1
            assert (int(cols[0]), int(cols[1])) == (t, token_id)
            piece = view.escape_piece(tokenizer_.id_to_token(token_id))
            if cell_len(piece) <= 16:
                assert cols[2] == piece
            if t == len(ids) - 1:
                assert cols[-1] == "-" and len(cols) == 4  # the last position predicts nothing
                continue
            assert cols[3] == "→" and int(cols[4]) == ids[t + 1]
            assert cols[6] == ("yes" if mask[t] else "-")
            assert row["target_ids"][t] == (ids[t + 1] if mask[t] else -100)


@pytest.mark.parametrize("tokenizer", REAL_TOKENIZERS)
def test_shifted_hf_and_exploded_builds_print_the_same_table(built, tok, tokenizer):
    shifted = run(built(tok(tokenizer)), "--tokens", "-a").stdout
    hf = run(built(tok(tokenizer), labels="hf"), "--tokens", "-a").stdout
    exploded = run(built(tok(tokenizer), mode="exploded"), "--tokens", "-a").stdout
    assert hf == shifted
    assert token_table(exploded) == token_table(shifted)
    assert exploded.count("── rows ") == shifted.count("── row ") == 42


# -- JSON --------------------------------------------------------------------------------


@pytest.mark.parametrize("tokenizer", REAL_TOKENIZERS)
@pytest.mark.parametrize("labels", ["shifted", "hf"])
def test_json_round_trips_the_ids(built, tok, tokenizer, labels):
    out = built(tok(tokenizer), "sample_data/summarization.jsonl", labels=labels)
    ds = rows_of(out)
    tokenizer_ = load_tok(tok(tokenizer))
    objects = [json.loads(line) for line in run(out, "--format", "json", "-a").stdout.splitlines()]
    assert len(objects) == len(ds)
    for obj, row in zip(objects, ds, strict=True):
        ids = row["input_ids"]
        assert obj["input_ids"] == ids
        assert obj["tokens"] == [tokenizer_.id_to_token(i) for i in ids]
        assert "".join(obj["text"]) == tokenizer_.decode(ids, skip_special_tokens=False)
        if labels == "hf":
            assert obj["trained"] == [int(label != -100) for label in row["labels"]]
        else:
            assert obj["trained"] == trained_tokens(row["loss_mask"]).astype(int).tolist()
        assert (obj["source_file"], obj["source_line"]) == (row["source_file"], row["source_line"])
        assert obj["num_trained_tokens"] == row["num_trained_tokens"] == sum(obj["trained"])


def test_json_of_exploded_rows(built, tok):
    out = built(tok("mistral-7b-v0.1"), mode="exploded")
    ds = rows_of(out)
    objects = [json.loads(line) for line in run(out, "--format", "json", "-a").stdout.splitlines()]
    assert [o["input_ids"] for o in objects] == ds["input_ids"]
    assert [o["target_id"] for o in objects] == ds["target_id"]
    assert [o["position"] for o in objects] == ds["position"] == [len(o["input_ids"]) for o in objects]
    assert objects[1]["target_token"] == "</s>" and objects[0]["target_text"] == " Paris"


# -- choosing rows -----------------------------------------------------------------------


def headers(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("── row")]


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


# -- packed and padded rows ------------------------------------------------------------------

PACKED = {"max_length": 64, "pack": True}


def split_examples(body: list[str]) -> list[tuple[list[str], list[str]]]:
    """A packed row's text as (sub-rule lines, body lines) per example."""
    return _split(body, "┄┄ example", "┄")


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


# -- chat rows ---------------------------------------------------------------------------------

CHAT_BUILDS = {  # (tokenizer, build options, how each rendered message starts)
    "phi-3-mini": ("phi-3-mini", {}, "<|{role}|>"),
    "smollm-135m-chatml": ("smollm-135m", {"chat_template": "chatml"}, "<|im_start|>{role}\n"),
}
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


def conversation_roles(path: str) -> list[list[str]]:
    """Per record of a ShareGPT file, its messages' roles, read straight from the JSON."""
    records = json.loads(Path(path).read_text(encoding="utf-8"))
    return [[SHAREGPT_ROLES[m["from"]] for m in r["conversations"]] for r in records]


def split_turns(body: list[str]) -> list[tuple[str, str]]:
    """A chat row's text view as (role, text) per message: ``role │ text`` and ``     │ more``."""
    turns: list[tuple[str, str]] = []
    for line in body:
        label, bar, text = line.partition("│ ")
        assert bar, line
        if label.strip():
            turns.append((label.strip(), text))
        else:
            turns[-1] = (turns[-1][0], turns[-1][1] + text)
    return turns


@pytest.fixture(scope="session")
def chat_build(built, tok, data_path):
    """chat_build(name, **more) -> (output, data file) for a CHAT_BUILDS entry on dummy_conversation.json."""

    def build(name: str, **more):
        tokenizer, options, _ = CHAT_BUILDS[name]
        data = data_path("chat", "dummy_conversation.json")
        return built(tok(tokenizer), data, **options, **more), data

    return build


@pytest.mark.parametrize("name", sorted(CHAT_BUILDS))
def test_chat_rows_show_each_message_behind_its_role(chat_build, name):
    out, data = chat_build(name)
    roles = conversation_roles(data)
    ds = rows_of(out)
    result = run(out, "-n", 60)
    assert result.stderr == ""
    rows = split_rows(result.stdout)
    assert len(rows) == 60
    start = CHAT_BUILDS[name][2]
    for (header, body), row in zip(rows, ds, strict=False):
        turns = split_turns(body)
        assert [role for role, _ in turns] == roles[row["source_line"] - 1], header
        for role, text in turns:  # each message starts with its own header, in the template's words
            assert text.startswith(shown(start.format(role=role))), (role, text)
        for role, text in turns:  # trained text only in assistant messages, never across two
            assert text.count("[[") == text.count("]]") == (role == "assistant")


@pytest.mark.parametrize("name", sorted(CHAT_BUILDS))
def test_chat_turns_in_json_and_in_the_token_table(chat_build, name, tok):
    out, data = chat_build(name)
    roles = conversation_roles(data)
    tokenizer = load_tok(tok(CHAT_BUILDS[name][0]))
    start = CHAT_BUILDS[name][2]
    for line in run(out, "-n", 20, "--format", "json").stdout.splitlines():
        obj = json.loads(line)
        turns = obj["turns"]
        assert [t["role"] for t in turns] == roles[obj["source_line"] - 1]
        assert [t["message"] for t in turns] == list(range(len(turns)))
        assert turns[0]["start"] == 0 and turns[-1]["stop"] == len(obj["input_ids"])
        assert all(a["stop"] == b["start"] for a, b in itertools.pairwise(turns))
        for t in turns:  # decoded by the tokenizer itself: each range is one message, header first
            text = tokenizer.decode(obj["input_ids"][t["start"] : t["stop"]], skip_special_tokens=False)
            assert text.startswith(start.format(role=t["role"]))
    table = run(out, "--tokens", "-i", 0).stdout.splitlines()
    rules = [line for line in table if line.startswith("┄┄ ")]
    expected = roles[rows_of(out)[0]["source_line"] - 1]
    assert [r.split(" · ")[0].removeprefix("┄┄ ") for r in rules] == expected
    assert [int(r.split(" · message ")[1].split()[0]) for r in rules] == list(range(len(expected)))


@pytest.mark.parametrize("name", sorted(CHAT_BUILDS))
def test_chat_preview_gets_the_roles_directly(chat_build, tok, name):
    out, data = chat_build(name)
    tokenizer, options, _ = CHAT_BUILDS[name]
    flags = ["--chat-template", options["chat_template"]] if options else []
    preview = run("--preview", data, "--tokenizer", tok(tokenizer), *flags, "-n", 5, "--records", 10)
    assert preview.stdout == run(out, "-n", 5).stdout and "│ " in preview.stdout
    assert preview.stderr == ""


def test_truncated_chat_rows_keep_their_roles(chat_build):
    """--truncation prompt cuts the start (whole trained turns, context in part): the rest keeps its roles."""
    out, data = chat_build("phi-3-mini", max_length=30, on_error="skip")
    roles = conversation_roles(data)
    result = run(out, "-w", "truncated", "-n", 20)
    rows = split_rows(result.stdout)
    assert len(rows) == 20 and result.stderr == ""
    dropped = 0
    for header, body in rows:
        line = int(re.search(r":(\d+) · ", header[0]).group(1))
        shown_roles = [role for role, _ in split_turns(body)]
        assert shown_roles and shown_roles == roles[line - 1][-len(shown_roles) :]
        dropped += len(shown_roles) < len(roles[line - 1])
    assert dropped > 0


def test_packed_chat_rows_show_roles_per_example(chat_build):
    out, data = chat_build("smollm-135m-chatml", max_length=256, pack=True)
    roles = conversation_roles(data)
    ds = rows_of(out)
    ((_, body),) = split_rows(run(out, "-i", 0).stdout)
    examples = split_examples(body)
    assert len(examples) == len(ds[0]["seq_lengths"])
    for (rule, text), line in zip(examples, ds[0]["source_line"], strict=True):
        assert [role for role, _ in split_turns(text)] == roles[line - 1], rule
    for width, args in ((80, []), (80, ["--tokens"]), (80, ["--unpack"]), (40, []), (40, ["--unpack"])):
        lines = run(out, "-n", 2, "--width", width, *args).stdout.splitlines()  # rules and gutters fold
        assert max(cell_len(line) for line in lines) <= width, (width, args)
    unpacked, _ = chat_build("smollm-135m-chatml", max_length=256)
    plain = {
        o["source_line"]: o
        for o in map(json.loads, run(unpacked, "-a", "--format", "json").stdout.splitlines())
    }
    for line in run(out, "-i", "0-2", "--unpack", "--format", "json").stdout.splitlines():
        obj = json.loads(line)
        assert obj == dict(plain[obj["source_line"]], row=obj["row"], example=obj["example"])


def test_chat_rows_without_their_records_are_shown_plain(tmp_path, tok, data_path):
    """The data file changed or is gone: plain rows, and why, once."""
    data = tmp_path / "conversations.json"
    shutil.copy(data_path("chat", "dummy_conversation.json"), data)
    out = tmp_path / "out"
    run_build(BuildConfig(inputs=(str(data),), output=str(out), tokenizer=tok("phi-3-mini")))
    with_roles = split_rows(run(out, "-n", 3).stdout)
    records = json.loads(data.read_text())
    records[1]["conversations"][1]["value"] = "Something else."
    data.write_text(json.dumps(records))
    changed = run(out, "-n", 3)
    assert changed.stderr.count("sftprep: ") == 1
    assert f"{data}: record 2: the row's ids differ from its record rendered again" in changed.stderr
    rows = split_rows(changed.stdout)
    assert rows[0] == with_roles[0] and rows[2] == with_roles[2]
    plain = rows[1][1]
    assert not any("│ " in line for line in plain)
    assert "".join(plain) == "".join(text for _, text in split_turns(with_roles[1][1]))
    data.unlink()
    gone = run(out, "-n", 3)
    assert (
        gone.stderr
        == f"sftprep: cannot read {data} again (no such file: {data}): its chat rows are shown without roles\n"
    )
    assert not any("│ " in line for line in gone.stdout.splitlines())


def test_chat_rows_of_a_changed_template_are_shown_plain(tmp_path, tok, data_path):
    template = tmp_path / "mine.jinja"
    template.write_text((ROOT / "configs" / "chat" / "chatml.jinja").read_text())
    out = tmp_path / "out"
    config = BuildConfig(
        inputs=(data_path("chat", "dummy_conversation.json"),),
        output=str(out),
        tokenizer=tok("smollm-135m"),
        chat_template=str(template),
    )
    run_build(config)
    assert "│ " in run(out, "-n", 1).stdout
    template.write_text(template.read_text() + "{# edited after the build #}")
    result = run(out, "-n", 2)
    assert "│ " not in result.stdout and len(split_rows(result.stdout)) == 2
    assert result.stderr == (
        f"sftprep: cannot render the chat records again (the chat template '{template}' is not the one "
        "the build used (sha256)): chat rows are shown without roles\n"
    )


# -- sources: shards, previews, tokenizers --------------------------------------------------


def test_a_single_shard_and_several_shards(built, tok):
    out = built(tok("gpt2"), shard_size=3000)
    shards = sorted(out.glob("data-*.arrow"))
    assert len(shards) > 2
    whole = [json.loads(x) for x in run(out, "--format", "json", "-a").stdout.splitlines()]
    assert [o["input_ids"] for o in whole] == rows_of(out)["input_ids"]
    second = [json.loads(x) for x in run(shards[1], "--format", "json", "-a").stdout.splitlines()]
    first_count = len(pa.ipc.open_stream(str(shards[0])).read_all())
    assert [o["input_ids"] for o in second] == [o["input_ids"] for o in whole[first_count:][: len(second)]]
    assert (
        run(shards[1], "-n", 1).stdout.split("\n", 1)[1]
        == run(out, "-i", first_count).stdout.split("\n", 1)[1]
    )


@pytest.mark.parametrize(
    "options",
    [[], ["--tokens"], ["--labels", "hf", "--tokens"], ["--mode", "exploded"], ["--format", "json"]],
    ids=lambda o: " ".join(o) or "text",
)
def test_preview_shows_what_the_build_writes(built, tok, options):
    build_options = {}
    if "--labels" in options:
        build_options["labels"] = "hf"
    if "--mode" in options:
        build_options["mode"] = "exploded"
    out = built(tok("mistral-7b-v0.1"), **build_options)
    shown_options = [o for o in options if o in ("--tokens", "--format", "json")]
    from_build = run(out, "-n", 4, *shown_options).stdout
    preview = run("--preview", QA, "--tokenizer", tok("mistral-7b-v0.1"), "-n", 4, *options).stdout
    assert preview == from_build


def test_preview_reports_rejected_records(tmp_path, tok):
    data = tmp_path / "mixed.jsonl"
    data.write_text(
        '{"question": "2+2?", "answer": "4"}\n{"question": "no answer"}\n{"question": "3+3?", "answer": "6"}\n'
    )
    result = run("--preview", data, "--tokenizer", tok("gpt2"), "-t", "qa", "-a")
    assert len(headers(result.stdout)) == 2
    assert "mixed.jsonl:2: field 'answer': missing 'answer' (found: question) (skipped)" in result.stderr
    assert "[[ 6<|endoftext|>]]" in result.stdout


def test_preview_options_need_preview(built, tok):
    result = run(built(tok("gpt2")), "--template", "qa", "--max-length", 9, ok=False)
    assert result.exit_code == 2
    assert "--template, --max-length only work with --preview" in result.output


def test_ids_only_when_the_tokenizer_is_gone(built, tmp_path, tokenizer_path):
    copy = tmp_path / "gpt2"
    shutil.copytree(tokenizer_path("gpt2"), copy)
    out = tmp_path / "out"
    run_build(BuildConfig(inputs=(QA,), output=str(out), tokenizer=str(copy)))
    shutil.rmtree(copy)
    result = run(out, "-n", 1)
    assert result.stderr.count("cannot load tokenizer") == 1 and "showing ids only" in result.stderr
    body = split_rows(result.stdout)[0][1]
    assert "".join(body) == "24361 25 1867 318 262 3139 286 4881 30 23998 25[[ 6342 50256]]"
    table = token_table(run(out, "--tokens", "-n", 1).stdout)
    assert table[0][:3] == ["0", "24361", "#24361"]


def test_a_different_tokenizer_is_flagged(built, tok):
    result = run(built(tok("gpt2")), "--tokenizer", tok("mistral-7b-v0.1"), "-n", 1)
    assert "is not the one this build used" in result.stderr


def test_marker_tokens_saved_in_the_output_are_used(built, tok):
    out = built(tok("gpt2"), "sample_data/summarization.jsonl", markers="special")
    assert (out / "tokenizer.json").is_file()
    table = token_table(run(out, "--tokens", "-n", 1).stdout)
    assert table[0][2] == "<ARTICLE>"
    assert run(out, "-n", 1).stderr == ""


# -- rows from other tools, and columns to come ------------------------------------------------


def _rewrite_shard(out: Path, dest: Path, change) -> Path:
    """A copy of the build's one shard with ``change(table) -> table`` applied, metadata kept."""
    shard = next(out.glob("data-*.arrow"))
    table = pa.ipc.open_stream(str(shard)).read_all()
    new = change(table).replace_schema_metadata(table.schema.metadata)
    path = dest / "data-00000-of-00001.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, new.schema) as writer:
        writer.write_table(new)
    return path


def test_columns_the_view_does_not_know_are_shown(built, tok, tmp_path):
    """Columns another tool adds appear without changes to the view: per token in the table, else in the header."""
    out = built(tok("gpt2"))

    def add(table: pa.Table) -> pa.Table:
        lengths = [len(ids) for ids in table.column("input_ids").to_pylist()]
        table = table.append_column(
            "weight", pa.array([[k % 3 for k in range(n)] for n in lengths], pa.list_(pa.int32()))
        )
        return table.append_column("domain", pa.array(["geo"] * len(lengths)))

    shard = _rewrite_shard(out, tmp_path, add)
    stdout = run(shard, "--tokens", "-i", 0, "--tokenizer", tok("gpt2")).stdout.splitlines()
    assert 'domain="geo"' in stdout[0]
    assert stdout[1].endswith("trained  weight")
    assert [line.split()[-1] for line in stdout[2:]] == [str(k % 3) for k in range(13)]
    obj = json.loads(run(shard, "--format", "json", "-n", 1, "--tokenizer", tok("gpt2")).stdout)
    assert obj["weight"] == [k % 3 for k in range(13)] and obj["domain"] == "geo"


def test_a_label_that_is_not_the_next_token_is_flagged(built, tok, tmp_path):
    out = built(tok("gpt2"))

    def corrupt(table: pa.Table) -> pa.Table:
        targets = table.column("target_ids").to_pylist()
        targets[0][10] = 123
        index = table.schema.get_field_index("target_ids")
        return table.set_column(index, "target_ids", pa.array(targets, pa.list_(pa.int32())))

    shard = _rewrite_shard(out, tmp_path, corrupt)
    stdout = run(shard, "--tokens", "-i", 0, "--tokenizer", tok("gpt2")).stdout
    assert "1 label ≠ next token!" in "".join(stdout.splitlines()[:2])
    assert token_table(stdout)[10][-3:] == ["yes", "(label", "123)"]


def test_not_an_sftprep_build(tmp_path):
    path = tmp_path / "other.arrow"
    table = pa.table({"text": ["a", "b"]})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    result = run(path, ok=False)
    assert result.exit_code == 2
    assert (
        "not sftprep rows: expected input_ids with target_ids, labels or target_id, found text"
        in result.output
    )


# -- errors and usage --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["missing-dir"], 4, "missing-dir: no such file or directory"),
        (["sample_data"], 4, "sample_data: no .arrow shards here (is it the output of sftprep build?)"),
        (["OUT", "-w", "max-length"], 2, "was built without --max-length, so no row can hit it"),
        (["OUT", "--tokens", "--stats"], 2, "--tokens and --stats are different views: choose one"),
        (["OUT", "-a", "--random", "3"], 2, "choose one of --limit, --all and --random"),
        (["OUT", "-i", "x"], 2, "'x' is not a row number or range (e.g. 7, 10-20, 5-)"),
        (["OUT", "-i", "5-3"], 2, "the range '5-3' is empty"),
        (["OUT", "--unpack"], 2, "--unpack: OUT is not packed (its rows have no seq_lengths)"),
        (["OUT", "--unpack", "--stats"], 2, "--unpack shows rows and --stats counts them"),
    ],
)
def test_errors(built, tok, args, code, message):
    out = built(tok("gpt2"))
    result = run(*[str(out) if a == "OUT" else a for a in args], ok=False)
    assert result.exit_code == code, result.output
    assert message.replace("OUT", str(out)) in result.output


def test_a_damaged_shard(built, tok, tmp_path):
    shard = next(built(tok("gpt2"), shard_size=3000).glob("data-*.arrow"))
    cut = tmp_path / "cut.arrow"
    cut.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    result = run(cut, "-a", "--tokenizer", tok("gpt2"), ok=False)
    assert result.exit_code == 4
    assert f"{cut}: damaged shard: " in result.output


def test_registered_with_help_and_examples():
    result = CliRunner().invoke(cli, ["inspect", "--help"])
    assert result.exit_code == 0
    assert "sftprep inspect out/ --tokens -i 7" in result.output
    assert "--preview" in result.output and "--where" in result.output


# -- pipes and long rows ------------------------------------------------------------------


@pytest.mark.parametrize("options", [["--tokens"], [], ["--format", "json"], ["--color", "always"]])
def test_a_closed_pipe_ends_quietly(built, tok, data_path, options):
    out = built(tok("gpt2"), data_path("summarization", "dialogsum.dev.jsonl"))
    command = f"set -o pipefail; {sys.executable} -m sftprep inspect {out} -a {' '.join(options)} | head -3"
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode in (0, 141), proc.stderr
    assert len(proc.stdout.splitlines()) == 3
    assert proc.stderr == ""


def test_a_reader_that_stops_after_one_line(built, tok, data_path):
    out = built(tok("gpt2"), data_path("summarization", "dialogsum.dev.jsonl"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sftprep", "inspect", str(out), "-a", "--tokens"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout.readline().startswith(b"\xe2\x94\x80\xe2\x94\x80 row 0")
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""


def test_an_8k_token_row_stays_within_80_columns(tmp_path, tok):
    text = (ROOT / "sample_data" / "summarization.jsonl").read_text()
    articles = [json.loads(line)["article"] for line in text.splitlines()]
    record = {"article": "\n\n".join(articles * 3), "summary": "\t".join(articles[:4])}
    data = tmp_path / "long.jsonl"
    data.write_text(json.dumps(record) + "\n")
    out = tmp_path / "out"
    run_build(BuildConfig(inputs=(str(data),), output=str(out), tokenizer=tok("gpt2")))
    n = len(rows_of(out)[0]["input_ids"])
    assert n > 8000
    text_lines = run(out).stdout.splitlines()
    assert all(cell_len(line) <= 80 for line in text_lines)
    assert sum("[[" in line for line in text_lines) == 1
    tokens = run(out, "--tokens").stdout
    assert len(token_table(tokens)) == n and all(cell_len(line) <= 80 for line in tokens.splitlines())


# -- golden files ------------------------------------------------------------------------

PACKED_40 = {"max_length": 40, "pack": True, "pad_to": "max-length"}
CHAT = ("chat", "dummy_conversation.json")
GOLDEN_CASES = {
    "qa-gpt2.txt": ("gpt2", QA, {}, ["-n", "3"]),
    "qa-gpt2-tokens.txt": ("gpt2", QA, {}, ["--tokens", "-i", "0"]),
    "qa-mistral-tokens.txt": ("mistral-7b-v0.1", QA, {}, ["--tokens", "-i", "1"]),
    "qa-gpt2-exploded.txt": ("gpt2", QA, {"mode": "exploded"}, ["-n", "2"]),
    "qa-gpt2-stats.txt": ("gpt2", QA, {}, ["--stats"]),
    "summarization-phi3-truncated.txt": (
        "phi-3-mini",
        "sample_data/summarization.jsonl",
        {"max_length": 96},
        ["-w", "truncated", "-n", "2"],
    ),
    "translation-phi3.txt": ("phi-3-mini", "sample_data/translation.jsonl", {}, ["-i", "0-2"]),
    "qa-gpt2-packed.txt": ("gpt2", QA, PACKED_40, ["-i", "1-2"]),
    "qa-gpt2-packed-tokens.txt": ("gpt2", QA, PACKED_40, ["--tokens", "-i", "1"]),
    "qa-gpt2-packed-unpack.txt": ("gpt2", QA, PACKED_40, ["--unpack", "-i", "1"]),
    "qa-gpt2-packed-stats.txt": ("gpt2", QA, PACKED_40, ["--stats"]),
    "chat-phi3.txt": ("phi-3-mini", CHAT, {}, ["-i", "0-1"]),
    "chat-smollm-chatml.txt": ("smollm-135m", CHAT, {"chat_template": "chatml"}, ["-i", "0"]),
    "chat-smollm-chatml-tokens.txt": (
        "smollm-135m",
        CHAT,
        {"chat_template": "chatml"},
        ["--tokens", "-i", "1"],
    ),
    "translation-phi3-tokens.txt": (
        "phi-3-mini",
        "sample_data/translation.jsonl",
        {},
        ["--tokens", "-i", "2"],
    ),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_golden_views(built, tok, data_path, name, monkeypatch):
    tokenizer, data, options, args = GOLDEN_CASES[name]
    if isinstance(data, tuple):  # a file in ../shared/data, named as from the checkout
        data = os.path.relpath(data_path(*data), ROOT)
    out = built(tok(tokenizer), data, **options)
    if "--stats" in args:  # its title is the output's path: name it the same on every machine
        monkeypatch.chdir(out.parent)
        out = Path(out.name)
    stdout = run(out, *args).stdout
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.write_text(stdout, encoding="utf-8")
    assert stdout == path.read_text(encoding="utf-8"), (
        f"the view changed: SFTPREP_UPDATE_GOLDEN=1 rewrites {path}"
    )


def test_docs_show_the_current_output():
    """docs/inspect.md's examples are the golden outputs, verbatim."""
    section = (ROOT / "docs" / "inspect.md").read_text(encoding="utf-8")
    for name in ("qa-gpt2.txt", "qa-gpt2-tokens.txt", "qa-gpt2-packed.txt", "chat-phi3.txt"):
        assert (GOLDEN / name).read_text(encoding="utf-8") in section, name


# -- the pieces ---------------------------------------------------------------------------


def test_parse_index_and_source():
    assert view.parse_index("7") == [(7, 8)]
    assert view.parse_index("10-12, 20") == [(10, 13), (20, 21)]
    assert view.parse_index("5-")[0][0] == 5
    assert view.parse_source("qa.jsonl:17") == ("qa.jsonl", (17, 17))
    assert view.parse_source("data/qa.jsonl:3-9") == ("data/qa.jsonl", (3, 9))
    assert view.parse_source("qa.jsonl") == ("qa.jsonl", None)
    assert view.parse_source(":4") == (None, (4, 4))


def test_visible_and_escaped_pieces():
    assert view.visible("a\tb\n") == [("a", False), ("⇥", True), ("b", False), ("↵", True), ("\n", False)]
    assert shown("x\u00a0y\u200bz\r\x1b") == "x\\u00a0y\\u200bz␍\\x1b"
    assert view.escape_piece("Ġworld") == "Ġworld"
    assert view.escape_piece("▁the") == "▁the"
    assert view.escape_piece("<0x0A>") == "<0x0A>"
    assert view.escape_piece("<|end|>\n") == "<|end|>\\n"
    assert view.escape_piece("a b") == "a␣b"


def test_histogram():
    assert view.histogram(np.array([3, 5, 12, 18]), bins=4) == [
        (0, 4, 1),
        (5, 9, 1),
        (10, 14, 1),
        (15, 19, 1),
    ]
    assert view.histogram(np.array([7])) == [(7, 7, 1)]
    bins = view.histogram(np.arange(1000, 9000))
    assert len(bins) <= 11 and sum(c for _, _, c in bins) == 8000


@given(
    st.text(alphabet=st.sampled_from("ab 世\u00a0\n"), max_size=300), st.integers(min_value=4, max_value=90)
)
def test_wrap_keeps_every_character(text, width):
    """Folded lines rejoin to the text exactly (newlines aside) and none is wider than the width."""
    lines = view.wrap(Text(text), width)
    assert "".join(line.plain for line in lines) == text.replace("\n", "")
    assert all(line.cell_len <= width for line in lines)
