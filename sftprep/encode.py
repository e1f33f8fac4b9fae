"""Tokenize (prompt, target) pairs into one id sequence each, with the prompt length.

This is where the label convention's promise is kept: in every row,

* the prompt's ids are exactly the ids the tokenizer gives for the prompt text
  alone, with the special tokens its post-processor adds (``<s>`` for Mistral)
  -- what the model sees at inference;
* the target's ids follow, then the EOS id (unless the target text already
  ends with the EOS token); nothing else is trained.

Tokenizing the prompt and the whole text separately would cost a second pass
over every prompt, so each pair is tokenized once, jointly, with offsets. If
the token that contains the first character of the target starts exactly at
the target, no token straddles the boundary and the tokens before it are the
prompt's own tokens: BPE merges inside a pre-token happen pair by pair, and a
merge across the boundary would have produced a straddling token. (A test
checks this claim on every row of the real datasets, and ``--verify-prompts``
checks it at build time.)

When a token does straddle the boundary (a *boundary merge*: the prompt ends
without a separator, as in ``"Answer: "`` + ``"Paris"``), the prompt is
tokenized alone and the target's part is the text the straddling token covered,
tokenized on its own, followed by the joint tokens after it. The row is
flagged ``boundary_adjusted`` and counted. If that re-tokenization would not
reproduce the text exactly, the record is rejected (``boundary_merge``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from sftprep.arrays import flatten, ranges
from sftprep.boundary import PieceLengths
from sftprep.options import (
    TRUNCATE_DROP,
    TRUNCATE_PROMPT,
    TRUNCATE_TARGET,
    TRUNCATION_POLICIES,  # noqa: F401 (its old home: still importable here)
)
from sftprep.tokenizer import TokenizerInfo

# Pairs whose boundary both rules must agree on: plain, merged, multi-byte,
# whitespace runs, digits, an empty prompt.
_PROBES = [
    ("Question: What is 2+2? Answer:", " 4"),
    ("Answer: ", "Paris"),
    ("Answer:", "Paris"),
    ("Grüße aus Köln", " 🙂 ja"),
    ("x\n\n", "\n  indented"),
    ("", "only a target"),
    ("Total: 12", "34 units"),
    ("日本語の", "テキスト"),
]
_ANCHOR = "\n"  # a character no tokenizer merges with a following letter


@dataclass(frozen=True)
class EncodeOptions:
    """How pairs become id sequences.

    Attributes:
        max_length: longest row in tokens, or None for no limit.
        truncation: what to do with a longer row (see ``TRUNCATION_POLICIES``).
        verify_prompts: also tokenize every prompt alone and compare (slower).
    """

    max_length: int | None = None
    truncation: str = TRUNCATE_PROMPT
    verify_prompts: bool = False


@dataclass
class EncodedBatch:
    """The encoded rows of a batch, as flat arrays.

    ``ids[offsets[i]:offsets[i+1]]`` is row ``i``; its first ``prompt_lens[i]``
    tokens are not trained. Encoders whose rows train several spans (chat:
    every assistant turn) set ``trained``, one flag per flat token, instead;
    ``prompt_lens`` then holds each row's count of leading untrained tokens. ``index[i]`` is the row's position in the input
    batch; pairs that produced no row are listed in ``rejected`` (position,
    reason, message) or counted in ``dropped``.
    """

    ids: np.ndarray
    offsets: np.ndarray
    prompt_lens: np.ndarray
    index: np.ndarray
    truncated: np.ndarray
    boundary_adjusted: np.ndarray
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    trained: np.ndarray | None = None
    dropped: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.index)


class RowRejected(Exception):
    """Raised inside an encoder for one row that cannot be written; becomes a ``rejected`` entry."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class RowDropped(Exception):
    """Raised inside an encoder for a row that ``--truncation drop`` leaves out."""


T = TypeVar("T")
R = TypeVar("R")


