"""Token character offsets of a byte-level BPE encoding, from its ids alone.

A chat row needs the character span of every token (:class:`~sftprep.chat.spans.TokenSpans`).
The tokenizer computes them if asked (``encode_batch``), but that costs about as much again as
the encoding itself (``encode_batch_fast``: Llama-3.1 on LIMA, 28 s against 16 s). For a
byte-level BPE (GPT-2, Llama-3, SmolLM, Qwen) they follow from the ids: every vocabulary entry
is one character per byte of text, an added token is its content's UTF-8 bytes, so the token
byte lengths add up to byte offsets, and byte offsets map to the character offsets the tokenizer
reports (a token that holds part of a multi-byte character reports that whole character).

That holds only when nothing moves text between tokens or rewrites it: no normalizer (or NFC,
on text that already is NFC), no post-processor that trims offsets, no added token that strips
whitespace beside it. :func:`byte_level_offsets` checks the tokenizer once and returns None for
any other; a row whose byte lengths do not add up to its text's length is computed by the
tokenizer as before. ``tests/chat/test_offsets.py`` compares both on the real chat data.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np


def _components(tokenizer: Any, name: str) -> dict[str, Any] | None:
    part = getattr(tokenizer, name)
    return None if part is None else json.loads(part.__getstate__())


def _byte_levels(spec: Any) -> list[dict[str, Any]]:
    """Every ``ByteLevel`` component in a (possibly nested) serialized component."""
    if isinstance(spec, dict):
        here = [spec] if spec.get("type") == "ByteLevel" else []
        return here + [b for value in spec.values() for b in _byte_levels(value)]
    if isinstance(spec, list):
        return [b for value in spec for b in _byte_levels(value)]
    return []


class ByteLevelOffsets:
    """Character offsets of a byte-level tokenizer's tokens, from the ids (see the module docstring).

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` that :func:`byte_level_offsets` accepted.
        nfc: the tokenizer normalizes to NFC (rows whose text is not NFC are left to the tokenizer).
    """

    def __init__(self, tokenizer: Any, nfc: bool):
        self.nfc = nfc
        self.tokenizer = tokenizer
        self.added = {i: t.content for i, t in tokenizer.get_added_tokens_decoder().items()}
        size = max(tokenizer.get_vocab_size(with_added_tokens=True), max(self.added, default=-1) + 1)
        # Byte length per id, -1 until the id is first seen: reading the whole vocabulary
        # (get_vocab) would cost a large part of the tokenizer's own load time in every worker.
        self.lengths = np.full(size, -1, dtype=np.int64)

    def _learn(self, ids: np.ndarray) -> bool:
        for i in np.unique(ids[self.lengths[ids] < 0]).tolist():
            token = self.added.get(i)
            if token is not None:
                self.lengths[i] = len(token.encode("utf-8"))
                continue
            token = self.tokenizer.id_to_token(i)
            if token is None:
                return False
            self.lengths[i] = len(token)  # byte-level: one character per byte
        return True

    def __call__(self, text: str, ids: Sequence[int] | np.ndarray) -> np.ndarray | None:
        """The ``(n, 2)`` character offsets of ``ids`` in ``text``, or None if they cannot be told."""
        if self.nfc and not unicodedata.is_normalized("NFC", text):
            return None
        ids = np.asarray(ids)
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self.lengths)):
            return None
        lengths = self.lengths[ids]
        if len(lengths) and lengths.min() < 0:
            if not self._learn(ids):
                return None
            lengths = self.lengths[ids]
        out = np.empty((len(ids), 2), dtype=np.int64)
        ends = np.cumsum(lengths, out=out[:, 1])
        total = int(ends[-1]) if len(ends) else 0
        starts = np.subtract(ends, lengths, out=out[:, 0])
        if text.isascii():
            return out if total == len(text) else None
        data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        if total != len(data) or (len(starts) and starts[-1] >= len(data)):
            return None  # (an empty token at the very end: nothing to map it to)
        # The character of byte p is p less the continuation bytes up to p (a token that
        # holds part of a multi-byte character reports that whole character).
        tails = np.flatnonzero((data & 0xC0) == 0x80)
        last = np.maximum(ends - 1, 0)
        empty = ends == starts
        out[:, 0] = starts - np.searchsorted(tails, starts, side="right")
        out[:, 1] = last - np.searchsorted(tails, last, side="right") + 1
        if empty.any():  # an empty token sits at its start, as the tokenizer reports it
            out[empty, 1] = out[empty, 0]
        return out


def byte_level_offsets(tokenizer: Any) -> ByteLevelOffsets | None:
    """A :class:`ByteLevelOffsets` for ``tokenizer``, or None if its offsets need the tokenizer."""
    try:
        normalizer = _components(tokenizer, "normalizer")
        pre, decoder = _components(tokenizer, "pre_tokenizer"), _components(tokenizer, "decoder")
        post = _components(tokenizer, "post_processor")
    except (AttributeError, TypeError, ValueError):
        return None
    if normalizer is not None and normalizer.get("type") != "NFC":
        return None
    if not _byte_levels(pre) or (decoder or {}).get("type") != "ByteLevel":
        return None
    if any(b.get("trim_offsets") for b in _byte_levels(post)):
        return None
    added = tokenizer.get_added_tokens_decoder().values()
    if any(t.lstrip or t.rstrip for t in added):
        return None
    return ByteLevelOffsets(tokenizer, nfc=normalizer is not None)
