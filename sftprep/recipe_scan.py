"""Pass 1 of a recipe build: what each record of a source is, decided while the source builds.

Every example gets a *content key* (``mixture.content_key`` of its rendered text), and
exact duplicates (of any earlier example, in any source) and contaminated examples are
marked and listed in ``duplicates.jsonl``; then the split is decided (:class:`Scanner`).

The keys come from the source's own build, not from a second reading: the build's
transform renders every record anyway, so :class:`Keyer` runs beside it (in the worker
processes, or on Ray) and keys each batch's rendered records, and the build hands the
keys back in input order (``run_build(examples=...)``). The verdicts are then taken in
that order in this process, where the dedup set lives. What is kept per record is its
place (file, line), key, verdict and split: 18 bytes in arrays.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sftprep.chat.formats import detect_format, to_messages
from sftprep.dedup import ExactDedup, NgramIndex
from sftprep.errors import RecordError
from sftprep.mixture import content_key, validation_mask
from sftprep.readers import InputFile, Record, expand_inputs
from sftprep.recipe import Recipe
from sftprep.recipe_output import CONTAMINATED, DUPLICATE, KEEP, UNREAD, Scan
from sftprep.templates import bind_template, detect_template

__all__ = ["Keyer", "Listing", "Scanner", "eval_index"]

# Examples whose split (by a fraction) is decided at a time.
SPLIT_SLICE = 1 << 16
_LINE_BITS = 40  # a record's code: file index << 40 | its line or record number


class Listing:
    """duplicates.jsonl: every example dropped as a duplicate or as contaminated, with why."""

    def __init__(self, path: Path):
        self.path = path
        self.file: Any = None

    def add(self, source: str, file: str, line: int, reason: str, detail: str) -> None:
        if self.file is None:
            self.file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        entry = {"source": source, "file": file, "line": line, "reason": reason, "message": detail}
        self.file.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _texts(content: Any) -> tuple[list[Any], list[str]]:
    """(what the content key hashes, the texts decontamination reads) of a prepared example."""
    if isinstance(content, tuple):  # (prompt, target)
        return list(content), list(content)
    messages = content.messages
    return [[m["role"], m.get("content")] for m in messages], [str(m.get("content") or "") for m in messages]


@dataclass
class Keyed:
    """One batch's records as :class:`Keyer` found them (arrays in the batch's record order)."""

    codes: np.ndarray  # uint64: file index << 40 | line or record number
    keys: np.ndarray  # uint64 content key; 0 where the record was not rendered
    rendered: np.ndarray  # bool
    grams: list[str | None] | None  # an n-gram shared with an evaluation file, per record


class Keyer:
    """Keys a batch's rendered records where the transform runs (see the module docstring).

    Args:
        names: the source's inputs, as the build expands them (a record's file is its index here).
        ngrams: the evaluation files' n-grams, when the recipe decontaminates.
    """

    def __init__(self, names: list[str], ngrams: NgramIndex | None):
        self.files = {name: i for i, name in enumerate(names)}
        self.ngrams = ngrams

    def __call__(self, records: list[Record], prepared: list[Any]) -> Keyed:
        codes = np.fromiter(
            (self.files[r.source] << _LINE_BITS | r.number for r in records),
            dtype=np.uint64,
            count=len(records),
        )
        keys = np.zeros(len(records), dtype=np.uint64)
        grams: list[str | None] | None = [None] * len(records) if self.ngrams is not None else None
        for i, content in enumerate(prepared):
            if content is None:
                continue
            parts, texts = _texts(content)
            keys[i] = content_key(parts)
            if grams is not None and self.ngrams is not None:
                grams[i] = self.ngrams.overlap(texts)
        rendered = np.fromiter((c is not None for c in prepared), dtype=bool, count=len(prepared))
        return Keyed(codes, keys, rendered, grams)


class Scanner:
    """The verdicts of one source's records, taken batch by batch in input order.

    It is what ``run_build(examples=...)`` asks for: :attr:`keyer` goes with the transform,
    :meth:`add` takes each batch's keys back; :meth:`scan` then decides the split.

    Args:
        source: the source's name (for duplicates.jsonl).
        names: its inputs, as the build expands them.
        dedup / ngrams: the recipe's exact-dedup set (shared by all sources) and evaluation n-grams.
        listing: where dropped examples are listed.
    """

    def __init__(self, source: str, names: list[str], dedup: ExactDedup | None, ngrams: NgramIndex | None,
                 listing: Listing):  # fmt: skip
        self.source = source
        self.names = names
        self.dedup = dedup
        self.listing = listing
        self.keyer = Keyer(names, ngrams)
        self.codes, self.keys, self.verdicts = array("Q"), array("Q"), array("b")

    def add(self, found: Keyed) -> None:
        self.codes.frombytes(found.codes.tobytes())
        self.keys.frombytes(found.keys.tobytes())
        verdict = np.where(found.rendered, KEEP, UNREAD).astype(np.int8)
        rendered = np.flatnonzero(found.rendered)
        if self.dedup is not None and len(rendered):
            verdict[rendered[self.dedup.seen_many(found.keys[rendered])]] = DUPLICATE
        if found.grams is not None:
            for i in rendered.tolist():
                if verdict[i] == KEEP and found.grams[i] is not None:
                    verdict[i] = CONTAMINATED
        for i in np.flatnonzero((verdict == DUPLICATE) | (verdict == CONTAMINATED)).tolist():
            code = int(found.codes[i])
            file, line = self.names[code >> _LINE_BITS], code & ((1 << _LINE_BITS) - 1)
            if verdict[i] == DUPLICATE:
                self.listing.add(
                    self.source, file, line, "duplicate", "the same rendered text as an earlier example"
                )
            else:
                assert found.grams is not None
                n = self.keyer.ngrams.n if self.keyer.ngrams is not None else 0
                detail = f"shares the {n}-gram '{found.grams[i]}' with an evaluation file"
                self.listing.add(self.source, file, line, "contaminated", detail)
        self.verdicts.frombytes(verdict.tobytes())

    def scan(self, recipe: Recipe) -> Scan:
        """What was found, with each kept example's split decided."""
        keys = np.frombuffer(self.keys, dtype=np.uint64) if len(self.keys) else np.zeros(0, np.uint64)
        verdicts = np.frombuffer(self.verdicts, dtype=np.int8) if len(self.verdicts) else np.zeros(0, np.int8)
        # The split is decided among the examples that remain, so a count means that many examples.
        # A fraction decides each example alone: in slices, so its temporaries stay small.
        validation = np.zeros(len(keys), dtype=bool)
        step = SPLIT_SLICE if isinstance(recipe.validation, float) else max(1, len(keys))
        for begin in range(0, len(keys), step):
            kept = np.flatnonzero(verdicts[begin : begin + step] == KEEP) + begin
            validation[kept] = validation_mask(keys[kept], recipe.seed, recipe.validation)
        codes = np.frombuffer(self.codes, dtype=np.uint64) if len(self.codes) else np.zeros(0, np.uint64)
        return Scan(self.names, codes, keys, verdicts, validation)


def eval_index(recipe: Recipe) -> NgramIndex | None:
    """The n-grams of the decontamination files' prompts and targets (fields detected as for a build)."""
    if not recipe.decontaminate:
        return None
    index = NgramIndex(recipe.ngram)
    for name in expand_inputs(recipe.decontaminate):
        with InputFile(name) as f:
            render: Callable[[dict], list[str]] | None = None
            for record in f.records():
                if record.error is not None:
                    continue
                fields = record.fields
                if render is None:
                    if detect_format(fields, {}) in ("messages", "sharegpt") or "history" in fields:
                        render = lambda r, w=record.where: [  # noqa: E731
                            str(m.get("content") or "") for m in to_messages(r, w).messages
                        ]
                    else:
                        renderer = bind_template(detect_template(fields, record.where), {}, {}, fields)
                        render = lambda r, w=record.where, rr=renderer: list(rr.render(r, w))  # noqa: E731
                try:
                    texts = render(fields)
                except RecordError:
                    continue
                for text in texts:
                    index.add(text)
    return index
