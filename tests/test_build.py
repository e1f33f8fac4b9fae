"""End-to-end builds: files in, shards out, loaded with datasets, labels checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from datasets import load_from_disk

from sftprep import BuildConfig, run_build
from sftprep.templates import bind_template, load_template
from sftprep.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_data"


def build(tmp_path: Path, *inputs: str, name: str = "out", **options):
    config = BuildConfig(inputs=tuple(inputs), output=str(tmp_path / name), **options)
    return run_build(config)


def test_sample_build_with_defaults(tmp_path):
    result = build(tmp_path, str(SAMPLES / "qa.jsonl"))
    ds = load_from_disk(str(result.output))
    assert ds.column_names[:3] == ["input_ids", "target_ids", "loss_mask"]
    manifest = json.loads((result.output / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["records_read"] == len(ds) == counts["rows_written"] == 42
    assert manifest["template"]["name"] == "qa"
    assert manifest["tokenizer"]["name"] == "default"
    assert counts["trained_tokens"] == sum(sum(m) for m in ds["loss_mask"])
    assert counts["tokens"] == sum(len(r) for r in ds["input_ids"])
    shard = result.output / manifest["shards"][0]["filename"]
    with pa.ipc.open_stream(shard) as reader:
        meta = json.loads(reader.schema.metadata[b"sftprep"])
    assert meta["labels"] == "shifted" and meta["ignore_index"] == -100


@pytest.mark.parametrize("name", ["qa.csv", "summarization.jsonl", "summarization.csv", "translation.jsonl"])
def test_other_samples_build(tmp_path, name):
    options = {}
    if name == "summarization.csv":
        options = {"template": "summarization"}
    result = build(tmp_path, str(SAMPLES / name), **options)
    assert len(load_from_disk(str(result.output))) == result.manifest["counts"]["records_read"] > 20


def test_translation_csv_with_field_mapping(tmp_path):
    result = build(
        tmp_path, str(SAMPLES / "translation.csv"), template="translation",
        fields={"source": "de", "target": "en"},
    )  # fmt: skip
    assert result.manifest["template"]["values"] == {"source_lang": "German", "target_lang": "English"}


def _bigram_logprobs(vocab: int, seed: int = 0):
    """A tiny causal LM: logits at a position depend on the current token only."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(vocab, 8)).astype(np.float32)
    out = rng.normal(size=(8, vocab)).astype(np.float32)

    def logprobs(tokens: np.ndarray) -> np.ndarray:
        logits = emb[tokens] @ out
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    return logprobs


@pytest.mark.parametrize("tokenizer", [None, "mistral-7b-v0.1"])
def test_one_loss_three_conventions(tmp_path, tokenizer, tokenizer_path):
    """Mean loss from shifted rows, from hf rows (shifted as the model does), and from exploded rows agree."""
    tok = tokenizer_path(tokenizer) if tokenizer else None
    data = str(SAMPLES / "qa.jsonl")
    seq = load_from_disk(str(build(tmp_path, data, name="s", tokenizer=tok).output))
    hf = load_from_disk(str(build(tmp_path, data, name="h", tokenizer=tok, labels="hf").output))
    exp = load_from_disk(str(build(tmp_path, data, name="e", tokenizer=tok, mode="exploded").output))
    logprobs = _bigram_logprobs(load_tokenizer(tok).vocab_size)

    def nll(ids, targets):
        lp = logprobs(np.asarray(ids))
        keep = np.asarray(targets) != -100
        return -lp[np.flatnonzero(keep), np.asarray(targets)[keep]]

    a = np.concatenate([nll(r["input_ids"], r["target_ids"]) for r in seq])
    b = np.concatenate([nll(r["input_ids"][:-1], r["labels"][1:]) for r in hf])
    c = np.array([-logprobs(np.asarray(r["input_ids"][-1:]))[0, r["target_id"]] for r in exp])
    assert len(a) == len(b) == len(c) == sum(seq["num_trained_tokens"])
    assert a.mean() == pytest.approx(b.mean(), rel=1e-6) == pytest.approx(c.mean(), rel=1e-6)


