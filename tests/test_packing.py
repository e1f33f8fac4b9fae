"""Packing: exact (unpacking gives the unpacked rows back), isolated (same losses), efficient; padding."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
import pytest
from datasets import load_from_disk
from hypothesis import given, settings
from hypothesis import strategies as st

from sftprep.encode import EncodedBatch, EncodeOptions, Encoder
from sftprep.labels import IGNORE_INDEX, schema_for, sequence_batch
from sftprep.packing import (
    Packer,
    best_fit_decreasing,
    block_causal_mask,
    packed_schema_for,
    packing_problems,
    pad_batch,
    pad_id_for,
    padded_lengths,
    padded_schema,
    segment_ids,
    unpack_row,
)
from sftprep.readers import InputFile
from sftprep.templates import bind_template, load_template
from sftprep.tokenizer import load_tokenizer
from sftprep.writer import ShardWriter, with_metadata

# --- helpers -------------------------------------------------------------------------------


def encoded(examples: list[dict]) -> EncodedBatch:
    """An EncodedBatch from dicts with ids, prompt_len and optionally trained flags (chat rows)."""
    offsets = np.zeros(len(examples) + 1, dtype=np.int64)
    np.cumsum([len(e["ids"]) for e in examples], out=offsets[1:])
    chat = bool(examples) and "trained" in examples[0]
    return EncodedBatch(
        ids=np.array([t for e in examples for t in e["ids"]], dtype=np.int32),
        offsets=offsets,
        prompt_lens=np.array([e["prompt_len"] for e in examples], dtype=np.int64),
        index=np.arange(len(examples)),
        truncated=np.array([e.get("truncated", False) for e in examples], dtype=bool),
        boundary_adjusted=np.array([e.get("adjusted", False) for e in examples], dtype=bool),
        trained=np.array([f for e in examples for f in e["trained"]], dtype=bool) if chat else None,
    )


def meta(examples: list[dict]) -> tuple[list[str], np.ndarray]:
    return [e["source"] for e in examples], np.array([e["line"] for e in examples], dtype=np.int64)


def unpacked_rows(batches: list[list[dict]], labels: str) -> list[dict]:
    """What an unpacked build writes for the same examples."""
    rows = []
    for examples in batches:
        batch = sequence_batch(encoded(examples), *meta(examples), labels, schema_for("sequence", labels))
        rows += batch.to_pylist()
    return rows


def pack(
    batches: list[list[dict]], max_length: int, labels: str, buffer: int, from_rows: bool = False
) -> tuple[list[dict], Packer]:
    """Packed rows, from EncodedBatches (as the encoder gives them) or from the unpacked Arrow rows."""
    packer = Packer(max_length, labels, buffer_examples=buffer)
    out = []
    for examples in batches:
        if from_rows:
            rows = sequence_batch(encoded(examples), *meta(examples), labels, schema_for("sequence", labels))
            out += packer.add_rows(rows)
        else:
            out += packer.add(encoded(examples), *meta(examples))
    out += packer.flush()
    for batch in out:
        assert batch.schema == packed_schema_for(labels)
    return [row for batch in out for row in batch.to_pylist()], packer


def multiset(rows: list[dict]) -> Counter[str]:
    return Counter(json.dumps(r, sort_keys=True) for r in rows)


def example_strategy(chat: bool):
    def build(ids, data):
        example = {"ids": ids, "prompt_len": data.draw(st.integers(0, len(ids)))}
        if chat:
            example["trained"] = data.draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids)))
        example["truncated"] = data.draw(st.booleans())
        example["adjusted"] = data.draw(st.booleans())
        return example

    return st.tuples(st.lists(st.integers(0, 999), min_size=1, max_size=24), st.data()).map(
        lambda a: build(*a)
    )


@st.composite
def datasets_(draw):
    """Examples (with unique lines) split into batches at random points."""
    chat = draw(st.booleans())
    examples = draw(st.lists(example_strategy(chat), min_size=1, max_size=40))
    for k, e in enumerate(examples):
        e["source"], e["line"] = ("a.jsonl" if k % 3 else "b.jsonl"), k + 1
    cuts = sorted(draw(st.sets(st.integers(1, len(examples)), max_size=5)) | {0, len(examples)})
    return [examples[a:b] for a, b in itertools.pairwise(cuts) if b > a]


# --- best-fit decreasing ---------------------------------------------------------------------


def test_best_fit_decreasing_docstring_example():
    assert best_fit_decreasing([5, 3, 4, 2, 6], 8) == [[3, 4], [0, 1], [2]]


def _reference_bfd(lengths: list[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing the slow, obvious way."""
    bins: list[list[int]] = []
    fill: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        fits = [b for b in range(len(bins)) if fill[b] + lengths[i] <= capacity]
        if fits:
            b = min(fits, key=lambda b: (capacity - fill[b], b))
        else:
            b = len(bins)
            bins.append([])
            fill.append(0)
        bins[b].append(i)
        fill[b] += lengths[i]
    return [sorted(b) for b in bins]


