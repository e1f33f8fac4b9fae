"""Chat data for current model families: Qwen3 (reasoning, tool calls, a template that is not
prefix-stable) and Llama-3.1, checked against transformers' ``apply_chat_template``.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
from tokenizers import AddedToken

from sftprep.chat import ChatEncoder, load_chat_template, special_tokens
from sftprep.chat_formats import to_messages
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
