"""The prompt/target boundary on real tokenizers and real data.

The central claim of sftprep.encode: in every row, the prompt's ids are exactly
the ids of the prompt tokenized alone, and the trained span is the target's
text followed by EOS. Checked here on every row of real datasets with every
real tokenizer in ../shared.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sftprep.boundary import PieceLengths
from sftprep.encode import EncodeOptions, Encoder
from sftprep.templates import bind_template, load_template
from sftprep.tokenizer import load_tokenizer
from tests.conftest import TOKENIZERS

# (dataset file, template, --field mappings, how many rows to check)
DATASETS = [
    (("instruction", "alpaca_5000.json"), "alpaca", {}, 1500),
    (("qa", "NQ-open.dev.jsonl"), "qa", {"answer": "answer.0"}, 1500),
    (("summarization", "dialogsum.dev.jsonl"), "summarization", {}, 500),
    (("translation", "alma_valid.de-en.json"), "translation", {}, 1002),
    (("instruction", "dolly_hhrlhf_train_small.jsonl"), "prompt-completion", {}, 1000),
]


def _load(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.split("\n") if line.strip()]


def _pairs(data_path, parts, template_name, fields, limit):
    records = _load(data_path(*parts))[:limit]
    renderer = bind_template(load_template(template_name), fields, first_record=records[0])
    pairs = []
    for i, record in enumerate(records):
        try:
            pairs.append(renderer.render(record, f"{parts[-1]}:{i + 1}"))
        except Exception:
            continue  # empty outputs etc. are the reader/build's business, tested elsewhere
    return pairs


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
@pytest.mark.parametrize(("parts", "template", "fields", "limit"), DATASETS, ids=lambda v: str(v))
def test_prompt_ids_are_the_prompt_alone_and_target_decodes(tokenizer, parts, template, fields, limit,
                                                            tokenizer_path, data_path):  # fmt: skip
    info = load_tokenizer(tokenizer_path(tokenizer))
    tok = info.tokenizer
    pairs = _pairs(data_path, parts, template, fields, limit)
    prompts, targets = [p for p, _ in pairs], [t for _, t in pairs]
    enc = Encoder(info, EncodeOptions()).encode(prompts, targets)
    assert not enc.rejected and not enc.dropped
    alone = tok.encode_batch(prompts, add_special_tokens=True)
    for row, i in enumerate(enc.index):
        ids = enc.ids[enc.offsets[row] : enc.offsets[row + 1]].tolist()
        p = int(enc.prompt_lens[row])
        prompt_ids = alone[i].ids
        if not enc.boundary_adjusted[row]:
            assert ids[:p] == prompt_ids, f"row {i}: prompt ids differ from the prompt tokenized alone"
        assert ids[-1] == info.eos_id and ids.count(info.eos_id) >= 1
        trained = tok.decode(ids[p:-1], skip_special_tokens=False)
        # Decoders may drop one leading space (SentencePiece's Strip); nothing else may differ.
        assert trained in (targets[i], targets[i][1:]) or trained.strip() == targets[i].strip(), (
            f"row {i}: trained span {trained[:60]!r} is not the target {targets[i][:60]!r}"
        )


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_boundary_merge_keeps_prompt_ids_and_text(tokenizer, tokenizer_path):
    """A prompt ending in a space: the prompt keeps its own ids, the row its text, and is flagged."""
    info = load_tokenizer(tokenizer_path(tokenizer))
    prompts = ["Question: What is the capital of France? Answer: "]
    enc = Encoder(info, EncodeOptions()).encode(prompts, ["Paris"])
    p = int(enc.prompt_lens[0])
    ids = enc.ids.tolist()
    assert ids[:p] == info.tokenizer.encode(prompts[0]).ids
    assert info.tokenizer.decode(ids[:-1]) == info.tokenizer.decode(
        info.tokenizer.encode(prompts[0] + "Paris").ids
    )
    assert enc.boundary_adjusted.tolist() == [True]


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_verify_prompts_agrees(tokenizer, tokenizer_path):
    info = load_tokenizer(tokenizer_path(tokenizer))
    prompts = ["Question: 2+2? Answer:", "<ARTICLE> Text. <SUMMARY>", "x"]
    targets = [" 4", " Short.", "\ny"]
    fast = Encoder(info, EncodeOptions()).encode(prompts, targets)
    checked = Encoder(info, EncodeOptions(verify_prompts=True)).encode(prompts, targets)
    assert fast.ids.tolist() == checked.ids.tolist()
    assert fast.prompt_lens.tolist() == checked.prompt_lens.tolist()


def test_double_bos_and_eos_in_text(tokenizer_path):
    info = load_tokenizer(tokenizer_path("mistral-7b-v0.1"))
    enc = Encoder(info, EncodeOptions()).encode(["<s>Question: hi Answer:"], [" yes</s>"])
    ids = enc.ids.tolist()
    assert ids[0] == 1 and ids[1] != 1, "no double BOS"
    assert ids[-1] == 2 and ids[-2] != 2, "no double EOS"
    assert enc.counts["double_bos_removed"] == 1 and enc.counts["eos_in_text"] == 1


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_mixed_batch_equals_rows_encoded_alone(tokenizer, tokenizer_path):
    """Plain rows (done with numpy for the whole batch) and special ones (done one by one)
    interleave in input order, each exactly as it comes out alone."""
    info = load_tokenizer(tokenizer_path(tokenizer))
    pairs = [
        ("Question: hi Answer:", " yes"),  # plain
        ("<s>Question: hi Answer:", " yes"),  # text starts with BOS
        ("Question: hi Answer:", " yes</s>"),  # target ends with EOS
        ("Answer:", "Paris"),  # may merge across the boundary
        ("Q: " + "long " * 40, " short"),  # over --max-length: prompt cut
        ("Q:", " word" * 60),  # target too long: rejected
        ("", "only a target"),
        ("Question: two Answer:", " no"),  # plain
    ]
    encoder = Encoder(info, EncodeOptions(max_length=32))
    batch = encoder.encode([p for p, _ in pairs], [t for _, t in pairs])
    rows, rejected = [], []
    for i, (prompt, target) in enumerate(pairs):
        alone = encoder.encode([prompt], [target])
        rejected += [(i, reason) for _, reason, _ in alone.rejected]
        if len(alone):
            flags = (alone.truncated[0], alone.boundary_adjusted[0])
            rows.append((i, alone.ids.tolist(), int(alone.prompt_lens[0]), *flags))
    got = [
        (int(i), batch.ids[batch.offsets[k] : batch.offsets[k + 1]].tolist(), int(batch.prompt_lens[k]),
         batch.truncated[k], batch.boundary_adjusted[k])
        for k, i in enumerate(batch.index)
    ]  # fmt: skip
    assert got == rows
    assert [(i, reason) for i, reason, _ in batch.rejected] == rejected == [(5, "target_too_long")]


@pytest.mark.parametrize(
    ("policy", "expect"),
    [("prompt", "cut"), ("target", "cut_target"), ("drop", "dropped")],
)
def test_truncation_policies(policy, expect, tokenizer_path):
    info = load_tokenizer(tokenizer_path("mistral-7b-v0.1"))
    prompt, target = "Question: " + "word " * 20 + "Answer:", " a b c"
    full = Encoder(info, EncodeOptions()).encode([prompt], [target])
    n, p = len(full.ids), int(full.prompt_lens[0])
    limit = p + 2 if policy == "target" else n - 5
    enc = Encoder(info, EncodeOptions(max_length=limit, truncation=policy)).encode([prompt], [target])
    if expect == "dropped":
        assert enc.dropped == [0] and len(enc) == 0
        return
    ids = enc.ids.tolist()
    assert len(ids) == limit and enc.truncated.tolist() == [True]
    if expect == "cut":
        assert ids[0] == 1, "BOS kept"
        assert ids[int(enc.prompt_lens[0]) :] == full.ids.tolist()[p:], "target and EOS kept whole"
    else:
        assert ids == full.ids.tolist()[:limit] and int(enc.prompt_lens[0]) == p


def test_truncation_never_leaves_no_trained_token(tokenizer_path):
    info = load_tokenizer(tokenizer_path("gpt2"))
    long_target = " word" * 50
    enc = Encoder(info, EncodeOptions(max_length=10, truncation="prompt")).encode(["Q:"], [long_target])
    assert [r[1] for r in enc.rejected] == ["target_too_long"]
    enc = Encoder(info, EncodeOptions(max_length=3, truncation="target")).encode(["a b c d e f"], [" g"])
    assert [r[1] for r in enc.rejected] == ["no_trained_token"]


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
@pytest.mark.parametrize(("parts", "template", "fields", "limit"), DATASETS, ids=lambda v: str(v))
def test_length_rule_agrees_with_offsets(
    tokenizer, parts, template, fields, limit, tokenizer_path, data_path
):
    """The offset-free boundary rule (boundary.py) gives the same rows as the offsets rule."""
    info = load_tokenizer(tokenizer_path(tokenizer))
    fast = Encoder(info, EncodeOptions())
    assert fast.pieces is not None, "all four shared tokenizers have a length rule"
    slow = Encoder(info, EncodeOptions())
    slow.pieces = None
    pairs = _pairs(data_path, parts, template, fields, limit)
    prompts, targets = [p for p, _ in pairs], [t for _, t in pairs]
    a, b = fast.encode(prompts, targets), slow.encode(prompts, targets)
    assert a.ids.tolist() == b.ids.tolist()
    assert a.prompt_lens.tolist() == b.prompt_lens.tolist()
    assert a.boundary_adjusted.tolist() == b.boundary_adjusted.tolist()


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_length_rule_on_awkward_pairs(tokenizer, tokenizer_path):
    info = load_tokenizer(tokenizer_path(tokenizer))
    fast = Encoder(info, EncodeOptions())
    slow = Encoder(info, EncodeOptions())
    slow.pieces = None
    prompts = [
        "<s>Question:",
        "a</s>b:",
        "Answer: ",
        "tab\t",
        "",
        "  ",
        "x",
        "Ünïcödé:",
        "emoji 🙂",
        "<|im_end|>x",
    ]
    targets = [" yes", " no", "Paris", "\tnext", " all target", "  spaces", "y", " ä", "🙂", " z"]
    a, b = fast.encode(prompts, targets), slow.encode(prompts, targets)
    assert a.ids.tolist() == b.ids.tolist()
    assert a.prompt_lens.tolist() == b.prompt_lens.tolist()
    assert a.boundary_adjusted.tolist() == b.boundary_adjusted.tolist()


@pytest.mark.parametrize("tokenizer", ["mistral-7b-v0.1", "phi-3-mini"])
def test_normalizer_replica_is_the_tokenizers_normalizer(tokenizer, tokenizer_path, data_path):
    """The str-method copy of a SentencePiece-style normalizer (boundary.Normalizer) gives
    exactly the tokenizer's normalized text for every prompt and target of the real data.
    (A wrong length would mostly just send rows to the offsets path, so the rows alone
    would not show it.)"""
    info = load_tokenizer(tokenizer_path(tokenizer))
    pieces = PieceLengths.for_tokenizer(info.tokenizer, info.source_json)
    assert pieces is not None and pieces.replica is not None
    normalizer = info.tokenizer.normalizer
    texts = [text for parts, template, fields, limit in DATASETS
             for pair in _pairs(data_path, parts, template, fields, limit) for text in pair]  # fmt: skip
    assert len(texts) > 5000
    assert [pieces.replica(t) for t in texts] == [normalizer.normalize_str(t) for t in texts]


def test_post_processor_tail_is_not_doubled(tmp_path, tokenizer_path):
    """A post-processor that appends EOS itself (``<s> $A </s>``): the row ends with one EOS,
    trained; the prompt's ids are the prompt alone without that tail; mixed batches agree."""
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing

    source = Path(tokenizer_path("mistral-7b-v0.1"))
    tok = Tokenizer.from_file(str(source / "tokenizer.json"))
    tok.post_processor = TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    folder = tmp_path / "tok"
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    shutil.copy(source / "tokenizer_config.json", folder / "tokenizer_config.json")
    info = load_tokenizer(str(folder))
    assert info.head_ids == [1] and info.tail_ids == [2]
    encoder = Encoder(info, EncodeOptions(max_length=24))
    pairs = [
        ("Question: hi Answer:", " yes"),
        ("Q:", " done</s>"),
        ("<s>Q: x", " y"),
        ("Q: " + "w " * 30, " z"),
    ]
    batch = encoder.encode([p for p, _ in pairs], [t for _, t in pairs])
    for k, i in enumerate(batch.index.tolist()):
        prompt, target = pairs[i]
        row = batch.ids[batch.offsets[k] : batch.offsets[k + 1]].tolist()
        alone = encoder.encode([prompt], [target])
        assert row == alone.ids.tolist() and int(batch.prompt_lens[k]) == int(alone.prompt_lens[0])
        assert row[-1] == 2 and row[-2] != 2, "exactly one EOS at the end"
        if not batch.truncated[k] and not prompt.startswith("<s>"):
            n = int(batch.prompt_lens[k])
            assert row[:n] == tok.encode(prompt).ids[:-1], "the prompt alone, without the tail"
    assert batch.counts["eos_in_text"] == 1 and batch.truncated.tolist() == [False, False, False, True]