@given(st.integers(1, 50).flatmap(lambda c: st.tuples(st.just(c), st.lists(st.integers(1, c), max_size=60))))
def test_best_fit_decreasing_matches_the_obvious_algorithm(case):
    capacity, lengths = case
    bins = best_fit_decreasing(lengths, capacity)
    assert bins == _reference_bfd(lengths, capacity)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= capacity for b in bins)


# --- exactness ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(datasets_(), st.sampled_from(["shifted", "hf"]), st.integers(0, 40), st.integers(1, 12))
def test_unpacking_gives_back_the_unpacked_rows(batches, labels, extra, buffer):
    """The issue's property: unpack every row by seq_lengths -> the multiset of unpacked rows, labels and all."""
    longest = max(len(e["ids"]) for b in batches for e in b)
    max_length = longest + extra
    packed, packer = pack(batches, max_length, labels, buffer)
    expected = unpacked_rows(batches, labels)
    got = [example for row in packed for example in unpack_row(row)]
    assert multiset(got) == multiset(expected)
    for row in packed:
        n = len(row["input_ids"])
        assert n <= max_length and n == sum(row["seq_lengths"])
        assert row["position_ids"] == [p for k in row["seq_lengths"] for p in range(k)]
        assert row["num_trained_tokens"] == sum(e["num_trained_tokens"] for e in unpack_row(row))
    stats = packer.stats
    assert stats.examples == len(expected) and stats.rows == len(packed)
    assert stats.tokens == sum(len(r["input_ids"]) for r in expected)
    assert stats.trained_tokens == sum(r["num_trained_tokens"] for r in expected)
    assert sum(stats.examples_per_row.values()) == len(packed)
    # The batch split never changes the rows, nor does packing the unpacked Arrow rows instead.
    assert pack([[e for b in batches for e in b]], max_length, labels, buffer)[0] == packed
    assert pack(batches, max_length, labels, buffer, from_rows=True)[0] == packed


def test_labels_stop_at_example_boundaries():
    # Example a = [5, 6, 7], prompt 1; example b = [8, 9], prompt 0 (its first token is not trainable).
    a = {"ids": [5, 6, 7], "prompt_len": 1, "source": "f", "line": 1}
    b = {"ids": [8, 9], "prompt_len": 0, "source": "f", "line": 2}
    (shifted,), _ = pack([[a, b]], 8, "shifted", 4)
    assert shifted["input_ids"] == [5, 6, 7, 8, 9]
    # Position 2 (a's last) must not predict 8, b's first token.
    assert shifted["target_ids"] == [6, 7, -100, 9, -100]
    assert shifted["loss_mask"] == [1, 1, 0, 1, 0]
    assert shifted["position_ids"] == [0, 1, 2, 0, 1] and shifted["seq_lengths"] == [3, 2]
    (hf,), _ = pack([[a, b]], 8, "hf", 4)
    # b's first token is -100: the model's own shift would make a's last position predict it.
    assert hf["labels"] == [-100, 6, 7, -100, 9]
    assert "attention_mask" not in hf
    assert hf["num_trained_tokens"] == shifted["num_trained_tokens"] == 3


