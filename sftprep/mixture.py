"""The arithmetic of a mixture: content keys, the split, weights and the order of repeats.

Every decision here is a function of an example's *content key* (a 64-bit hash
of its rendered text) and the recipe's seed, nothing else: so an example lands
in the same split, and a weighted source repeats the same examples in the same
order, whatever the worker count, the engine or the batch size.

* **Split** (``validation = f``): an example is in validation when
  ``mix(key, seed, "split") / 2**64 < f``; with a count ``c``, the ``c``
  examples of the source with the smallest ``mix(key, seed, "split")``.
* **Weight** ``w`` over ``n`` train examples: ``round(w * n)`` copies in all
  (halves round up): every example ``floor(w)`` times, plus the
  ``round(w * n) - floor(w) * n`` examples with the smallest
  ``mix(key, seed, "weight")`` once more. ``w < 1`` samples without repeats.
* **Order**: the first copy of each example in input order, then each further
  round of copies sorted by ``mix(key, seed, "repeat:<round>")``, so repeats are
  spread out rather than adjacent. Example: keys ``[a, b, c]``, ``w = 2`` ->
  ``a b c`` then, say, ``c a b``.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def content_key(content: Any) -> int:
    """A 64-bit key of an example's rendered content (anything JSON can write).

    ``content_key(["Question: 2+2? Answer:", " 4"])`` is the key of a pair;
    a conversation's is that of its ``[[role, content], ...]``.
    """
    text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _salt(seed: int, purpose: str) -> np.uint64:
    digest = hashlib.blake2b(f"{seed}:{purpose}".encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def mix(keys: np.ndarray, seed: int, purpose: str) -> np.ndarray:
    """Seeded 64-bit hashes of the keys (splitmix64's finalizer over ``key ^ salt``)."""
    z = np.asarray(keys, dtype=np.uint64) ^ _salt(seed, purpose)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _smallest(values: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` smallest values (ties: the earlier index), in input order."""
    order = np.argsort(values, kind="stable")[:count]
    return np.sort(order)


def validation_mask(keys: np.ndarray, seed: int, validation: float | int | None) -> np.ndarray:
    """Which examples go to validation: a fraction (float) or a count (int) of them, or none."""
    keys = np.asarray(keys, dtype=np.uint64)
    mask = np.zeros(len(keys), dtype=bool)
    if validation is None or not len(keys):
        return mask
    h = mix(keys, seed, "split")
    if isinstance(validation, float):
        return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53) < validation
    mask[_smallest(h, min(validation, len(keys)))] = True
    return mask


def planned_total(weight: float, n: int) -> int:
    """``round(weight * n)``, halves rounded up: the train examples a source contributes."""
    return math.floor(weight * n + 0.5)


def copies(keys: np.ndarray, seed: int, weight: float) -> np.ndarray:
    """How many times each train example is written, for a source of weight ``weight``."""
    keys = np.asarray(keys, dtype=np.uint64)
    n = len(keys)
    whole = math.floor(weight)
    out = np.full(n, whole, dtype=np.int64)
    extra = planned_total(weight, n) - whole * n
    if extra > 0:
        out[_smallest(mix(keys, seed, "weight"), extra)] += 1
    return out


def train_order(keys: np.ndarray, counts: np.ndarray, seed: int) -> np.ndarray:
    """The train examples to write, as indices: first copies in input order, then seeded rounds."""
    keys = np.asarray(keys, dtype=np.uint64)
    parts = [np.flatnonzero(counts >= 1)]
    for round_ in range(1, int(counts.max(initial=0))):
        chosen = np.flatnonzero(counts >= round_ + 1)
        parts.append(chosen[np.argsort(mix(keys[chosen], seed, f"repeat:{round_}"), kind="stable")])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
