"""Finding and loading tokenizers: files, folders, the HF cache, the shipped default."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sftprep.errors import TokenizerError
from sftprep.tokenizer import DEFAULT_TOKENIZER, _untrimmed, load_tokenizer
from tests.conftest import TOKENIZERS


@pytest.mark.parametrize(
    ("name", "eos", "head"),
    [("gpt2", "<|endoftext|>", []), ("mistral-7b-v0.1", "</s>", [1]), ("phi-3-mini", "<|endoftext|>", []),
     ("smollm-135m", "<|endoftext|>", [])],
)  # fmt: skip
def test_real_tokenizers(name, eos, head, tokenizer_path):
    info = load_tokenizer(tokenizer_path(name))
    assert info.eos_token == eos and info.head_ids == head and info.tail_ids == []
    # smollm's file pads and truncates to 192: sftprep switches both off
    assert len(info.tokenizer.encode("Hello world").ids) == len(head) + 2


def test_file_and_folder_are_the_same(tokenizer_path):
    folder = load_tokenizer(tokenizer_path("mistral-7b-v0.1"))
    file = load_tokenizer(tokenizer_path("mistral-7b-v0.1") + "/tokenizer.json")
    assert folder.sha256 == file.sha256 and folder.eos_id == file.eos_id == 2


def test_default_tokenizer():
    info = load_tokenizer(None)
    assert info.name == "default" and info.eos_token == "<|endoftext|>" and info.eos_id == 0
    assert DEFAULT_TOKENIZER.is_file()


def test_model_id_from_the_local_hf_cache(tmp_path, monkeypatch, tokenizer_path):
    """A model id resolves through the Hugging Face cache layout, offline."""
    snapshot = tmp_path / "hub" / "models--acme--tiny-gpt" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    shutil.copy(tokenizer_path("gpt2") + "/tokenizer.json", snapshot / "tokenizer.json")
    (tmp_path / "hub" / "models--acme--tiny-gpt" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--tiny-gpt" / "refs" / "main").write_text("0123abc")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    info = load_tokenizer("acme/tiny-gpt")
    assert info.name == "acme/tiny-gpt" and info.eos_token == "<|endoftext|>"
    assert info.tokenizer.encode("Hello world").ids == [15496, 995]


def test_eos_override_adds_a_new_token(tokenizer_path):
    info = load_tokenizer(tokenizer_path("gpt2"), eos="<END>")
    assert info.eos_token == "<END>" and info.eos_id == 50257 and info.added_markers == ["<END>"]


def test_broken_tokenizer_is_a_clear_error(tokenizer_path):
    with pytest.raises(TokenizerError, match=r"tokenizer does not load: Merges text file invalid"):
        load_tokenizer(tokenizer_path("_broken/llama-2-nbsp-corrupted"))


def test_folder_without_tokenizer_json(tmp_path):
    with pytest.raises(TokenizerError, match=r"has no tokenizer\.json"):
        load_tokenizer(str(tmp_path))


def _all_untrimmed(data):
    """The reference edit: every trim_offsets key in the parsed JSON set to False."""
    if isinstance(data, dict):
        return {k: False if k == "trim_offsets" else _all_untrimmed(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_all_untrimmed(v) for v in data]
    return data


@pytest.mark.parametrize("name", TOKENIZERS)
def test_trim_offsets_switched_off_as_text_as_if_parsed(name, tokenizer_path):
    """Offsets must cover every character; the JSON is edited as text, which must equal the parsed edit."""
    text = (Path(tokenizer_path(name)) / "tokenizer.json").read_text(encoding="utf-8")
    assert json.loads(_untrimmed(text)) == _all_untrimmed(json.loads(text))
    tricky = '{"a": {"trim_offsets" : true}, "b": "\\"trim_offsets\\": true", "c": [{"trim_offsets":true}]}'
    assert json.loads(_untrimmed(tricky)) == _all_untrimmed(json.loads(tricky))
