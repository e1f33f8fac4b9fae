"""Where the prompt ends in a jointly tokenized row, without token offsets.

Offsets cost the tokenizer about a quarter of its time (``encode_batch`` vs
``encode_batch_fast``). For the two tokenizer families that cover most models
the same answer comes from token lengths instead:

* byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM): every token stands for a
  fixed string of bytes of the input;
* SentencePiece-style BPE whose normalizer only prepends "▁" and replaces
  characters (Llama 2, Mistral, Phi-3): every token stands for a fixed string
  of the *normalized* input, and the normalized prompt is a prefix of the
  normalized row.

So a table ``piece_bytes[id]`` of those lengths, summed along a row, reaches
the prompt's (normalized) byte length exactly at a token boundary if and only
if no token straddles the boundary -- the same test ``encode.py`` makes with
offsets. Rows holding a token whose length is not fixed (added tokens such as
``<|im_end|>`` in the text, ``<unk>``) are left to the offsets path, and so
are tokenizers of any other kind. A self-check at start-up compares both paths
on probe strings and turns this one off if they ever disagree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from tokenizers import Tokenizer

_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


class PieceLengths:
    """Byte length of the (normalized) text each token id stands for.

    Build with :meth:`for_tokenizer`, which returns None for tokenizers this
    does not apply to.
    """

    def __init__(self, tok: Tokenizer, lengths: np.ndarray, fixed: np.ndarray, normalize: bool,
                 steps: list[tuple[str, str, str]] | None = None):  # fmt: skip
        self.tok = tok
        self.lengths = lengths  # int64 per id
        self.fixed = fixed  # bool per id: False for ids whose length is unknown (added tokens, unk)
        self.normalize = normalize
        # The normalizer as str operations (see Normalizer), when it gives the tokenizer's answers.
        self.replica = Normalizer(steps) if steps is not None else None
        if self.replica is not None and not self.replica.agrees_with(tok):
            self.replica = None

    @classmethod
    def for_tokenizer(cls, tok: Tokenizer, data: dict[str, Any] | None = None) -> PieceLengths | None:
        """The table for ``tok``, or None when its family is not covered.

        ``data`` is the tokenizer's JSON when the caller has it parsed already
        (only its model, normalizer, pre-tokenizer and decoder are read, which
        adding special tokens does not change).
        """
        data = json.loads(tok.to_str()) if data is None else data
        model = data.get("model") or {}
        if model.get("type") != "BPE":
            return None
        kind = _family(data)
        if kind is None:
            return None
        size = tok.get_vocab_size(with_added_tokens=True)
        lengths = np.zeros(size, dtype=np.int64)
        fixed = np.zeros(size, dtype=bool)
        for piece, i in model["vocab"].items():
            if i >= size:
                continue
            if kind == "bytelevel":
                lengths[i] = len(piece)  # one character of the byte alphabet per byte
            else:
                lengths[i] = 1 if _BYTE_PIECE.match(piece) else len(piece.encode("utf-8"))
            fixed[i] = True
        for i in tok.get_added_tokens_decoder():
            fixed[i] = False
        if model.get("unk_token") is not None and tok.token_to_id(model["unk_token"]) is not None:
            fixed[tok.token_to_id(model["unk_token"])] = False
        normalize = kind == "sentencepiece"
        return cls(
            tok, lengths, fixed, normalize, normalizer_steps(data.get("normalizer")) if normalize else None
        )

    def text_bytes(self, prompt: str) -> int:
        """The byte length of the prompt in the space the pieces are measured in."""
        if self.normalize:
            if self.replica is not None:
                return len(self.replica(prompt).encode("utf-8"))
            assert self.tok.normalizer is not None
            return len(self.tok.normalizer.normalize_str(prompt).encode("utf-8"))
        return len(prompt) if prompt.isascii() else len(prompt.encode("utf-8"))  # isascii is O(1)

    def prompt_token_counts(
        self, flat: np.ndarray, starts: np.ndarray, prompts: Sequence[str], n_head: int, n_tail: int
    ) -> np.ndarray:
        """For each row, how many tokens (head included) the prompt is, or -1 if unknown.

        Rows are ``flat[starts[i]:starts[i+1]]`` (see :func:`sftprep.arrays.flatten`). -1 means:
        a token straddles the boundary, or the row holds a token of unknown
        length; the caller then uses offsets.
        """
        n = len(starts) - 1
        lengths = np.diff(starts)
        piece = self.lengths[flat]
        unknown = ~self.fixed[flat]
        # The post-processor's own tokens (BOS before, maybe EOS after) cover no text.
        for pos in [starts[:-1] + h for h in range(n_head)] + [starts[1:] - 1 - t for t in range(n_tail)]:
            pos = pos[(pos >= starts[:-1]) & (pos < starts[1:])]
            piece[pos] = 0
            unknown[pos] = False
        cum = np.cumsum(piece)
        before = np.concatenate(([0], cum))[starts[:-1]]  # text bytes before each row
        want = before + np.fromiter((self.text_bytes(p) for p in prompts), dtype=np.int64, count=n)
        # The first token after which `want` bytes are covered; a prompt of 0 bytes ends after the head.
        idx = np.searchsorted(cum, want, side="left")
        inside = idx < starts[1:]
        hit = inside & (cum[np.minimum(idx, len(cum) - 1)] == want) if len(cum) else np.zeros(n, bool)
        counts = np.where(hit, idx + 1 - starts[:-1], -1)
        empty_prompt = want == before
        counts = np.where(empty_prompt, n_head, counts)
        unknown_before = np.concatenate(([0], np.cumsum(unknown)))
        row_unknown = unknown_before[starts[1:]] > unknown_before[starts[:-1]]
        counts[row_unknown | (lengths == 0)] = -1
        return counts


class Normalizer:
    """A normalizer of Prepend and Replace(String) steps, applied with Python's own str methods.

    The tokenizer's ``normalize_str`` is a call into Rust per prompt, which for
    a SentencePiece-style tokenizer took about 5% of a build; ``str.replace``
    does the same replacement (every non-overlapping occurrence, left to right)
    in a fraction of that. :meth:`agrees_with` checks it against the tokenizer
    first, on texts that exercise both steps.
    """

    PROBES = ("", " ", "  two  spaces ", "Hello world", "\tTab\nnew line", "Grüße aus Köln 🙂",
              "▁already▁marked", "日本語 のテキスト", "Question: What is 2+2? Answer:", "x   y")  # fmt: skip

    def __init__(self, steps: list[tuple[str, str, str]]):
        self.steps = steps

    def __call__(self, text: str) -> str:
        for kind, a, b in self.steps:
            if kind == "replace":
                text = text.replace(a, b)
            elif text:  # Prepend leaves an empty text empty
                text = a + text
        return text

    def agrees_with(self, tok: Tokenizer) -> bool:
        normalizer = tok.normalizer
        if normalizer is None:
            return False
        return all(self(text) == normalizer.normalize_str(text) for text in self.PROBES)


def normalizer_steps(normalizer: dict | None) -> list[tuple[str, str, str]] | None:
    """The normalizer as (kind, a, b) steps, or None when it has any other kind of step."""
    steps = []
    for part in _parts(normalizer):
        if part.get("type") == "Prepend" and isinstance(part.get("prepend"), str):
            steps.append(("prepend", part["prepend"], ""))
        elif part.get("type") == "Replace" and (pattern := part.get("pattern", {}).get("String")):
            if not isinstance(part.get("content"), str):
                return None
            steps.append(("replace", pattern, part["content"]))
        else:
            return None
    return steps or None


def _family(data: dict) -> str | None:
    """Which length rule applies, from the tokenizer's JSON."""
    normalizer, pre, decoder = data.get("normalizer"), data.get("pre_tokenizer"), data.get("decoder")
    if normalizer is None and _has(pre, "ByteLevel") and _has(decoder, "ByteLevel"):
        if any(p.get("add_prefix_space") for p in _parts(pre) if p.get("type") == "ByteLevel"):
            return None  # the added space would belong to the prompt's first token
        return "bytelevel"
    if pre is None and data["model"].get("byte_fallback") and normalizer is not None:
        allowed = all(
            p.get("type") in ("Prepend", "Replace")
            and (p.get("type") != "Replace" or "String" in p.get("pattern", {}))
            for p in _parts(normalizer)
        )
        return "sentencepiece" if allowed else None
    return None


def _parts(component: dict | None) -> list[dict]:
    if component is None:
        return []
    for key in ("normalizers", "pretokenizers", "decoders", "processors"):
        if key in component:
            return [p for c in component[key] for p in _parts(c)]
    return [component]


def _has(component: dict | None, kind: str) -> bool:
    return any(p.get("type") == kind for p in _parts(component))
