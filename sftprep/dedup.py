"""Exact deduplication and n-gram decontamination, with state bounded by hashes.

* :class:`ExactDedup` keeps one 64-bit content key per distinct example (see
  ``mixture.content_key``), never the text, in sorted numpy arrays: 8 bytes per
  distinct example (8 MB per million), briefly up to about 20 while its two
  largest runs merge. A Python set of ints held about 70 bytes per key.
* :class:`NgramIndex` holds the 64-bit hashes of every word n-gram (n = 13 by
  default, as in GPT-3's and open-instruct's decontamination) of the prompts and
  targets of the evaluation files; a training example is contaminated when one
  of its own n-grams is in the set. Memory is about 60 bytes per distinct
  evaluation n-gram (roughly one per evaluation word), independent of the
  training data. Words are runs of letters and digits, compared lowercased, so
  punctuation and spacing do not hide an overlap. A text shorter than n words
  has no n-gram and neither contaminates nor is contaminated.

Example with ``n = 3``: the evaluation text "What is the capital of France?"
has the 3-grams (what is the), (is the capital), (the capital of), (capital of
france); the training prompt "Tell me: what is the capital of Peru" shares
(what is the) and is dropped.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

import numpy as np

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """``"What's up?"`` -> ``["what", "s", "up"]``."""
    return _WORD.findall(text.lower())


def _gram_hash(gram: list[str]) -> int:
    return int.from_bytes(hashlib.blake2b(" ".join(gram).encode(), digest_size=8).digest(), "little")


def ngram_hashes(text: str, n: int) -> Iterable[int]:
    """The 64-bit hashes of the text's word n-grams, in order."""
    w = words(text)
    return (_gram_hash(w[i : i + n]) for i in range(len(w) - n + 1))


class ExactDedup:
    """Remembers content keys; :meth:`seen_many` says which keys came before (and records them).

    The keys live in a few sorted ``uint64`` arrays ("runs", as in a log-structured
    merge): each call adds its new keys as one run, and a run is merged into the one
    before it while that one is less than twice its size, so there are at most about
    log2(keys) runs and each key is copied O(log keys) times in all. A lookup is a
    binary search per run. Memory is the keys themselves, 8 bytes each (:attr:`nbytes`).
    """

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(run) for run in self.runs)

    @property
    def nbytes(self) -> int:
        """The bytes the keys occupy (the arrays' buffers)."""
        return sum(run.nbytes for run in self.runs)

    def seen(self, key: int) -> bool:
        """Whether ``key`` came before; records it. (One key at a time: use :meth:`seen_many`.)"""
        return bool(self.seen_many(np.array([key], dtype=np.uint64))[0])

    def seen_many(self, keys: np.ndarray) -> np.ndarray:
        """Per key, in order: whether it came before, in an earlier call or earlier in ``keys``.

        Example: ``seen_many([1, 2, 1])`` -> ``[False, False, True]``, then
        ``seen_many([2, 3])`` -> ``[True, False]``.
        """
        keys = np.asarray(keys, dtype=np.uint64)
        distinct, first = np.unique(keys, return_index=True)
        old = np.zeros(len(distinct), dtype=bool)
        for run in self.runs:
            at = np.minimum(np.searchsorted(run, distinct), len(run) - 1)
            old |= run[at] == distinct
        seen = np.ones(len(keys), dtype=bool)
        seen[first[~old]] = False
        if not old.all():
            self.runs.append(distinct[~old])  # np.unique's output is sorted
            while len(self.runs) > 1 and len(self.runs[-2]) < 2 * len(self.runs[-1]):
                merged = np.concatenate(self.runs[-2:])
                del self.runs[-2:]
                merged.sort(kind="stable")  # two sorted runs: timsort merges them in one pass
                self.runs.append(merged)
        return seen


class NgramIndex:
    """The n-grams of evaluation texts; :meth:`overlap` finds one in a training text.

    Args:
        n: the n-gram length in words.
    """

    def __init__(self, n: int):
        self.n = n
        self.hashes: set[int] = set()
        self.texts = 0

    def add(self, text: str) -> None:
        """Index one evaluation prompt or target."""
        self.texts += 1
        self.hashes.update(ngram_hashes(text, self.n))

    def overlap(self, texts: Iterable[str]) -> str | None:
        """The first n-gram of ``texts`` that an evaluation text also has, or None."""
        if not self.hashes:
            return None
        for text in texts:
            w = words(text)
            for i in range(len(w) - self.n + 1):
                if _gram_hash(w[i : i + self.n]) in self.hashes:
                    return " ".join(w[i : i + self.n])
        return None