@pytest.mark.parametrize(
    ("parts", "template", "fields"),
    [
        (("qa", "NQ-open.dev.jsonl"), "qa", {"answer": "answer.0"}),
        (("qa", "simple_qa_test_set.csv"), None, {}),
        (("summarization", "dialogsum.dev.jsonl"), None, {}),
        (("translation", "alma_valid.de-en.json"), None, {}),
        (("instruction", "alpaca_5000.json"), None, {}),
    ],
    ids=lambda v: v[-1] if isinstance(v, tuple) else str(v),
)
@pytest.mark.parametrize("tokenizer", ["gpt2", "mistral-7b-v0.1"])
def test_real_data_trained_span_is_target_plus_eos(tmp_path, parts, template, fields, tokenizer,
                                                   data_path, tokenizer_path):  # fmt: skip
    """Every row: the trained tokens decode to the record's target text, then EOS."""
    path = data_path(*parts)
    result = build(tmp_path, path, template=template, tokenizer=tokenizer_path(tokenizer), fields=fields,
                   on_error="skip")  # fmt: skip
    ds = load_from_disk(str(result.output))
    info = load_tokenizer(tokenizer_path(tokenizer))
    records = _records_by_line(path)
    manifest = result.manifest
    renderer = bind_template(load_template(manifest["template"]["name"]), fields,
                             first_record=records[min(records)])  # fmt: skip
    assert len(ds) + manifest["counts"]["skipped_total"] == manifest["counts"]["records_read"]
    for row in ds:
        _, target = renderer.render(records[row["source_line"]], "x")
        trained = [t for t in row["target_ids"] if t != -100]
        assert trained[-1] == info.eos_id
        text = info.tokenizer.decode(trained[:-1], skip_special_tokens=False)
        assert text.strip() == target.strip(), row["source_line"]
        assert row["num_trained_tokens"] == len(trained)


def _records_by_line(path: str) -> dict[int, dict]:
    from sftprep.readers import InputFile

    return {r.number: r.data for r in InputFile(path).records() if r.data is not None}


def test_same_input_same_bytes(tmp_path, tokenizer_path):
    a = build(
        tmp_path, str(SAMPLES / "qa.jsonl"), name="a", tokenizer=tokenizer_path("gpt2"), shard_size=2000
    )
    b = build(
        tmp_path, str(SAMPLES / "qa.jsonl"), name="b", tokenizer=tokenizer_path("gpt2"), shard_size=2000
    )
    files = sorted(p.name for p in a.output.iterdir())
    assert len(a.manifest["shards"]) > 1
    assert files == sorted(p.name for p in b.output.iterdir())
    for name in files:
        assert (a.output / name).read_bytes() == (b.output / name).read_bytes(), name


def test_packed_build_efficiency_on_alpaca(tmp_path, data_path, tokenizer_path):
    """Issue 7's acceptance figure, through the build: alpaca_5000, gpt2, L=2048."""
    result = build(
        tmp_path, data_path("instruction", "alpaca_5000.json"), tokenizer=tokenizer_path("gpt2"),
        max_length=2048, pack=True, on_error="skip",
    )  # fmt: skip
    packing = result.manifest["packing"]
    assert packing["efficiency"] >= 0.98
    ds = load_from_disk(str(result.output))
    assert len(ds) == packing["rows"] == result.manifest["counts"]["rows_written"]
    assert sum(len(r) for r in ds["seq_lengths"]) == result.manifest["counts"]["examples_written"] == 4998
    assert all(len(ids) <= 2048 for ids in ds["input_ids"])


@pytest.mark.parametrize("labels", ["shifted", "hf"])
def test_padded_rows(tmp_path, labels):
    result = build(tmp_path, str(SAMPLES / "qa.jsonl"), max_length=64, pad_to="max-length", labels=labels)
    ds = load_from_disk(str(result.output))
    assert {len(r) for r in ds["input_ids"]} == {64}
    label_column = "labels" if labels == "hf" else "target_ids"
    for row in ds:
        real = sum(row["attention_mask"])
        assert all(t == -100 for t in row[label_column][real:])
    assert result.manifest["padding"]["pad_id"] == 0
    assert result.manifest["counts"]["tokens"] == sum(sum(m) for m in ds["attention_mask"])


def test_exploded_budget_refuses_before_writing(tmp_path, data_path, tokenizer_path):
    from sftprep.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"exploded mode would write about [\d,]+ rows and .* Use --mode sequence"
    ):
        build(
            tmp_path, data_path("instruction", "alpaca_5000.json"), tokenizer=tokenizer_path("gpt2"),
            mode="exploded", exploded_budget=10 * 2**20, on_error="skip",
        )  # fmt: skip
    assert not list(tmp_path.iterdir())


def test_stdin_is_read_as_a_stream():
    """The first record comes out while stdin is still open: nothing waits for all of it."""
    import os
    import threading
    import time

    from sftprep.readers import InputFile

    read_fd, write_fd = os.pipe()
    writer = os.fdopen(write_fd, "wb")
    writer.write(b'{"question": "a", "answer": "b"}\n')
    writer.flush()
    release = threading.Event()

    def finish_later():
        release.wait(30)
        writer.write(b'{"question": "c", "answer": "d"}\n')
        writer.close()

    threading.Thread(target=finish_later, daemon=True).start()
    with os.fdopen(read_fd, "rb", buffering=0) as stdin:
        start = time.monotonic()
        records = InputFile("-", stdin=stdin).records()
        assert next(records).data == {"question": "a", "answer": "b"}
        assert time.monotonic() - start < 20, "waited for the writer to finish"
        release.set()
        assert [r.data["question"] for r in records] == ["c"]


