"""``--labels hf`` rows against TRL's SFTTrainer, the reference of issue 2.

The reference rows are made by TRL itself, not by a reimplementation: a real
``SFTTrainer`` (around a tiny random GPT-2 model that is never trained) prepares
prompt/completion data with ``completion_only_loss``, and its data collator
turns the prepared rows into the batches a model would get. Since TRL 1.x the
``completion_mask`` is turned into a ``labels`` column during preparation, so
``trainer.train_dataset`` holds ``input_ids`` and ``labels``; the collator pads
them and adds ``attention_mask``.

sftprep builds the same pairs with the ``prompt-completion`` template and the
same tokenizer folder. The README ("Compared with TRL") says where the rows are
equal and where they differ by design; these tests check each sentence.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

try:
    import torch
    from datasets import Dataset, load_from_disk
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    from trl import SFTConfig, SFTTrainer
except ImportError as exc:
    if os.environ.get("CI") == "true":
        raise
    pytest.skip(
        f"TRL is not installed ({exc}); pip install -e '.[test]' to compare with it",
        allow_module_level=True,
    )

from sftprep.build import BuildConfig, run_build
from sftprep.templates import bind_template, load_template

pytestmark = [
    pytest.mark.slow,  # about 10 s in all, plus importing torch and TRL
    # TRL's SFTConfig sets transformers' renamed gradient_checkpointing: not ours to fix.
    pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning"),
]

TOKENIZERS = ("gpt2", "mistral-7b-v0.1", "phi-3-mini")
ALPACA_ROWS = 300

# Prompts that end in a space: the last prompt token and the first completion
# token merge when tokenized together (a boundary merge), at least with every
# tokenizer here for the first two.
BOUNDARY_PAIRS = [
    ("Question: What is the capital of France? Answer: ", "Paris"),
    ("Translate to German: good morning ", "Guten Morgen"),
    ("Q: 2+2? A: ", "4"),  # merges for GPT-2 only: SentencePiece splits digits
]


def hf_tokenizer(folder: str) -> PreTrainedTokenizerFast:
    """The Hugging Face tokenizer TRL gets, from the same files sftprep reads.

    gpt2 has no tokenizer_config.json, so its EOS (sftprep's fallback,
    ``<|endoftext|>``) and TRL's pad token are given by hand.
    """
    if (Path(folder) / "tokenizer_config.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(folder)
    eos = "<|endoftext|>"
    return PreTrainedTokenizerFast(
        tokenizer_file=str(Path(folder) / "tokenizer.json"), eos_token=eos, pad_token=eos
    )


def trl_trainer(tok, rows: list[dict], tmp: Path, **config) -> SFTTrainer:
    """A real SFTTrainer over ``rows``; its constructor prepares the dataset."""
    model = GPT2LMHeadModel(
        GPT2Config(
            n_layer=1, n_head=2, n_embd=32, vocab_size=len(tok),
            bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
        )
    )  # fmt: skip
    dataset = rows if isinstance(rows, Dataset) else Dataset.from_list(rows)
    args = SFTConfig(output_dir=str(tmp), report_to=[], use_cpu=True, **config)
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok)


def trl_rows(tok, rows: list[dict], tmp: Path, max_length: int | None = None) -> SFTTrainer:
    """TRL's own preparation of prompt/completion rows (note: TRL's default max_length is 1024)."""
    return trl_trainer(tok, rows, tmp / "trl", completion_only_loss=True, max_length=max_length)


def sftprep_rows(rows: list[dict], tokenizer: str, tmp: Path, **options) -> tuple[Dataset, dict]:
    """sftprep's ``--labels hf`` build of the same rows, and its manifest."""
    source = tmp / "pairs.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    out = tmp / "sftprep"
    config = BuildConfig(
        inputs=(str(source),), output=str(out), template="prompt-completion",
        tokenizer=tokenizer, labels="hf", **options,
    )  # fmt: skip
    run_build(config)
    return load_from_disk(str(out)), json.loads((out / "manifest.json").read_text())