def test_chat_rows_keep_every_trained_span():
    # Two conversations whose first token is flagged trained: the flag is dropped at each start.
    a = {"ids": [1, 2, 3, 4], "prompt_len": 0, "trained": [True, False, True, True], "source": "c", "line": 1}
    b = {"ids": [5, 6, 7], "prompt_len": 0, "trained": [True, True, False], "source": "c", "line": 2}
    (row,), _ = pack([[a, b]], 10, "shifted", 8)
    assert row["target_ids"] == [-100, 3, 4, -100, 6, -100, -100]
    assert unpack_row(row) == unpacked_rows([[a, b]], "shifted")


def test_rows_are_deterministic_and_in_input_order():
    lengths = [5, 7, 2, 9, 3, 3, 6, 1, 8, 4]
    examples = [{"ids": [k] * n, "prompt_len": 0, "source": "f", "line": k} for k, n in enumerate(lengths)]
    first, _ = pack([examples], 10, "shifted", 4)
    again, _ = pack([examples[:3], examples[3:]], 10, "shifted", 4)
    assert first == again
    for row in first:
        assert row["source_line"] == sorted(row["source_line"])
    # One round (the buffer holds everything): rows in the order of their earliest example.
    whole, _ = pack([examples], 10, "shifted", 100)
    earliest = [row["source_line"][0] for row in whole]
    assert earliest == sorted(earliest)


def test_too_long_example_is_refused():
    examples = [
        {"ids": [1, 2], "prompt_len": 1, "source": "data.jsonl", "line": 6},
        {"ids": list(range(9)), "prompt_len": 2, "source": "data.jsonl", "line": 7},
    ]
    message = (
        r"data.jsonl:7: an example of 9 tokens cannot be packed into rows of 8; encode with max_length=8"
    )
    with pytest.raises(ValueError, match=message):
        Packer(8, "shifted").add(encoded(examples), *meta(examples))
    rows = sequence_batch(encoded(examples), *meta(examples), "hf", schema_for("sequence", "hf"))
    with pytest.raises(ValueError, match=message):
        Packer(8, "hf").add_rows(rows)


def test_add_rows_accepts_a_slice():
    examples = [{"ids": [k + 1] * (k + 2), "prompt_len": 1, "source": "f", "line": k} for k in range(5)]
    rows = sequence_batch(encoded(examples), *meta(examples), "shifted", schema_for("sequence", "shifted"))
    packer = Packer(64, "shifted")
    (batch,) = packer.add_rows(rows.slice(2, 2)) + packer.flush()
    assert unpack_row(batch.to_pylist()[0]) == rows.slice(2, 2).to_pylist()


def test_stats_report_efficiency_and_examples_per_row():
    examples = [
        {"ids": [1] * n, "prompt_len": 0, "source": "f", "line": k} for k, n in enumerate([6, 4, 5, 5, 3])
    ]
    rows, packer = pack([examples], 10, "hf", 100)
    assert [r["seq_lengths"] for r in rows] == [[6, 4], [5, 5], [3]]
    report = packer.stats.as_dict()
    assert report["efficiency"] == pytest.approx(23 / 30, abs=1e-6)
    assert report["rows"] == 3 and report["examples"] == 5 and report["tokens"] == 23
    assert report["examples_per_row"] == {"mean": 1.667, "min": 1, "max": 2, "histogram": {"1": 1, "2": 2}}
    assert report["buffer_examples"] == 100 and "best-fit decreasing" in report["strategy"]


def test_empty_input_gives_no_rows():
    packer = Packer(16, "shifted")
    assert packer.add(encoded([]), [], np.zeros(0, dtype=np.int64)) == []
    assert packer.flush() == []
    assert packer.stats.efficiency == 0.0


# --- a causal model sees the same examples packed and unpacked -------------------------------


