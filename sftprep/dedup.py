"""Exact deduplication and n-gram decontamination, with state bounded by hashes.

* :class:`ExactDedup` keeps one 64-bit content key per distinct example (see
  ``mixture.content_key``), never the text: a Python set of ints, about 60 bytes
  per example, so some 60 MB per million distinct examples.
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
    """Remembers content keys; :meth:`seen` says whether a key came before (and records it)."""

    def __init__(self) -> None:
        self.keys: set[int] = set()

    def seen(self, key: int) -> bool:
        if key in self.keys:
            return True
        self.keys.add(key)
        return False


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