def pairs(prompt_completion: list[tuple[str, str]]) -> list[dict]:
    """Rows in TRL's prompt/completion format; ``n`` is the JSONL line sftprep reports."""
    return [{"prompt": p, "completion": c, "n": i} for i, (p, c) in enumerate(prompt_completion, 1)]


@pytest.fixture(scope="module")
def real_pairs(data_path) -> list[tuple[str, str]]:
    """Alpaca rendered through sftprep's alpaca template, then dolly_hhrlhf as it is."""
    alpaca = json.loads(Path(data_path("instruction", "alpaca_5000.json")).read_text(encoding="utf-8"))
    renderer = bind_template(load_template("alpaca"), first_record=alpaca[0])
    out = [
        renderer.render(record, f"alpaca_5000.json:{i}") for i, record in enumerate(alpaca[:ALPACA_ROWS], 1)
    ]
    with open(data_path("instruction", "dolly_hhrlhf_train_small.jsonl"), encoding="utf-8") as f:
        out += [(r["prompt"], r["response"]) for r in map(json.loads, f)]
    return out


def first_trained(labels: list[int]) -> int:
    return next(j for j, label in enumerate(labels) if label != -100)


def collated(collator, rows) -> dict[str, torch.Tensor]:
    return collator([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])


@pytest.mark.parametrize("name", TOKENIZERS)
def test_hf_rows_equal_trl(name, real_pairs, tokenizer_path, tmp_path):
    """Without a boundary merge, input_ids and labels are TRL's, and so are the batches."""
    folder = tokenizer_path(name)
    tok = hf_tokenizer(folder)
    edge = [
        ("Say goodbye.", " Goodbye." + tok.eos_token),  # EOS already in the text: not doubled by either
        ("Keep the trailing space:", " yes \n "),  # whitespace before the EOS is kept by both
    ]
    rows = pairs(real_pairs + edge)
    reference = trl_rows(tok, rows, tmp_path)
    ours, manifest = sftprep_rows(rows, folder, tmp_path)

    assert len(ours) == len(reference.train_dataset) == len(rows)
    assert manifest["counts"]["boundary_adjusted"] == 0
    assert manifest["counts"]["eos_in_text"] == 1
    for theirs, mine in zip(reference.train_dataset, ours, strict=True):
        assert mine["source_line"] == theirs["n"]
        assert mine["input_ids"] == theirs["input_ids"], f"line {theirs['n']}"
        assert mine["labels"] == theirs["labels"], f"line {theirs['n']}"
        assert mine["attention_mask"] == [1] * len(mine["input_ids"])

    # The README's recipe: our rows into SFTTrainer with skip_prepare_dataset. Its
    # collator must give the model the very batches TRL's own preparation gives.
    skipping = trl_trainer(
        tok, ours, tmp_path / "skip", dataset_kwargs={"skip_prepare_dataset": True}, max_length=None
    )
    assert list(skipping.train_dataset["labels"]) == list(ours["labels"])  # taken as they are
    for start in range(0, len(rows), 64):
        batch = range(start, min(start + 64, len(rows)))
        want = collated(reference.data_collator, reference.train_dataset.select(batch))
        got = collated(skipping.data_collator, ours.select(batch))
        assert want.keys() == got.keys() == {"input_ids", "attention_mask", "labels"}
        for key in want:
            assert torch.equal(want[key], got[key]), f"{key}, batch at row {start}"