def encode_rows(
    items: Iterable[tuple[int, T]],
    encode_one: Callable[[T], R],
    rejected: list[tuple[int, str, str]],
    dropped: list[int],
) -> list[tuple[int, R]]:
    """Apply ``encode_one`` to each ``(index, item)``; keep results, note rejections and drops.

    Both encoders (pairs and chat) turn one row's :class:`RowRejected` into a
    ``rejected`` entry and its :class:`RowDropped` into a ``dropped`` one here.
    """
    kept: list[tuple[int, R]] = []
    for i, item in items:
        try:
            kept.append((i, encode_one(item)))
        except RowRejected as exc:
            rejected.append((i, exc.reason, str(exc)))
        except RowDropped:
            dropped.append(i)
    return kept


def _strip_tail(ids: list[int], tail: list[int]) -> list[int]:
    if tail and ids[-len(tail) :] == tail:
        return ids[: -len(tail)]
    return ids


def _prompt_split(enc, boundary: int, n_head: int) -> int | None:
    """Index of the first target token, or None when a token straddles the boundary."""
    k = enc.char_to_token(boundary)
    if k is None or k < n_head:
        return None
    start, _ = enc.token_to_chars(k)
    return k if start == boundary else None


class Encoder:
    """Turns batches of (prompt, target) strings into :class:`EncodedBatch` rows."""

    def __init__(self, info: TokenizerInfo, options: EncodeOptions):
        self.info = info
        self.options = options
        self.tok = info.tokenizer
        self.head = list(info.head_ids)
        self.tail = list(info.tail_ids)
        self.eos = info.eos_id
        self.bos = info.bos_id
        # Without offsets where token lengths tell the boundary (see boundary.py);
        # --verify-prompts checks every row against the prompt tokenized alone instead.
        self.pieces = (
            None if options.verify_prompts else PieceLengths.for_tokenizer(self.tok, info.source_json)
        )
        if self.pieces is not None and not self._pieces_agree():
            self.pieces = None

    def _pieces_agree(self) -> bool:
        """The fast boundary rule gives the offsets rule's answer on probe pairs."""
        prompts = [p for p, _ in _PROBES]
        joint = [p + t for p, t in _PROBES]
        rows = [_strip_tail(e.ids, self.tail) + self.tail for e in self.tok.encode_batch_fast(joint)]
        assert self.pieces is not None
        fast = self.pieces.prompt_token_counts(
            *flatten(rows), prompts, len(self.head), len(self.tail)
        ).tolist()
        for (prompt, _), enc, k in zip(_PROBES, self.tok.encode_batch(joint), fast, strict=True):
            exact = _prompt_split(enc, len(prompt), len(self.head))
            if k != (-1 if exact is None else exact):
                return False
        return True

    def encode(self, prompts: Sequence[str], targets: Sequence[str]) -> EncodedBatch:
        """Encode a batch. Per-pair problems become ``rejected``/``dropped`` entries.

        Most rows need nothing but their tail stripped and the EOS appended, which
        is done for all of them at once (:meth:`_plain_rows`); the others (boundary
        unknown or merged, double BOS, too long) go one by one through ``one_row``.
        """
        joint = [p + t for p, t in zip(prompts, targets, strict=True)]
        if self.pieces is not None:
            encodings = self.tok.encode_batch_fast(joint, add_special_tokens=True)
        else:
            encodings = self.tok.encode_batch(joint, add_special_tokens=True)
        all_ids = [e.ids for e in encodings]
        flat, starts = flatten(all_ids)
        if self.pieces is not None:
            known = self.pieces.prompt_token_counts(flat, starts, prompts, len(self.head), len(self.tail))
        else:
            known = np.full(len(joint), -1, dtype=np.int64)
        body, eos_in_text, plain = self._plain_rows(flat, starts, known)
        alone = None
        if self.options.verify_prompts:
            alone = self.tok.encode_batch_fast(list(prompts), add_special_tokens=True)
        rejected: list[tuple[int, str, str]] = []
        dropped: list[int] = []
        counts = {"boundary_adjusted": 0, "truncated": 0, "eos_in_text": 0, "double_bos_removed": 0}

        def one_row(i: int) -> tuple[list[int], int, bool, bool]:
            ids = _strip_tail(all_ids[i], self.tail)
            if known[i] >= 0:
                n_prompt, was_adjusted = int(known[i]), False
            else:
                enc = encodings[i] if self.pieces is None else self.tok.encode(joint[i])
                ids, n_prompt, was_adjusted = self._split(enc, ids, prompts[i], joint[i], alone, i)
            ids, n_prompt = self._fix_specials(ids, n_prompt, counts)
            ids, n_prompt, was_truncated = self._truncate(ids, n_prompt)
            return ids, n_prompt, was_adjusted, was_truncated

        others = dict(
            encode_rows(((i, i) for i in np.flatnonzero(~plain).tolist()), one_row, rejected, dropped)
        )
        counts["eos_in_text"] += int(eos_in_text[plain].sum())
        return self._assemble(
            flat, starts, body, eos_in_text, plain, known, others, rejected, dropped, counts
        )

    def _plain_rows(self, flat: np.ndarray, starts: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per row: its length without the post-processor's tail, whether its text ends
        with the EOS already, and whether it is *plain*: boundary known, no double
        BOS, no truncation needed (every case ``one_row`` in :meth:`encode` handles otherwise)."""
        lengths = np.diff(starts)
        if len(flat) == 0:  # only empty rows: none is plain (their boundary is unknown)
            none = np.zeros(len(lengths), dtype=bool)
            return lengths, none, none

        def at(positions: np.ndarray) -> np.ndarray:
            # Ids at these positions; a position outside a short row is clipped and masked by the caller.
            return flat[np.clip(positions, 0, len(flat) - 1)]

        n_tail = len(self.tail)
        has_tail = lengths >= n_tail
        for t, tail_id in enumerate(self.tail):
            has_tail &= at(starts[1:] - n_tail + t) == tail_id
        body = lengths - n_tail * has_tail
        eos_in_text = (body > known) & (at(starts[:-1] + body - 1) == self.eos)
        plain = known >= 0
        if self.bos is not None:
            plain &= ~((body > 1) & (at(starts[:-1]) == self.bos) & (at(starts[:-1] + 1) == self.bos))
        if self.options.max_length is not None:
            plain &= body + ~eos_in_text <= self.options.max_length
        return body, eos_in_text, plain

    def _assemble(self, flat, starts, body, eos_in_text, plain, known, others, rejected, dropped, counts):
        """The batch's rows in input order: plain rows gathered from ``flat``, the others as made."""
        index = np.union1d(np.flatnonzero(plain), np.fromiter(others, dtype=np.int64, count=len(others)))
        is_plain = plain[index]
        out_len = np.where(is_plain, body[index] + ~eos_in_text[index], 0)
        prompt_lens = np.where(is_plain, known[index], 0)
        adjusted = np.zeros(len(index), dtype=bool)
        truncated = np.zeros(len(index), dtype=bool)
        for k in np.flatnonzero(~is_plain).tolist():
            ids, n_prompt, adjusted[k], truncated[k] = others[int(index[k])]
            out_len[k], prompt_lens[k] = len(ids), n_prompt
        offsets = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(out_len, out=offsets[1:])
        ids = np.empty(int(offsets[-1]), dtype=np.int32)
        rows = np.flatnonzero(is_plain)
        src, n = starts[index[rows]], body[index[rows]]
        ids[ranges(offsets[rows], n)] = flat[ranges(src, n)]
        append = rows[~eos_in_text[index[rows]]]
        ids[offsets[append] + body[index[append]]] = self.eos
        for k in np.flatnonzero(~is_plain).tolist():
            ids[offsets[k] : offsets[k + 1]] = others[int(index[k])][0]
        counts["boundary_adjusted"] += int(adjusted.sum())
        counts["truncated"] += int(truncated.sum())
        return EncodedBatch(ids=ids, offsets=offsets, prompt_lens=prompt_lens, index=index,
                            truncated=truncated, boundary_adjusted=adjusted, rejected=rejected, dropped=dropped,
                            counts=counts)  # fmt: skip

    def _split(
        self, enc, ids: list[int], prompt: str, joint: str, alone, i: int
    ) -> tuple[list[int], int, bool]:
        """With offsets: return (ids, prompt length, boundary adjusted?)."""
        k = _prompt_split(enc, len(prompt), len(self.head))
        if k is not None and (alone is None or _strip_tail(alone[i].ids, self.tail) == ids[:k]):
            return ids, k, False
        new_ids, n_prompt = self._adjust_boundary(enc, ids, prompt, joint)
        return new_ids, n_prompt, True

    def _adjust_boundary(self, enc, ids: list[int], prompt: str, joint: str) -> tuple[list[int], int]:
        """Rebuild a row whose prompt and target merged into one token (see module doc)."""
        boundary = len(prompt)
        prompt_ids = _strip_tail(self.tok.encode(prompt, add_special_tokens=True).ids, self.tail)
        offsets = enc.offsets
        first_after = next(
            (j for j in range(len(self.head), len(ids)) if offsets[j][0] >= boundary), len(ids)
        )
        fragment_end = offsets[first_after][0] if first_after < len(ids) else len(joint)
        fragment = joint[boundary:fragment_end]
        expected = self.tok.decode(ids, skip_special_tokens=False)
        for fragment_ids in self._fragment_candidates(fragment):
            new_ids = prompt_ids + fragment_ids + ids[first_after:]
            if self.tok.decode(new_ids, skip_special_tokens=False) == expected:
                break
        else:
            raise RowRejected(
                "boundary_merge",
                "the prompt's last token merges with the target's first, and the target "
                f"cannot be tokenized apart without changing its text (near {fragment!r}); "
                "end the prompt with a separator the tokenizer keeps apart",
            )
        return new_ids, len(prompt_ids)

    def _fragment_candidates(self, fragment: str) -> Iterator[list[int]]:
        """Ways to tokenize the start of a target on its own, most natural first.

        Tokenized alone, a SentencePiece-style tokenizer prepends "▁" to the
        fragment; after an anchor ("\n") it does not, and the anchor's own
        tokens are cut off again. The caller keeps the first candidate whose
        row decodes to the same text.
        """
        if not fragment:
            yield []
            return
        yield self.tok.encode(fragment, add_special_tokens=False).ids
        anchor = self.tok.encode(_ANCHOR, add_special_tokens=False).ids
        anchored = self.tok.encode(_ANCHOR + fragment, add_special_tokens=False).ids
        if anchored[: len(anchor)] == anchor:
            yield anchored[len(anchor) :]

    def _fix_specials(self, ids: list[int], n_prompt: int, counts: dict[str, int]) -> tuple[list[int], int]:
        """No double BOS, exactly one EOS at the end."""
        if self.bos is not None and len(ids) > 1 and ids[0] == self.bos and ids[1] == self.bos:
            ids = ids[1:]  # the text began with BOS and the post-processor added another
            n_prompt -= 1
            counts["double_bos_removed"] += 1
        if len(ids) > n_prompt and ids[-1] == self.eos:
            counts["eos_in_text"] += 1  # the target text ends with the EOS token already
        else:
            ids = [*ids, self.eos]
        return ids, n_prompt

    def _truncate(self, ids: list[int], n_prompt: int) -> tuple[list[int], int, bool]:
        limit = self.options.max_length
        if limit is None or len(ids) <= limit:
            return ids, n_prompt, False
        policy = self.options.truncation
        if policy == TRUNCATE_DROP:
            raise RowDropped()
        if policy == TRUNCATE_TARGET:
            if n_prompt >= limit:
                raise RowRejected(
                    "no_trained_token",
                    f"the prompt alone is {n_prompt} tokens, not shorter than --max-length "
                    f"{limit}: truncating the target leaves nothing to train",
                )
            return ids[:limit], n_prompt, True
        # TRUNCATE_PROMPT: keep the head specials (BOS) and the whole target.
        n_head = len(self.head)
        n_target = len(ids) - n_prompt
        room = limit - n_target - n_head
        if room < 1:
            raise RowRejected(
                "target_too_long",
                f"the target is {n_target} tokens with EOS; with --max-length {limit} no "
                "prompt token would be left (use --truncation target to cut the target, or "
                "raise --max-length)",
            )
        keep_prompt = ids[:n_head] + ids[n_prompt - room : n_prompt]
        return keep_prompt + ids[n_prompt:], len(keep_prompt), True
