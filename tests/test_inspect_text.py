"""``sftprep inspect``: rows as text with the trained span marked, token tables, JSON, pipes."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import subprocess
import sys

import numpy as np
import pytest
from inspect_support import (
    QA,
    REAL_TOKENIZERS,
    ROOT,
    load_tok,
    rows_of,
    run,
    shown,
    split_rows,
    token_table,
    trained_tokens,
)
from rich.cells import cell_len

from sftprep import view
from sftprep.build import BuildConfig, run_build

pytestmark = pytest.mark.usefixtures("repo_root")


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