@pytest.mark.parametrize("name", TOKENIZERS)
def test_boundary_merge_differs_as_documented(name, tokenizer_path, tmp_path):
    """On a boundary merge TRL keeps the joint tokens and trains from where they leave the prompt's.

    sftprep keeps the prompt's own ids (what the model sees at inference),
    tokenizes the completion apart, and flags the row. Both rows spell the same
    text. Rows that do not merge are equal, as in the test above.
    """
    folder = tokenizer_path(name)
    tok = hf_tokenizer(folder)
    rows = pairs(BOUNDARY_PAIRS)
    reference = trl_rows(tok, rows, tmp_path)
    ours, _ = sftprep_rows(rows, folder, tmp_path)

    adjusted = [mine["boundary_adjusted"] for mine in ours]
    assert adjusted[:2] == [True, True]
    for row, theirs, mine in zip(rows, reference.train_dataset, ours, strict=True):
        if not mine["boundary_adjusted"]:
            assert (mine["input_ids"], mine["labels"]) == (theirs["input_ids"], theirs["labels"])
            continue
        prompt_ids = tok(row["prompt"])["input_ids"]
        # sftprep: the prompt's own ids, untrained; everything after them trained.
        assert mine["input_ids"][: len(prompt_ids)] == prompt_ids
        assert first_trained(mine["labels"]) == len(prompt_ids)
        # TRL: the joint tokens of prompt + completion + EOS text ...
        assert theirs["input_ids"] == tok(row["prompt"] + row["completion"] + tok.eos_token)["input_ids"]
        # ... trained from the first token that differs from the prompt's own, so the
        # merged token (holding the prompt's trailing space) is trained and the
        # context before it lacks the prompt's last token.
        k = first_trained(theirs["labels"])
        assert k < len(prompt_ids)
        assert theirs["input_ids"][:k] == prompt_ids[:k] == mine["input_ids"][:k]
        assert theirs["input_ids"][k] != prompt_ids[k]
        assert len(mine["input_ids"]) > len(theirs["input_ids"])
        # Same text, tokenized two ways.
        assert tok.decode(mine["input_ids"]) == tok.decode(theirs["input_ids"])


def test_duplicate_bos_is_removed_trl_keeps_it(tokenizer_path, tmp_path):
    """A prompt text starting with "<s>" gets a second BOS from Mistral's post-processor.

    sftprep drops the duplicate (``double_bos_removed``); TRL keeps both, and the
    rest of the row is the same.
    """
    folder = tokenizer_path("mistral-7b-v0.1")
    tok = hf_tokenizer(folder)
    rows = pairs([("<s>Question: why is the sky blue?", " Rayleigh scattering.")])
    theirs = trl_rows(tok, rows, tmp_path).train_dataset[0]
    ours, manifest = sftprep_rows(rows, folder, tmp_path)
    assert theirs["input_ids"][:2] == [tok.bos_token_id, tok.bos_token_id]
    assert ours[0]["input_ids"] == theirs["input_ids"][1:]
    assert ours[0]["labels"] == theirs["labels"][1:]
    assert manifest["counts"]["double_bos_removed"] == 1


@pytest.mark.parametrize("name", TOKENIZERS)
def test_truncation_target_equals_trl_max_length(name, real_pairs, tokenizer_path, tmp_path):
    """``--max-length N --truncation target`` cuts and drops rows as TRL's ``max_length=N`` does.

    TRL (truncation_mode keep_start) cuts every row to N tokens and drops rows
    left with nothing to train; sftprep cuts the target and rejects the same rows
    (``no_trained_token``), skipped here with ``on_error="skip"``.
    """
    folder = tokenizer_path(name)
    tok = hf_tokenizer(folder)
    rows = pairs(real_pairs[ALPACA_ROWS : ALPACA_ROWS + 200])  # dolly: long templated prompts
    limit = 64
    reference = trl_rows(tok, rows, tmp_path, max_length=limit).train_dataset
    ours, manifest = sftprep_rows(
        rows, folder, tmp_path, max_length=limit, truncation="target", on_error="skip"
    )

    assert 0 < len(ours) < len(rows)  # some rows are cut, some dropped: the test tests something
    assert list(ours["source_line"]) == list(reference["n"])
    assert manifest["counts"]["skipped"] == {"no_trained_token": len(rows) - len(ours)}
    assert list(ours["input_ids"]) == list(reference["input_ids"])
    assert list(ours["labels"]) == list(reference["labels"])
    assert sum(ours["truncated"]) == manifest["counts"]["truncated"] > 0
