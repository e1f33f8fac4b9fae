"""Token offsets from the ids (sftprep.chat.offsets) equal the tokenizer's own, or are not used."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import Tokenizer, normalizers, processors

from sftprep.chat import ChatEncoder, load_chat_template, special_tokens
from sftprep.chat.formats import to_messages
from sftprep.chat.offsets import byte_level_offsets
from sftprep.tokenizer import load_tokenizer

BYTE_LEVEL = ("llama-3.1", "qwen3", "smollm-135m", "gpt2")
CHAT_FILES = (
    ("lima.json", None),
    ("glaive_toolcall_en_demo.json", None),
    ("dummy_conversation.json", None),
    ("v1_sft_demo.jsonl", None),
    ("multichallenge_benchmark_questions.jsonl", {"messages": "CONVERSATION"}),
)
ODD = ["héllo wörld 日本語 🎉🎉 ", "", " ", "  \n\n\t x", "e\u0301 combining", "<|im_end|>é<|im_start|>"]


def rendered_chats(info, data_path) -> list[str]:
    """Every conversation of the real chat files rendered with the tokenizer's template (or chatml)."""
    template = load_chat_template(None if info.config.get("chat_template") else "chatml", info)
    variables = special_tokens(info)
    texts = []
    for name, field_map in CHAT_FILES:
        path = data_path("chat", name)
        with open(path, encoding="utf-8") as f:
            records = json.load(f) if name.endswith(".json") else [json.loads(line) for line in f]
        for i, record in enumerate(records):
            conversation = to_messages(record, f"{name}:{i + 1}", field_map=field_map)
            try:
                texts.append(
                    template.render(list(conversation.messages), conversation.tools, False, variables)
                )
            except Exception:  # a template that refuses a conversation: not what this test is about
                continue
    return texts


@pytest.mark.parametrize("name", BYTE_LEVEL)
def test_offsets_from_ids_equal_the_tokenizers(name, tokenizer_path, data_path):
    info = load_tokenizer(tokenizer_path(name))
    offsets = byte_level_offsets(info.tokenizer)
    assert offsets is not None, f"{name} is a byte-level BPE: its offsets follow from the ids"
    texts = [*rendered_chats(info, data_path), *ODD]
    computed = 0
    for text, enc in zip(texts, info.tokenizer.encode_batch(texts, add_special_tokens=False), strict=True):
        mine = offsets(text, np.asarray(enc.ids, dtype=np.int32))
        if mine is None:  # left to the tokenizer (Qwen3: text that NFC would change)
            assert name == "qwen3"
            continue
        computed += 1
        assert mine.tolist() == [list(o) for o in enc.offsets], text[:80]
    assert computed >= len(texts) - 2


def test_qwen3_leaves_text_that_nfc_changes_to_the_tokenizer(tokenizer_path):
    info = load_tokenizer(tokenizer_path("qwen3"))
    offsets = byte_level_offsets(info.tokenizer)
    assert offsets is not None
    text = "e\u0301"  # NFC composes it into one character: the offsets map through the normalizer
    assert offsets(text, info.tokenizer.encode(text, add_special_tokens=False).ids) is None
    text = "\u00e9"
    enc = info.tokenizer.encode(text, add_special_tokens=False)
    assert offsets(text, enc.ids).tolist() == [list(o) for o in enc.offsets]


@pytest.mark.parametrize("name", ["phi-3-mini", "mistral-7b-v0.1"])
def test_sentencepiece_tokenizers_keep_the_tokenizers_offsets(name, tokenizer_path):
    # The Prepend/Replace normalizer and whitespace-stripping added tokens move text between tokens.
    assert byte_level_offsets(load_tokenizer(tokenizer_path(name)).tokenizer) is None


def test_what_moves_offsets_turns_the_shortcut_off(tokenizer_path):
    tok = Tokenizer.from_file(str(tokenizer_path("gpt2")) + "/tokenizer.json")
    assert byte_level_offsets(tok) is not None
    tok.post_processor = processors.ByteLevel(trim_offsets=True)  # offsets without their spaces
    assert byte_level_offsets(tok) is None
    tok = Tokenizer.from_file(str(tokenizer_path("gpt2")) + "/tokenizer.json")
    tok.normalizer = normalizers.Lowercase()
    assert byte_level_offsets(tok) is None


def test_a_row_whose_ids_do_not_add_up_is_left_to_the_tokenizer(tokenizer_path):
    info = load_tokenizer(tokenizer_path("gpt2"))
    offsets = byte_level_offsets(info.tokenizer)
    ids = info.tokenizer.encode("Hello world", add_special_tokens=False).ids
    assert offsets("Hello world!", ids) is None
    assert offsets("Hello world", [*ids, 10**9]) is None


def test_rows_are_the_same_with_and_without_the_shortcut(tokenizer_path, data_path):
    info = load_tokenizer(tokenizer_path("llama-3.1"))
    with open(data_path("chat", "lima.json"), encoding="utf-8") as f:
        conversations = [to_messages(r, f"lima:{i + 1}") for i, r in enumerate(json.load(f)[:300])]
    fast = ChatEncoder(info, load_chat_template(None, info))
    assert fast._offsets is not None
    slow = ChatEncoder(info, load_chat_template(None, info))
    slow._offsets = None  # the tokenizer's offsets, as before the shortcut
    a, b = fast.encode(conversations), slow.encode(conversations)
    assert a.ids.tolist() == b.ids.tolist() and a.trained.tolist() == b.trained.tolist()
    assert a.offsets.tolist() == b.offsets.tolist() and a.rejected == b.rejected and len(a) == 300
