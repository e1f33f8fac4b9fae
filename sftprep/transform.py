"""The per-batch transform: records -> token rows -> labelled Arrow rows.

A transform holds everything a batch needs (template, tokenizer, options) and
nothing that changes between batches, so the build can run it in this process
or in worker processes (``parallel.py``) and get the same rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from sftprep.chat import ChatEncoder
from sftprep.chat_formats import Conversation, to_messages
from sftprep.encode import EncodedBatch, Encoder
from sftprep.errors import RecordError
from sftprep.labels import exploded_batches, sequence_batch
from sftprep.readers import Record
from sftprep.templates import Renderer


@dataclass
class Counts:
    """What a build did, as the manifest and summary report it."""

    records_read: int = 0
    examples_written: int = 0
    rows_written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    dropped_too_long: int = 0
    truncated: int = 0
    boundary_adjusted: int = 0
    eos_in_text: int = 0
    double_bos_removed: int = 0
    turns_dropped: int = 0
    tokens: int = 0
    trained_tokens: int = 0

    def add(self, part: Counts) -> None:
        """Add another batch's counts (skips are counted by the build's reject handler)."""
        for key, value in asdict(part).items():
            if key != "skipped":
                setattr(self, key, getattr(self, key) + value)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["skipped"] = dict(sorted(self.skipped.items()))
        data["skipped_total"] = sum(self.skipped.values())
        return data


@dataclass
class BatchResult:
    batches: list[pa.RecordBatch]
    rejects: list[tuple[Record, RecordError]]
    counts: Counts


class BatchTransform:
    """One batch of records -> Arrow rows + rejected records. Stateless between batches.

    Subclasses say how a record becomes an item (:meth:`prepare`) and how a
    batch of items becomes token rows (:meth:`encode`); labelling and the
    Arrow rows are the same for every kind of data.
    """

    def __init__(self, mode: str, labels: str, schema: pa.Schema):
        self.mode = mode
        self.labels = labels
        self.schema = schema

    def prepare(self, record: Record) -> Any:
        raise NotImplementedError

    def encode(self, items: list[Any]) -> EncodedBatch:
        raise NotImplementedError

    def __call__(self, records: list[Record]) -> BatchResult:
        counts = Counts(records_read=len(records))
        errors: dict[int, RecordError] = {}
        items: list[Any] = []
        good: list[int] = []
        for i, record in enumerate(records):
            if record.error is not None:
                errors[i] = record.error
                continue
            try:
                items.append(self.prepare(record))
            except RecordError as exc:
                errors[i] = exc
                continue
            good.append(i)
        enc = self.encode(items)
        for j, reason, message in enc.rejected:
            i = good[j]
            errors[i] = RecordError(records[i].where, reason, message)
        counts.dropped_too_long = len(enc.dropped)
        for key, value in enc.counts.items():
            setattr(counts, key, value)
        kept = [records[good[j]] for j in enc.index.tolist()]
        sources = [r.source for r in kept]
        lines = np.fromiter((r.number for r in kept), dtype=np.int64, count=len(kept))
        if self.mode == "exploded":
            out = list(exploded_batches(enc, sources, lines, self.schema))
        else:
            out = [sequence_batch(enc, sources, lines, self.labels, self.schema)]
        counts.examples_written = len(enc)
        counts.rows_written = sum(b.num_rows for b in out)
        counts.tokens = int(enc.offsets[-1])
        counts.trained_tokens = _trained(out, self.mode, self.labels)
        rejects = [(records[i], errors[i]) for i in sorted(errors)]
        return BatchResult(out, rejects, counts)


class PairTransform(BatchTransform):
    """(prompt, target) pairs through a template and :class:`~sftprep.encode.Encoder`."""

    def __init__(self, renderer: Renderer, encoder: Encoder, mode: str, labels: str, schema: pa.Schema):
        super().__init__(mode, labels, schema)
        self.renderer = renderer
        self.encoder = encoder

    def prepare(self, record: Record) -> tuple[str, str]:
        return self.renderer.render(record.data, record.where)

    def encode(self, items: list[tuple[str, str]]) -> EncodedBatch:
        return self.encoder.encode([p for p, _ in items], [t for _, t in items])


class ChatTransform(BatchTransform):
    """Conversations through a chat template and :class:`~sftprep.chat.ChatEncoder`."""

    def __init__(self, encoder: ChatEncoder, fields: dict[str, str], roles: dict[str, str],
                 mode: str, labels: str, schema: pa.Schema):  # fmt: skip
        super().__init__(mode, labels, schema)
        self.encoder = encoder
        self.fields = fields
        self.roles = roles

    def prepare(self, record: Record) -> Conversation:
        return to_messages(record.data, record.where, field_map=self.fields, role_map=self.roles)

    def encode(self, items: list[Conversation]) -> EncodedBatch:
        return self.encoder.encode(items)


def _trained(batches: list[pa.RecordBatch], mode: str, labels: str) -> int:
    if mode == "exploded":
        return sum(b.num_rows for b in batches)
    return sum(int(pa.compute.sum(b.column("num_trained_tokens")).as_py() or 0) for b in batches)
