"""Chat data for current model families: Qwen3 (reasoning, tool calls, a template that is not
prefix-stable) and Llama-3.1, checked against transformers' ``apply_chat_template``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from tokenizers import AddedToken

from sftprep.chat import ChatEncoder, load_chat_template, special_tokens
from sftprep.chat_formats import Conversation, to_messages
from sftprep.errors import RecordError
from sftprep.readers import InputFile
from sftprep.tokenizer import TokenizerInfo, load_tokenizer

transformers = pytest.importorskip("transformers")
logging.getLogger("transformers").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def tokenizer(tokenizer_path):
    """tokenizer("qwen3") -> a TokenizerInfo, loaded once per module (do not add tokens to it)."""
    cache: dict[str, TokenizerInfo] = {}

    def get(name):
        if name not in cache:
            cache[name] = load_tokenizer(tokenizer_path(name))
        return cache[name]

    return get


@pytest.fixture(scope="module")
def hf(tokenizer, tokenizer_path):
    """hf("qwen3") -> the same tokenizer in transformers, with its chat template and special tokens."""
    cache = {}

    def get(name):
        if name not in cache:
            path = Path(tokenizer_path(name)) / "tokenizer.json"
            tok = transformers.PreTrainedTokenizerFast(
                tokenizer_file=str(path), **special_tokens(tokenizer(name))
            )
            tok.chat_template = tokenizer(name).config.get("chat_template")
            cache[name] = tok
        return cache[name]

    return get


def chat(*turns: tuple[str, str], **extra):
    return to_messages({"messages": [{"role": r, "content": c} for r, c in turns], **extra}, "t:1")


def reasons(batch) -> dict[str, int]:
    return dict(Counter(reason for _, reason, _ in batch.rejected))


# --- issue 16 item 10: added tokens that are not special are text ------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("qwen3", "What do <think> and </think> mean? And <tool_call> or <tool_response>?"),
        ("phi-3-mini", "what does </s> mean?"),  # special: false in phi-3's files
    ],
)
def test_added_tokens_that_are_not_special_are_text(name, text, tokenizer):
    info = tokenizer(name)
    conv = chat(("user", text), ("assistant", "They are markers."))
    batch = ChatEncoder(info, load_chat_template(None, info)).encode([conv])
    assert reasons(batch) == {}
    assert len(batch) == 1


def test_a_whitespace_run_added_as_text_is_text(tokenizer_path):
    info = load_tokenizer(tokenizer_path("smollm-135m"))
    info.tokenizer.add_tokens([AddedToken("\n\n", special=False, normalized=False)])
    conv = chat(("user", "Two lines\n\nof text"), ("assistant", "Yes.\n\nTwo."))
    batch = ChatEncoder(info, load_chat_template("chatml")).encode([conv])
    assert reasons(batch) == {}
    special = chat(("user", "what is <|im_end|>?"), ("assistant", "A marker."))
    assert reasons(ChatEncoder(info, load_chat_template("chatml")).encode([special])) == {
        "control_token_in_text": 1
    }


# --- conformance: rows equal apply_chat_template, trained tokens are the assistant turns --------


def gsm8k(data_path, n: int) -> list[tuple[str, str, str]]:
    """(question, worked solution as reasoning, the number after #### as the answer)."""
    out = []
    with open(data_path("qa", "gsm8k_test.jsonl"), encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            solution, _, number = record["answer"].rpartition("####")
            out.append((record["question"], solution.strip(), number.strip()))
            if len(out) == n:
                break
    return out


def reasoning_conversations(data_path, turns: int, inline: bool, n: int = 12) -> list[Conversation]:
    """gsm8k problems as reasoning conversations of ``turns`` user/assistant pairs."""
    problems = gsm8k(data_path, n * turns)
    out = []
    for c in range(n):
        messages = []
        for question, reasoning, answer in problems[c * turns : (c + 1) * turns]:
            messages.append({"role": "user", "content": question})
            if inline:
                messages.append(
                    {"role": "assistant", "content": f"<think>\n{reasoning}\n</think>\n\n{answer}"}
                )
            else:
                messages.append({"role": "assistant", "content": answer, "reasoning_content": reasoning})
        out.append(to_messages({"messages": messages}, f"gsm8k:{c + 1}"))
    return out


def real_conversations(data_path, name: str, limit: int | None = None, field_map=None) -> list[Conversation]:
    out = []
    with InputFile(data_path("chat", name)) as f:
        for record in f.records():
            out.append(to_messages(record.data, record.where, field_map=field_map))
            if limit is not None and len(out) == limit:
                break
    return out


def reference_mask(hf_tok, messages, tools, turn, ids_text) -> tuple[list[int], list[bool]]:
    """transformers' ids for the row, and which tokens are an assistant turn's (header excluded,
    end-of-turn marker included, whitespace after it not)."""
    text, offsets = ids_text
    inside = np.zeros(len(text) + 1, dtype=bool)
    targets = [turn] if turn >= 0 else [k for k, m in enumerate(messages) if m["role"] == "assistant"]
    for k in targets:
        header = hf_tok.apply_chat_template(
            messages[:k], tools=tools, tokenize=False, add_generation_prompt=True
        )
        alone = hf_tok.apply_chat_template(messages[: k + 1], tools=tools, tokenize=False)
        body = alone[len(header) :].rstrip()
        assert alone.startswith(header) and text[len(header) :].startswith(body)
        inside[len(header) : len(header) + len(body)] = True
    return [
        bool(inside[a:b].all() or any(inside[i] and not text[i].isspace() for i in range(a, b)))
        for a, b in offsets
    ]


def check_rows(info, hf_tok, conversations, batch) -> Counter:
    """Every row equals transformers' rendering of its conversation (or prefix); returns the
    rows per (conversation, turn kind)."""
    seen = Counter()
    for j in range(len(batch)):
        i, turn = int(batch.index[j]), int(batch.turns[j])
        conv = conversations[i]
        messages = list(conv.messages) if turn < 0 else list(conv.messages[: turn + 1])
        ids = batch.ids[batch.offsets[j] : batch.offsets[j + 1]].tolist()
        out = hf_tok.apply_chat_template(messages, tools=conv.tools, return_dict=True)
        assert ids == out["input_ids"], (i, turn)
        text = hf_tok.apply_chat_template(messages, tools=conv.tools, tokenize=False)
        offsets = info.tokenizer.encode(text, add_special_tokens=False).offsets
        trained = batch.trained[batch.offsets[j] : batch.offsets[j + 1]]
        expected = reference_mask(hf_tok, messages, conv.tools, turn, (text, offsets))
        assert trained.tolist() == expected, (i, turn)
        if info.bos_id is not None and "bos_token" in (info.config.get("chat_template") or ""):
            assert ids[0] == info.bos_id and ids.count(info.bos_id) == 1  # one BOS, never two
        seen["each" if turn >= 0 else "conversation"] += 1
    return seen


SOURCES = [
    ("lima.json", None, 40),
    ("multichallenge_benchmark_questions.jsonl", {"messages": "CONVERSATION"}, 40),
    ("glaive_toolcall_en_demo.json", None, None),
]


@pytest.mark.parametrize("name", ["qwen3", "llama-3.1"])
@pytest.mark.parametrize(("file", "field_map", "limit"), SOURCES)
def test_real_chat_rows_equal_apply_chat_template(name, file, field_map, limit, tokenizer, hf, data_path):
    info, hf_tok = tokenizer(name), hf(name)
    conversations = real_conversations(data_path, file, limit, field_map)
    batch = ChatEncoder(info, load_chat_template(None, info)).encode(conversations)
    found = reasons(batch)
    assert "template_not_prefix_stable" not in found
    if name == "llama-3.1" and file.startswith("glaive"):  # its template has no tools
        assert set(found) == {"tools_not_rendered"}
    else:
        assert found == {}
    check_rows(info, hf_tok, conversations, batch)
    written = set(batch.index.tolist())
    assert written | {i for i, _, _ in batch.rejected} == set(range(len(conversations)))


@pytest.mark.parametrize("name", ["qwen3", "llama-3.1"])
@pytest.mark.parametrize("turns", [1, 3])
@pytest.mark.parametrize("inline", [False, True])
def test_reasoning_rows_equal_apply_chat_template(name, turns, inline, tokenizer, hf, data_path):
    info, hf_tok = tokenizer(name), hf(name)
    conversations = reasoning_conversations(data_path, turns, inline)
    batch = ChatEncoder(info, load_chat_template(None, info)).encode(conversations)
    assert reasons(batch) == {}
    seen = check_rows(info, hf_tok, conversations, batch)
    if name == "qwen3" and turns > 1:  # earlier turns lose their reasoning: one row per turn
        assert seen == {"each": turns * len(conversations)}
        assert batch.counts["turn_rows"] == turns * len(conversations)
    else:
        assert seen == {"conversation": len(conversations)}
    if name == "qwen3":  # every trained turn shows its reasoning in its think block
        assert batch.counts["reasoning_dropped"] == 0
        for j in range(len(batch)):
            row = info.tokenizer.decode(
                batch.ids[batch.offsets[j] : batch.offsets[j + 1]][
                    batch.trained[batch.offsets[j] : batch.offsets[j + 1]]
                ].tolist(),
                skip_special_tokens=False,
            )
            assert row.startswith("<think>\n") and "</think>\n\n" in row and row.endswith("<|im_end|>")
    elif not inline:  # llama-3.1's template never reads reasoning_content
        assert batch.counts["reasoning_dropped"] == turns * len(conversations)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("search(x)", "is not JSON"),
        ('{"arguments": {}}', 'is not a {"name": ..., "arguments": ...} object'),
    ],
)
def test_function_call_turns_that_are_not_calls_are_reported(value, text):
    record = {"conversations": [{"from": "human", "value": "Go"}, {"from": "function_call", "value": value}]}
    with pytest.raises(RecordError) as info:
        to_messages(record, "g.json:3")
    assert info.value.reason == "bad_tool_call"
    assert str(info.value).startswith("g.json:3: 'conversations.1.value' ") and text in str(info.value)
