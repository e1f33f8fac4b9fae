"""Find and load a Hugging Face ``tokenizers`` tokenizer, with its special tokens.

``--tokenizer`` accepts a ``tokenizer.json`` file, a folder holding one (with
``tokenizer_config.json`` / ``special_tokens_map.json`` beside it for the
bos/eos/pad tokens and the chat template), or a model id looked up in the
local Hugging Face cache (and on the hub when it is reachable). Without it,
the small demo tokenizer shipped in the package is used.

Two things are changed on the loaded tokenizer, neither of which changes ids:
padding and truncation stored in the file are switched off (sftprep decides
lengths itself), and offset trimming is switched off so that token offsets
cover every character, which the prompt/target boundary check relies on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tokenizers import AddedToken, Tokenizer

from sftprep.errors import TokenizerError

DEFAULT_TOKENIZER = Path(__file__).resolve().parent / "assets" / "default-tokenizer.json"

# Tried in order when the tokenizer's files name no EOS token (gpt2's
# tokenizer.json alone has none).
_EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|eot_id|>", "<|im_end|>")


@dataclass
class TokenizerInfo:
    """A loaded tokenizer and what sftprep needs to know about it.

    Attributes:
        tokenizer: the ``tokenizers.Tokenizer`` (padding/truncation off).
        name: what the user passed (or ``"default"``), for messages and the manifest.
        sha256: hash of the tokenizer's JSON as loaded from disk, before any
            tokens were added.
        config: the parsed ``tokenizer_config.json`` (empty if there is none).
        bos_token / eos_token / pad_token: special token strings, or None.
        head_ids / tail_ids: the ids the post-processor puts before and after
            a single sequence (``[1]`` / ``[]`` for Mistral's ``<s>``).
        added_markers: tokens sftprep added (template markers, a new EOS).
        source_text: the tokenizer's JSON text as read at load, so that the encoder's
            piece-length table need not serialize it again (:attr:`source_json` parses it
            when first asked: chat builds never need it); not pickled.
    """

    tokenizer: Tokenizer
    name: str
    sha256: str
    config: dict[str, Any] = field(default_factory=dict)
    bos_token: str | None = None
    eos_token: str | None = None
    pad_token: str | None = None
    head_ids: list[int] = field(default_factory=list)
    tail_ids: list[int] = field(default_factory=list)
    added_markers: list[str] = field(default_factory=list)
    source_text: str | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = {**self.__dict__, "source_text": None}
        state.pop("_source_json", None)
        return state

    @property
    def source_json(self) -> dict[str, Any] | None:
        """The tokenizer's JSON as loaded from disk, parsed once (None when not kept)."""
        if "_source_json" not in self.__dict__:
            self.__dict__["_source_json"] = None if self.source_text is None else json.loads(self.source_text)
        return self.__dict__["_source_json"]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def token_id(self, token: str | None) -> int | None:
        return None if token is None else self.tokenizer.token_to_id(token)

    @property
    def eos_id(self) -> int:
        eos = self.token_id(self.eos_token)
        assert eos is not None, "load_tokenizer guarantees an EOS id"
        return eos

    @property
    def bos_id(self) -> int | None:
        return self.token_id(self.bos_token)

    @property
    def chat_template(self) -> str | None:
        template = self.config.get("chat_template")
        return template if isinstance(template, str) else None

    def control_tokens(self) -> list[str]:
        """The token strings that record text must not contain, longest first.

        An added token is matched in text before anything else and becomes its single id.
        Those marked ``special: true`` are control tokens (``<|im_end|>``, Mistral's ``</s>``,
        markers sftprep added); those marked ``special: false`` are meant to appear in text
        (qwen3's ``<think>``, Phi-3's ``</s>``) and are not. The EOS token is always a control
        token when it is an added token, whatever its mark: its text becomes the EOS id either
        way, and an EOS trained mid-answer teaches the model to stop there.

        Returns:
            e.g. ``["<|endoftext|>"]`` for gpt2; ``["<unk>", "</s>", "<s>"]`` for Mistral.
        """
        added = self.tokenizer.get_added_tokens_decoder().values()
        tokens = {t.content for t in added if t.special}
        if self.eos_token in {t.content for t in added}:
            tokens.add(self.eos_token)
        return sorted(tokens, key=lambda t: (-len(t), t))

    def add_special_tokens(self, tokens: list[str]) -> list[str]:
        """Add tokens as special tokens (never split, never merged); return the new ones."""
        new = [t for t in tokens if self.tokenizer.token_to_id(t) is None]
        if new:
            self.tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in new])
            self.added_markers.extend(new)
        return new

    def identity(self) -> dict[str, Any]:
        """What the manifest records about the tokenizer."""
        return {
            "name": self.name,
            "sha256": self.sha256,
            "vocab_size": self.vocab_size,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "eos_id": self.eos_id,
            "pad_token": self.pad_token,
            "post_processor_adds": {"before": self.head_ids, "after": self.tail_ids},
            "added_tokens": list(self.added_markers),
        }


