"""Where a chat conversation's turns sit: in the rendered text (characters) and in its tokens.

The pieces :class:`~sftprep.chat.encoder.ChatEncoder` works with: a :class:`Plan` of one row (its
rendered text and each trained assistant turn's character span), :class:`TokenSpans` (character
spans -> token ranges, by the tokenizer's offsets), what ``inspect`` is shown
(:class:`ChatLayout`, :class:`ChatTurn`) and the batch of rows an encode returns
(:class:`ChatBatch`).

Example: ``common_prefix("<|im_start|>user", "<|im_start|>assistant") -> 12``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sftprep.encode import EncodedBatch, RowRejected


def common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix, by bisection on C-level slice compares."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass
class Plan:
    """Where each message of a conversation sits in its rendered text (characters)."""

    text: str
    trained: list[bool]  # per message
    ends: list[int | None]  # end of each message's text in ``text`` (None: unknown)
    soft: list[bool]  # the end is a common-prefix estimate: snap it to a token start
    spans: dict[int, tuple[int, int, int]]  # assistant message -> (start, end, end of its content)
    generation: list[tuple[int, int]] | None = None  # {% generation %} spans, when checked
    turn: int | None = None  # the one trained message of a ``--turns each`` row
    reasoning_dropped: int = 0  # trained turns whose reasoning the render does not show
    empty_reasoning: int = 0  # trained turns rendered with an empty think block


@dataclass
class ChatTurn:
    """One message of a :class:`ChatLayout`.

    Attributes:
        index / role: the message's position and role.
        chars: its part of the rendered text (header, content, end marker), or None if unknown.
        trained: the token range ``[start, stop)`` trained for it, or None.
    """

    index: int
    role: str
    chars: tuple[int, int] | None
    trained: tuple[int, int] | None


@dataclass
class ChatLayout:
    """A conversation as rendered and tokenized, before truncation: what ``inspect`` shows."""

    text: str
    ids: np.ndarray
    offsets: np.ndarray  # (n, 2) character offsets of each token
    trained: np.ndarray  # bool per token (a row's first token is never trained by labels.py)
    turns: list[ChatTurn] = field(default_factory=list)
    turn: int | None = None  # the trained message of a ``--turns each`` row
    reasoning: list[tuple[int, int]] = field(default_factory=list)  # think blocks of trained turns (tokens)


class TokenSpans:
    """Token offsets of one text, and how character spans become token ranges."""

    def __init__(self, text: str, offsets: Sequence[tuple[int, int]] | np.ndarray):
        self.text = text
        self.offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        self.starts = self.offsets[:, 0]
        self.ends = self.offsets[:, 1]

    def snap(self, pos: int) -> int:
        """``pos`` moved back to the start of the token that straddles it, if any."""
        t = int(np.searchsorted(self.ends, pos, side="right"))
        return int(self.starts[t]) if t < len(self.starts) and self.starts[t] < pos else pos

    def range(self, start: int, end: int, what: str) -> tuple[int, int]:
        """Tokens ``[t0, t1)`` that cover the characters ``[start, end)``.

        A token that crosses an edge only by whitespace goes with its other characters;
        any other crossing is a ``span_token_merge``.
        """
        t0 = int(np.searchsorted(self.ends, start, side="right"))  # first token ending after start
        if t0 < len(self.starts) and self.starts[t0] < start:
            if self.text[start : min(int(self.ends[t0]), end)].strip():
                raise RowRejected("span_token_merge", self._merge(t0, start, what))
            t0 += 1  # e.g. phi-3's <|assistant|> took the content's leading spaces
        t1 = int(np.searchsorted(self.starts, end, side="left"))  # tokens starting before end
        if t1 > 0 and self.ends[t1 - 1] > end and self.text[end : int(self.ends[t1 - 1])].strip():
            raise RowRejected("span_token_merge", self._merge(t1 - 1, end, what))
        return t0, max(t0, t1)

    def _merge(self, t: int, edge: int, what: str) -> str:
        a, b = int(self.starts[t]), int(self.ends[t])
        return (
            f"{what}: token {t} ({self.text[a:b]!r}) crosses the edge of the trained text at "
            f"{self.text[max(0, edge - 20) : edge]!r}|{self.text[edge : edge + 20]!r}; the tokenizer "
            "merges the template's text with the message's"
        )


@dataclass
class ChatBatch(EncodedBatch):
    """An :class:`~sftprep.encode.EncodedBatch` whose rows also name their turn.

    ``turns[i]`` is the trained message of a ``--turns each`` row, -1 for a row that is a whole
    conversation.
    """

    turns: np.ndarray | None = None


def chat_batch(rows, rejected, dropped, counts) -> ChatBatch:
    """The rows of one encode as a :class:`ChatBatch`.

    Args:
        rows: ``(conversation index, ids, trained flags, truncated, plan)`` per row, in order.
        rejected / dropped / counts: as :class:`~sftprep.encode.EncodedBatch` holds them.
    """
    lengths = np.fromiter((len(r[1]) for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    empty_ids, empty_flags = np.zeros(0, np.int32), np.zeros(0, bool)
    trained = np.concatenate([r[2] for r in rows]) if rows else empty_flags
    # prompt_lens: leading untrained tokens per row (labels.py reads ``trained`` instead).
    firsts = [int(np.argmax(r[2])) if r[2].any() else len(r[2]) for r in rows]
    return ChatBatch(
        turns=np.asarray([-1 if r[4].turn is None else r[4].turn for r in rows], dtype=np.int32),
        ids=np.concatenate([r[1] for r in rows]) if rows else empty_ids,
        offsets=offsets,
        prompt_lens=np.asarray(firsts, dtype=np.int64),
        index=np.asarray([r[0] for r in rows], dtype=np.int64),
        truncated=np.asarray([r[3] for r in rows], dtype=bool),
        boundary_adjusted=np.zeros(len(rows), dtype=bool),
        rejected=rejected,
        trained=trained,
        dropped=dropped,
        counts=counts,
    )