class TinyAttention:
    """One causal self-attention layer with random weights and learned positions, in numpy."""

    def __init__(self, vocab: int, max_position: int, d: int = 16, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.emb = rng.normal(size=(vocab, d))
        self.pos = rng.normal(size=(max_position, d))
        self.wq, self.wk, self.wv = (rng.normal(size=(d, d)) / np.sqrt(d) for _ in range(3))
        self.out = rng.normal(size=(d, vocab))

    def logprobs(self, ids, positions, mask) -> np.ndarray:
        x = self.emb[np.asarray(ids)] + self.pos[np.asarray(positions)]
        scores = (x @ self.wq) @ (x @ self.wk).T / np.sqrt(x.shape[1])
        scores = np.where(mask, scores, -np.inf)
        weights = np.exp(scores - scores.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        logits = (x + weights @ (x @ self.wv)) @ self.out
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def per_example_losses(
    model, rows: list[dict], labels: str, packed: bool, block: bool = True
) -> dict[int, float]:
    """Summed NLL per example (keyed by source_line), computed the way a trainer would."""
    losses: dict[int, float] = Counter()
    for row in rows:
        n = len(row["input_ids"])
        if packed:
            positions = row["position_ids"] if block else np.arange(n)
            mask = block_causal_mask(row["seq_lengths"], n) if block else np.tri(n, dtype=bool)
            owner = np.asarray(row["source_line"] + [-1])[segment_ids(row["seq_lengths"], n)]
        else:
            positions, mask, owner = np.arange(n), np.tri(n, dtype=bool), np.full(n, row["source_line"])
        lp = model.logprobs(row["input_ids"], positions, mask)
        if labels == "shifted":
            pairs = [(t, y) for t, y in enumerate(row["target_ids"])]
        else:  # a Hugging Face model: logits[t] predict labels[t + 1], across the whole row
            pairs = [(t, y) for t, y in enumerate(row["labels"][1:])]
        for t, y in pairs:
            if y != IGNORE_INDEX:
                losses[int(owner[t])] -= lp[t, y]
    return dict(losses)


def _random_examples(n: int, vocab: int, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    examples = []
    for k in range(n):
        length = int(rng.integers(2, 20))
        ids = rng.integers(0, vocab, size=length).tolist()
        examples.append(
            {"ids": ids, "prompt_len": int(rng.integers(0, length)), "source": "f", "line": k + 1}
        )
    return examples


@pytest.mark.parametrize("labels", ["shifted", "hf"])
@pytest.mark.parametrize("padding", [None, {"length": 64}, {"multiple_of": 8}])
def test_same_losses_packed_and_unpacked(labels, padding):
    """A block-diagonal mask from seq_lengths + restarting positions: per-example losses are unchanged."""
    vocab, max_length = 40, 64
    examples = _random_examples(60, vocab)
    model = TinyAttention(vocab, max_position=max_length)
    unpacked = unpacked_rows([examples], labels)
    packer = Packer(max_length, labels, buffer_examples=16)
    batches = packer.add(encoded(examples), *meta(examples)) + packer.flush()
    if padding:
        batches = [pad_batch(b, pad_id=0, **padding) for b in batches]
    packed = [row for b in batches for row in b.to_pylist()]
    assert max(len(r["seq_lengths"]) for r in packed) > 2
    reference = per_example_losses(model, unpacked, labels, packed=False)
    got = per_example_losses(model, packed, labels, packed=True)
    assert set(got) == set(reference)
    for line, loss in reference.items():
        assert got[line] == pytest.approx(loss, rel=1e-9, abs=1e-9), line
    # The control: one causal mask over the whole row lets examples see each other.
    leaky = per_example_losses(model, packed, labels, packed=True, block=False)
    assert any(abs(leaky[line] - reference[line]) > 1e-6 for line in reference)


# --- padding --------------------------------------------------------------------------------


def test_padded_lengths_docstring_example():
    assert padded_lengths(np.array([3, 9]), multiple_of=4).tolist() == [4, 12]
    assert padded_lengths(np.array([3, 8]), length=8).tolist() == [8, 8]
    assert padded_lengths(np.array([3, 8]), length=10, multiple_of=4).tolist() == [12, 12]
    with pytest.raises(ValueError, match="a row of 9 tokens cannot be padded to 8"):
        padded_lengths(np.array([3, 9]), length=8)


def test_pad_shifted_sequence_rows_adds_an_attention_mask():
    examples = [
        {"ids": [5, 6, 7], "prompt_len": 1, "source": "f", "line": 1},
        {"ids": [8, 9], "prompt_len": 1, "source": "f", "line": 2},
    ]
    schema = schema_for("sequence", "shifted")
    batch = sequence_batch(encoded(examples), *meta(examples), "shifted", schema)
    padded = pad_batch(batch, pad_id=0, length=4)
    assert padded.schema == padded_schema(schema)
    assert padded.schema.names[:4] == ["input_ids", "attention_mask", "target_ids", "loss_mask"]
    rows = padded.to_pylist()
    assert rows[0]["input_ids"] == [5, 6, 7, 0] and rows[1]["input_ids"] == [8, 9, 0, 0]
    assert rows[0]["attention_mask"] == [1, 1, 1, 0] and rows[1]["attention_mask"] == [1, 1, 0, 0]
    assert rows[0]["target_ids"] == [6, 7, -100, -100] and rows[1]["target_ids"] == [9, -100, -100, -100]
    assert rows[1]["loss_mask"] == [1, 0, 0, 0]
    assert [r["source_line"] for r in rows] == [1, 2] and rows[0]["num_trained_tokens"] == 2


def test_pad_hf_rows_zeroes_the_existing_attention_mask():
    examples = [{"ids": [5, 6, 7], "prompt_len": 1, "source": "f", "line": 1}]
    batch = sequence_batch(encoded(examples), *meta(examples), "hf", schema_for("sequence", "hf"))
    (row,) = pad_batch(batch, pad_id=99, multiple_of=8).to_pylist()
    assert row["input_ids"] == [5, 6, 7] + [99] * 5
    assert row["attention_mask"] == [1, 1, 1] + [0] * 5
    assert row["labels"] == [-100, 6, 7] + [-100] * 5


def test_pad_packed_rows_makes_padding_its_own_segment():
    examples = [
        {"ids": [5, 6, 7], "prompt_len": 1, "source": "f", "line": 1},
        {"ids": [8, 9], "prompt_len": 0, "source": "f", "line": 2},
    ]
    packer = Packer(8, "hf", buffer_examples=4)
    (batch,) = packer.add(encoded(examples), *meta(examples)) + packer.flush()
    (row,) = pad_batch(batch, pad_id=0, length=8).to_pylist()
    assert row["input_ids"] == [5, 6, 7, 8, 9, 0, 0, 0]
    assert row["position_ids"] == [0, 1, 2, 0, 1, 0, 1, 2]
    assert row["attention_mask"] == [1, 1, 1, 1, 1, 0, 0, 0]
    assert row["labels"] == [-100, 6, 7, -100, 9, -100, -100, -100]
    assert row["seq_lengths"] == [3, 2]
    assert unpack_row(row) == unpacked_rows([examples], "hf")


def test_pad_works_on_a_slice_of_a_batch():
    examples = [{"ids": [k + 1] * (k + 1), "prompt_len": 0, "source": "f", "line": k} for k in range(4)]
    batch = sequence_batch(encoded(examples), *meta(examples), "shifted", schema_for("sequence", "shifted"))
    rows = pad_batch(batch.slice(1, 2), pad_id=0, length=4).to_pylist()
    assert [r["input_ids"] for r in rows] == [[2, 2, 0, 0], [3, 3, 3, 0]]
    assert [r["target_ids"] for r in rows] == [[2, -100, -100, -100], [3, 3, -100, -100]]


@pytest.mark.parametrize(("name", "token"), [("gpt2", "<|endoftext|>"), ("smollm-135m", "[PAD]"),
                                             ("phi-3-mini", "<|endoftext|>")])  # fmt: skip
def test_pad_id_is_the_pad_token_else_eos(name, token, tokenizer_path):
    info = load_tokenizer(tokenizer_path(name))
    assert pad_id_for(info) == info.tokenizer.token_to_id(token)
    if info.pad_token is None:
        assert pad_id_for(info) == info.eos_id


# --- helpers for the build --------------------------------------------------


def test_packing_problems():
    assert packing_problems("sequence", 2048, True, "max-length", 64) == []
    assert packing_problems("sequence", None, False, None, None) == []
    problems = packing_problems("exploded", None, True, "longest", 0, pack_buffer=0)
    assert problems == [
        "--pack cannot be used with --mode exploded: an exploded row is one prefix and one target, "
        "there is nothing to pack (use --mode sequence)",
        "--pad-to/--pad-to-multiple-of cannot be used with --mode exploded (use --mode sequence)",
        "--pack needs --max-length L, the length of a packed row",
        "--pad-to must be one of max-length, got 'longest'",
        "--pack-buffer must be at least 1, got 0",
        "--pad-to-multiple-of must be at least 1, got 0",
    ]
    assert packing_problems("sequence", None, False, "max-length", None) == [
        "--pad-to max-length needs --max-length"
    ]


@pytest.mark.parametrize("labels", ["shifted", "hf"])
@pytest.mark.parametrize("pad", [False, True])
def test_packed_shards_load_with_datasets(tmp_path, labels, pad):
    examples = _random_examples(30, 50)
    schema = packed_schema_for(labels)
    if pad:
        schema = padded_schema(schema)
    schema = with_metadata(schema, {"labels": labels, "packed": True})
    packer = Packer(32, labels, schema=None if pad else schema, buffer_examples=8)
    writer = ShardWriter(tmp_path, schema, 1 << 20)
    for batch in packer.add(encoded(examples), *meta(examples)) + packer.flush():
        writer.write(pad_batch(batch, pad_id=0, length=32, schema=schema) if pad else batch)
    writer.finish()
    ds = load_from_disk(str(tmp_path))
    assert ds.column_names == schema.names
    assert len(ds) == packer.stats.rows
    got = [example for row in ds for example in unpack_row(row)]
    assert multiset(got) == multiset(unpacked_rows([examples], labels))


# --- efficiency on real data ------------------------------------------------------------------


def _encode_alpaca(path: str, tokenizer: str, max_length: int) -> tuple[EncodedBatch, list[str], np.ndarray]:
    """alpaca_5000 through the build's path: records -> alpaca template -> Encoder."""
    records = [r for r in InputFile(path).records() if r.data is not None]
    renderer = bind_template(load_template("alpaca"), first_record=records[0].data)
    pairs, kept = [], []
    for record in records:
        if record.data["output"].strip():  # the build rejects the 2 empty outputs
            pairs.append(renderer.render(record.data, record.where))
            kept.append(record)
    encoder = Encoder(load_tokenizer(tokenizer), EncodeOptions(max_length=max_length))
    enc = encoder.encode([p for p, _ in pairs], [t for _, t in pairs])
    lines = np.array([kept[i].number for i in enc.index], dtype=np.int64)
    return enc, [kept[i].source for i in enc.index], lines


def test_alpaca_efficiency_at_2048(data_path, tokenizer_path):
    """The issue's bar: >= 0.98 on alpaca_5000 with gpt2 at L=2048 (measured: 0.9954, 277 rows)."""
    enc, sources, lines = _encode_alpaca(
        data_path("instruction", "alpaca_5000.json"), tokenizer_path("gpt2"), 2048
    )
    assert len(enc) == 4998
    lower_bound = int(np.ceil(enc.offsets[-1] / 2048))
    results = {}
    for buffer in (64, 128, 4096):
        packer = Packer(2048, "shifted", buffer_examples=buffer)
        rows = sum(b.num_rows for b in packer.add(enc, sources, lines) + packer.flush())
        assert rows == packer.stats.rows and packer.stats.examples == 4998
        results[buffer] = packer.stats.as_dict()
    assert results[4096]["efficiency"] >= 0.98
    assert results[4096]["rows"] == len(
        best_fit_decreasing(np.diff(enc.offsets), 2048)
    )  # = whole-file packing
    assert results[4096]["rows"] <= lower_bound + 1
    assert results[128]["efficiency"] >= 0.98 > results[64]["efficiency"]