@pytest.mark.parametrize(
    ("parts", "tokenizer", "options", "written", "skipped"),
    [
        (("chat", "dummy_conversation.json"), "phi-3-mini", {}, 500, {}),
        (("chat", "glaive_toolcall_en_demo.json"), "smollm-135m", {"chat_template": "chatml"}, 109,
         {"tools_not_rendered": 191}),
        (("chat", "glaive_toolcall_en_demo.json"), "smollm-135m",
         {"chat_template": "chatml", "fields": {"tools": ""}}, 147, {"tools_not_rendered": 153}),  # tool_calls
        (("chat", "multichallenge_benchmark_questions.jsonl"), "mistral-7b-v0.1",
         {"chat_template": "mistral-inst", "fields": {"messages": "CONVERSATION"}, "train_on": "all"}, 273, {}),
        # Its one record is rejected: an empty build only because --max-errors allows it (issue 16).
        (("chat", "axolotl_conversation.missingturns.json"), "gpt2", {"chat_template": "chatml", "max_errors": "100%"},
         0, {"empty_assistant_turn": 1}),
    ],
    ids=["phi3-own", "glaive-tools", "glaive-no-tools", "multichallenge", "missing-turn"],
)  # fmt: skip
def test_chat_builds(tmp_path, parts, tokenizer, options, written, skipped, data_path, tokenizer_path):
    result = build(
        tmp_path, data_path(*parts), tokenizer=tokenizer_path(tokenizer), on_error="skip", **options
    )
    counts = result.manifest["counts"]
    assert counts["rows_written"] == written
    assert counts["skipped"] == skipped
    assert result.manifest["template"]["kind"] == "chat"
    ds = load_from_disk(str(result.output))
    assert all(n > 0 for n in ds["num_trained_tokens"])


def test_chat_first_turn_header_never_trained(tmp_path, data_path, tokenizer_path):
    """phi-3: <|assistant|> headers untrained, <|end|> after each answer trained, the closing EOS trained."""
    result = build(
        tmp_path, data_path("chat", "dummy_conversation.json"), tokenizer=tokenizer_path("phi-3-mini")
    )
    info = load_tokenizer(tokenizer_path("phi-3-mini"))
    assistant, end = info.tokenizer.token_to_id("<|assistant|>"), info.tokenizer.token_to_id("<|end|>")
    for row in load_from_disk(str(result.output)).select(range(50)):
        ids, targets = row["input_ids"], row["target_ids"]
        trained = {ids[t + 1] for t in range(len(ids) - 1) if targets[t] != -100}
        assert assistant not in trained and end in trained and info.eos_id in trained


def test_exploded_estimate_is_per_slice_and_first_batch_is_transformed_once(tmp_path, monkeypatch):
    from sftprep.engines.stream import Located

    seen: list[int] = []
    call = Located.__call__
    monkeypatch.setattr(
        Located, "__call__", lambda self, records: seen.append(len(records)) or call(self, records)
    )
    notes: dict[int, str] = {}
    for n in (1, 2):
        logs: list[str] = []
        seen.clear()
        config = BuildConfig(inputs=(str(SAMPLES / "qa.jsonl"),), output=str(tmp_path / f"out{n}"), mode="exploded",
                             batch_size=10, workers=1, num_shards=n, shard_index=0)  # fmt: skip
        result = run_build(config, log=logs.append)
        notes[n] = next(line for line in logs if line.startswith("exploded mode: about"))
        # qa.jsonl's 42 records are 5 batches of 10, 3 of them in slice 0 of 2: each transformed once.
        assert sorted(seen) == ([2, 10, 10, 10, 10] if n == 1 else [2, 10, 10])
        assert result.manifest["counts"]["records_read"] == sum(seen)
    rows = {n: int(notes[n].split()[3].replace(",", "")) for n in notes}
    assert rows[2] == pytest.approx(rows[1] / 2, rel=0.01)


def test_workers_default_is_the_clis(tmp_path):
    """One default for --workers: a library BuildConfig uses the cores the CLI would (issue 16, item 12)."""
    import click

    from sftprep.cli import cli
    from sftprep.config import default_workers

    assert BuildConfig(inputs=("d.jsonl",), output=str(tmp_path)).workers == default_workers()
    build_command = cli.commands["build"]
    option = next(p for p in build_command.params if p.name == "workers")
    assert option.get_default(click.Context(build_command)) == default_workers()
