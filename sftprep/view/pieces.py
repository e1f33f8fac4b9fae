"""Token strings: vocabulary pieces and decoded text per token, with invisible characters made visible."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer

# Characters that would be invisible or would break the layout: control characters,
# odd spaces (U+00A0, U+2028, ...), zero-width characters, the BOM.
_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\xa0\xad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u2000-\u200f"
    "\u2028-\u202f\u205f-\u206f\u3000\u3164\ufeff]"
)
_SHOWN = {"\n": "↵", "\t": "⇥", "\r": "␍"}


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


def visible(text: str, newlines: bool = True) -> list[tuple[str, bool]]:
    """Split text into (piece, is_escape) parts with whitespace made visible.

    ``"a\\tb\\n"`` -> ``[("a", False), ("⇥", True), ("b", False), ("↵", True), ("\\n", False)]``:
    a newline shows as ``↵`` and, with ``newlines``, still breaks the line.
    """
    parts: list[tuple[str, bool]] = []
    pos = 0
    for match in _INVISIBLE.finditer(text):
        if match.start() > pos:
            parts.append((text[pos : match.start()], False))
        ch = match.group(0)
        parts.append((_SHOWN.get(ch) or _escape(ch), True))
        if ch == "\n" and newlines:
            parts.append(("\n", False))
        pos = match.end()
    if pos < len(text):
        parts.append((text[pos:], False))
    return parts


def escape_piece(piece: str) -> str:
    """A vocabulary piece on one line: ``"Ġworld"``, ``"▁the"``, ``"<0x0A>"`` stay; ``"\\n"`` -> ``\\n``."""
    out = piece.replace(" ", "␣")
    return _INVISIBLE.sub(
        lambda m: {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(m.group(0)) or _escape(m.group(0)), out
    )


class Pieces:
    """Token strings: vocabulary pieces and decoded text, per token.

    Args:
        tokenizer: the build's tokenizer, or None to show bare ids.
    """

    def __init__(self, tokenizer: Tokenizer | None):
        self.tok = tokenizer
        decoder = tokenizer.get_added_tokens_decoder() if tokenizer else {}
        self.special = {i for i, t in decoder.items() if t.special}

    def vocab(self, ids: Sequence[int] | np.ndarray) -> list[str | None]:
        """The vocabulary piece of each id (None for ids the tokenizer does not have)."""
        if self.tok is None:
            return [None] * len(ids)
        return [self.tok.id_to_token(int(i)) for i in ids]

    def texts(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """The text each token adds when the row is decoded; ``"".join(...)`` is the decoded row.

        Decoding token by token would cut multi-byte characters in half (byte-level
        BPE splits "世" over two tokens); a decode stream gives the character to the
        token that completes it, and "" to the ones before.
        """
        if self.tok is None:
            return [f" {int(i)}" if k else str(int(i)) for k, i in enumerate(ids)]
        try:
            from tokenizers.decoders import DecodeStream
        except ImportError:  # tokenizers < 0.21: close, but cuts characters split over tokens
            return [self.tok.decode([int(i)], skip_special_tokens=False) for i in ids]
        stream = DecodeStream(skip_special_tokens=False)
        out = []
        for i in ids:
            try:
                out.append(stream.step(self.tok, int(i)) or "")
            except Exception:  # an id outside the vocabulary: show it, start afresh
                out.append(f"<id {int(i)}?>")
                stream = DecodeStream(skip_special_tokens=False)
        return out
