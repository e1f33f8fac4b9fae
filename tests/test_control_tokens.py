"""Pair records whose fields contain a control token's text (issue 16, item 5).

``"ans</s>"`` in a field would be tokenized as Mistral's EOS id: in a target the model learns
to stop mid-answer. Such a record is rejected (``control_token_in_text``), naming the field and
the token; only a target that ends with the EOS text keeps it (``eos_in_text``). Added tokens
marked ``special: false`` (qwen3's ``<think>``, Phi-3's ``</s>``) are text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sftprep import BuildConfig, run_build
from sftprep.errors import RecordError
from sftprep.templates import bind_template, load_template
from sftprep.tokenizer import load_tokenizer


@pytest.mark.parametrize(
    ("name", "eos", "expected"),
    [
        ("gpt2", None, ["<|endoftext|>"]),
        ("mistral-7b-v0.1", None, ["<unk>", "</s>", "<s>"]),
        ("phi-3-mini", None, None),  # </s> is special: false and not the EOS: text
        ("phi-3-mini", "</s>", None),  # ... unless it is the EOS: then it is a control token
        ("qwen3", None, None),
    ],
)
def test_control_tokens_are_the_special_added_tokens_and_the_eos(name, eos, expected, tokenizer_path):
    info = load_tokenizer(tokenizer_path(name), eos=eos)
    controls = info.control_tokens()
    if expected is not None:
        assert controls == expected
    assert info.eos_token in controls
    assert ("</s>" in controls) == (name == "mistral-7b-v0.1" or eos == "</s>")
    assert not {"<think>", "</think>", "<tool_call>"} & set(controls)
    assert [len(t) for t in controls] == sorted((len(t) for t in controls), reverse=True)


def renderer(tokenizer: str, tokenizer_path, eos: str | None = None):
    info = load_tokenizer(tokenizer_path(tokenizer), eos=eos)
    bound = bind_template(load_template("prompt-completion"), first_record={"prompt": "", "completion": ""})
    return bound.with_control_tokens(info.control_tokens(), info.eos_token, info.bos_token)


@pytest.mark.parametrize(
    ("tokenizer", "record", "field", "token"),
    [
        ("smollm-135m", {"prompt": "Q:", "completion": " It is <|endoftext|> between documents."},
         "completion", "<|endoftext|>"),
        ("mistral-7b-v0.1", {"prompt": "Q:", "completion": "ans</s>\n"}, "completion", "</s>"),
        ("mistral-7b-v0.1", {"prompt": "Q:", "completion": " a</s></s>"}, "completion", "</s>"),
        ("mistral-7b-v0.1", {"prompt": "Q: <s> why?", "completion": " a"}, "prompt", "<s>"),
        ("mistral-7b-v0.1", {"prompt": "<s>Q:", "completion": " <s>a"}, "completion", "<s>"),
        ("mistral-7b-v0.1", {"prompt": "<s>Q: </s>", "completion": " a"}, "prompt", "</s>"),
        ("smollm-135m", {"prompt": "<|im_start|>user", "completion": " a"}, "prompt", "<|im_start|>"),
        ("phi-3-mini", {"prompt": "Q:", "completion": " a<|end|> b"}, "completion", "<|end|>"),
        ("phi-3-mini", {"prompt": "Q:", "completion": " a</s> b"}, "completion", "</s>"),  # with --eos </s>
    ],
)  # fmt: skip
def test_a_control_token_in_a_field_is_rejected(tokenizer, record, field, token, tokenizer_path):
    eos = "</s>" if tokenizer == "phi-3-mini" and token == "</s>" else None
    with pytest.raises(RecordError) as caught:
        renderer(tokenizer, tokenizer_path, eos).render(record, "d.jsonl:2")
    error = caught.value
    assert (error.where, error.reason, error.field) == ("d.jsonl:2", "control_token_in_text", field)
    at = record[field].index(token)
    assert str(error).startswith(
        f"d.jsonl:2: field '{field}': '{field}' contains the special token {token!r} at character {at}, "
        "which would be tokenized as a control token, not as text"
    )


@pytest.mark.parametrize(
    ("tokenizer", "record"),
    [
        ("mistral-7b-v0.1", {"prompt": "Q:", "completion": " fine</s>"}),  # the documented eos_in_text
        ("mistral-7b-v0.1", {"prompt": "<s>Q:", "completion": " a"}),  # ... and double_bos_removed
        ("smollm-135m", {"prompt": "Q:", "completion": " fine<|endoftext|>"}),
        ("phi-3-mini", {"prompt": "Q: </s>", "completion": " a</s> b"}),  # special: false, not the EOS
        ("qwen3", {"prompt": "Q: <think>", "completion": " <think>hm</think> <tool_call>{}</tool_call>"}),
    ],
)
def test_text_and_a_final_eos_are_kept(tokenizer, record, tokenizer_path):
    assert renderer(tokenizer, tokenizer_path).render(record, "d.jsonl:1") == (
        record["prompt"],
        record["completion"],
    )


def test_build_rejects_mid_answer_eos_and_keeps_a_final_one(tmp_path: Path, tokenizer_path):
    rows = [
        {"prompt": "Q: one", "completion": " ans</s>\n"},
        {"prompt": "Q: two", "completion": " fine</s>"},
        {"prompt": "Q: three", "completion": " ok"},
    ]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = BuildConfig(inputs=(str(data),), output=str(tmp_path / "out"),
                         tokenizer=tokenizer_path("mistral-7b-v0.1"), on_error="skip")  # fmt: skip
    counts = run_build(config).manifest["counts"]
    assert counts["skipped"] == {"control_token_in_text": 1}
    assert counts["examples_written"] == 2 and counts["eos_in_text"] == 1
    rejected = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").open()]
    assert [(r["line"], r["field"], r["reason"]) for r in rejected] == [
        (1, "completion", "control_token_in_text")
    ]

    where = re.escape(f"{data}:1: field 'completion': 'completion' contains the special token '</s>'")
    with pytest.raises(RecordError, match="^" + where):
        run_build(BuildConfig(inputs=(str(data),), output=str(tmp_path / "out2"),
                              tokenizer=tokenizer_path("mistral-7b-v0.1")))  # fmt: skip


def test_the_check_does_not_touch_ordinary_records(tokenizer_path):
    record = {"prompt": "Use <b>bold</b> and </ s> or < /s>", "completion": " <|endoftext| > fine"}
    assert renderer("smollm-135m", tokenizer_path).render(record, "d.jsonl:1") == tuple(record.values())