def _token_str(value: Any) -> str | None:
    """tokenizer_config.json stores special tokens as strings or AddedToken dicts."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"{path}: cannot read: {exc}") from None
    return data if isinstance(data, dict) else {}


def _from_hf_cache(model_id: str, tried: list[str]) -> Path | None:
    """The folder of ``model_id``'s tokenizer in the local HF cache, or the hub."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HFValidationError
    except ImportError:  # pragma: no cover - huggingface_hub comes with datasets
        tried.append("the Hugging Face cache (huggingface_hub is not installed)")
        return None
    for local_only in (True, False):
        where = "the local Hugging Face cache" if local_only else "the Hugging Face hub"
        if not local_only and not _hub_reachable():
            tried.append("the Hugging Face hub (offline or not reachable)")
            break
        try:
            path = hf_hub_download(
                model_id, "tokenizer.json", local_files_only=local_only, cache_dir=_hf_cache()
            )
        except HFValidationError:
            tried.append(f"'{model_id}' is not a valid model id")
            return None
        except Exception as exc:  # offline, not found, gated: all mean "not there"
            tried.append(f"{where} ({type(exc).__name__})")
            continue
        folder = Path(path).parent
        for extra in ("tokenizer_config.json", "special_tokens_map.json"):
            with contextlib.suppress(Exception):  # optional files
                hf_hub_download(model_id, extra, local_files_only=local_only, cache_dir=_hf_cache())
        return folder
    return None


def _hf_cache() -> str | None:
    """The HF cache folder as the environment says now (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_HUB_CACHE") or (
        os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub can be asked at all: HF_HUB_OFFLINE unset and its host answers.

    Without this check huggingface_hub retries an unreachable hub for about
    half a minute before giving up.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname or "", port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _locate(spec: str) -> tuple[Path, Path | None]:
    """Return (tokenizer.json, folder with the config files or None)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path, path.parent
    if path.is_dir():
        candidate = path / "tokenizer.json"
        if candidate.is_file():
            return candidate, path
        raise TokenizerError(f"tokenizer folder {spec} has no tokenizer.json")
    tried = [f"a file or folder named '{spec}' (not found)"]
    folder = _from_hf_cache(spec, tried)
    if folder is not None:
        return folder / "tokenizer.json", folder
    raise TokenizerError(f"cannot find tokenizer '{spec}': tried " + "; ".join(tried))


# A JSON key with a boolean value: it cannot occur inside a JSON string, where quotes are escaped,
# nor in the vocabulary, whose values are numbers.
_TRIM_OFFSETS = re.compile(r'"trim_offsets"(\s*):(\s*)true')


def _untrimmed(text: str) -> str:
    """The tokenizer JSON with every ``trim_offsets`` switched off.

    Trimmed offsets leave the leading space of ``Ġword`` outside the token's
    span; the boundary check needs spans that cover every character. Edited
    as text: parsing, editing and re-serializing a large vocabulary costs more
    than the tokenizer's own load.
    """
    return _TRIM_OFFSETS.sub(r'"trim_offsets"\1:\2false', text)


def _post_processor_ids(tok: Tokenizer) -> tuple[list[int], list[int]]:
    """Ids the post-processor adds before and after a single sequence."""
    probe = "a"
    plain = tok.encode(probe, add_special_tokens=False).ids
    full = tok.encode(probe, add_special_tokens=True).ids
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    raise TokenizerError("cannot tell which tokens the tokenizer's post-processor adds")


def load_tokenizer(spec: str | None, eos: str | None = None) -> TokenizerInfo:
    """Load a tokenizer for a build.

    Args:
        spec: path to ``tokenizer.json``, a folder, a model id, or None for the
            shipped demo tokenizer.
        eos: override the end-of-sequence token (``--eos``); a string that is
            not in the vocabulary is added as a special token.

    Raises:
        TokenizerError: not found, does not load, or has no usable EOS token.
    """
    json_path, folder = (DEFAULT_TOKENIZER, None) if spec is None else _locate(spec)
    name = "default" if spec is None else spec
    try:
        raw = json_path.read_bytes()
        text = raw.decode("utf-8")
        tok = Tokenizer.from_str(_untrimmed(text))
    except Exception as exc:  # tokenizers raises plain Exception on bad files
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TokenizerError(f"{json_path}: tokenizer does not load: {message}") from None
    tok.no_padding()
    tok.no_truncation()
    config = _read_json(folder / "tokenizer_config.json") if folder else {}
    special_map = _read_json(folder / "special_tokens_map.json") if folder else {}

    def pick(key: str) -> str | None:
        return _token_str(config.get(key)) or _token_str(special_map.get(key))

    info = TokenizerInfo(
        tokenizer=tok,
        name=name,
        sha256=hashlib.sha256(raw).hexdigest(),
        config=config,
        bos_token=pick("bos_token"),
        eos_token=pick("eos_token"),
        pad_token=pick("pad_token"),
        source_text=text,
    )
    if eos is not None:
        info.add_special_tokens([eos])
        info.eos_token = eos
    elif info.eos_token is None or tok.token_to_id(info.eos_token) is None:
        found = next((c for c in _EOS_CANDIDATES if tok.token_to_id(c) is not None), None)
        if found is None:
            raise TokenizerError(
                f"{name}: the tokenizer names no end-of-sequence token and has none of "
                f"{', '.join(_EOS_CANDIDATES)}; choose one with --eos TOKEN"
            )
        info.eos_token = found
    info.head_ids, info.tail_ids = _post_processor_ids(tok)
    return info
