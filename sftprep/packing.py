"""Pack whole examples into rows of at most ``max_length`` tokens.

A packed row is several encoded examples laid end to end. Nothing in the row
lets one example see or predict another, provided the model is told where the
examples start (README "Packing"):

* ``position_ids`` restart at 0 for every example, and ``seq_lengths`` lists the
  example lengths; ``cu_seqlens = [0, *cumsum(seq_lengths)]`` is what varlen /
  flash attention takes, and :func:`block_causal_mask` builds the mask for
  attention implementations that take one.
* Labels are built for each example exactly as for unpacked rows
  (:mod:`sftprep.labels`) and then concatenated, so they never cross a
  boundary: with ``--labels shifted`` an example's last position has target
  -100 (it would otherwise predict the next example's first token); with
  ``--labels hf`` an example's first token has label -100 (the model's internal
  shift would otherwise make the previous example's last position predict it).

Strategy: best-fit decreasing within a bounded buffer. :class:`Packer` holds at
most ``buffer_examples`` examples. When the buffer is full, it packs them with
:func:`best_fit_decreasing`, writes out the fuller rows and keeps the examples of
the emptiest rows (at most a quarter of the buffer) to pack again with the next
examples. At the end, :meth:`Packer.flush` packs what is left. The result
depends only on the sequence of examples and the options, never on how they
were split into batches.

Padding (:func:`pad_batch`, in :mod:`sftprep.padding`) works on packed and unpacked rows
alike. The packed row's columns and the helpers training code needs to read one
(:func:`cu_seqlens`, :func:`block_causal_mask`, :func:`unpack_row`) live in
:mod:`sftprep.packed_rows`; both are importable from here too.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from sftprep.arrays import list_array, numpy_array, ranges, to_numpy
from sftprep.encode import EncodedBatch
from sftprep.labels import (
    ID_TYPE,
    IGNORE_INDEX,
    MASK_TYPE,
    hf_labels,
    shifted_labels,
    trained_token_mask,
    turn_array,
    turn_values,
)
from sftprep.options import DEFAULT_BUFFER_EXAMPLES
from sftprep.packed_rows import (
    PACKED_FIELDS,
    block_causal_mask,
    cu_seqlens,
    packed_schema_for,
    segment_ids,
    unpack_row,
)
from sftprep.padding import (
    PAD_TO_CHOICES,
    pad_batch,
    pad_id_for,
    padded_lengths,
    padded_schema,
)

__all__ = [
    "CARRY_FRACTION",
    "DEFAULT_BUFFER_EXAMPLES",
    "PACKED_FIELDS",
    "PAD_TO_CHOICES",
    "STRATEGY",
    "PackStats",
    "Packer",
    "best_fit_decreasing",
    "block_causal_mask",
    "cu_seqlens",
    "packed_schema_for",
    "packing_problems",
    "pad_batch",
    "pad_id_for",
    "padded_lengths",
    "padded_schema",
    "segment_ids",
    "unpack_row",
]

# Measured on alpaca_5000 with gpt2 at L=2048 (mean example 113 tokens): a
# buffer of 128 examples already reaches 0.995, the efficiency of packing the
# whole file at once; 4096 examples match whole-file packing on every dataset in
# README "Packing". Memory: at most buffer_examples * max_length * 5 bytes of
# tokens (int32 id + bool flag), in practice the mean example length instead of
# max_length (about 2.3 MB for alpaca). DEFAULT_BUFFER_EXAMPLES is declared in sftprep.options.
CARRY_FRACTION = 4  # keep at most buffer_examples // 4 examples for the next round
STRATEGY = "best-fit decreasing within a buffer of {n} examples, least-full rows carried over"


def packing_problems(
    mode: str,
    max_length: int | None,
    pack: bool,
    pad_to: str | None,
    pad_multiple: int | None,
    pack_buffer: int = DEFAULT_BUFFER_EXAMPLES,
) -> list[str]:
    """Problems with the packing and padding options, for the build's config check.

    Args:
        mode / max_length: ``--mode``, ``--max-length``.
        pack / pack_buffer: ``--pack``, ``--pack-buffer``.
        pad_to / pad_multiple: ``--pad-to``, ``--pad-to-multiple-of`` (None when not given).

    Returns:
        One message per problem (empty when the options are fine).
    """
    problems = []
    padding = pad_to is not None or pad_multiple is not None
    if pack and mode == "exploded":
        problems.append(
            "--pack cannot be used with --mode exploded: an exploded row is one prefix and one "
            "target, there is nothing to pack (use --mode sequence)"
        )
    if padding and mode == "exploded":
        problems.append(
            "--pad-to/--pad-to-multiple-of cannot be used with --mode exploded (use --mode sequence)"
        )
    if pack and max_length is None:
        problems.append("--pack needs --max-length L, the length of a packed row")
    if pad_to is not None and pad_to not in PAD_TO_CHOICES:
        problems.append(f"--pad-to must be one of {', '.join(PAD_TO_CHOICES)}, got '{pad_to}'")
    if pad_to == "max-length" and max_length is None:
        problems.append("--pad-to max-length needs --max-length")
    if pack_buffer < 1:
        problems.append(f"--pack-buffer must be at least 1, got {pack_buffer}")
    if pad_multiple is not None and pad_multiple < 1:
        problems.append(f"--pad-to-multiple-of must be at least 1, got {pad_multiple}")
    return problems


def best_fit_decreasing(lengths: Sequence[int] | np.ndarray, capacity: int) -> list[list[int]]:
    """Group items into bins whose lengths add up to at most ``capacity``.

    Items are placed longest first (equal lengths: lower index first), each into
    the bin with the least room that still fits it (equal room: the bin opened
    first), or into a new bin. Example, capacity 8: ``[5, 3, 4, 2, 6] ->
    [[3, 4], [0, 1], [2]]`` (6+2, 5+3, 4).

    Args:
        lengths: the item lengths, each at most ``capacity``.
        capacity: the room in a bin.

    Returns:
        The bins in the order they were opened, each a list of item indices, ascending.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    rooms: list[tuple[int, int]] = []  # (room left, bin), sorted: bisect finds the best fit
    bins: list[list[int]] = []
    for i in order.tolist():
        n = int(lengths[i])
        k = bisect.bisect_left(rooms, (n, -1))
        if k == len(rooms):
            b, room = len(bins), capacity - n
            bins.append([i])
        else:
            room, b = rooms.pop(k)
            bins[b].append(i)
            room -= n
        if room > 0:  # a full bin can take nothing more: keep the search list short
            bisect.insort(rooms, (room, b))
    return [sorted(b) for b in bins]


@dataclass
class PackStats:
    """What packing did, as the manifest and summary report it.

    ``efficiency`` is tokens / (rows * max_length): the share of a batch of
    ``max_length`` rows that holds real tokens.
    """

    max_length: int
    buffer_examples: int
    examples: int = 0
    rows: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    examples_per_row: Counter[int] = field(default_factory=Counter)

    @property
    def efficiency(self) -> float:
        return self.tokens / (self.rows * self.max_length) if self.rows else 0.0

    @property
    def mean_examples_per_row(self) -> float:
        return self.examples / self.rows if self.rows else 0.0

    def as_dict(self) -> dict[str, Any]:
        per_row = self.examples_per_row
        return {
            "strategy": STRATEGY.format(n=self.buffer_examples),
            "max_length": self.max_length,
            "buffer_examples": self.buffer_examples,
            "examples": self.examples,
            "rows": self.rows,
            "tokens": self.tokens,
            "trained_tokens": self.trained_tokens,
            "efficiency": round(self.efficiency, 6),
            "examples_per_row": {
                "mean": round(self.mean_examples_per_row, 3),
                "min": min(per_row, default=0),
                "max": max(per_row, default=0),
                "histogram": {str(k): per_row[k] for k in sorted(per_row)},
            },
        }


@dataclass
class _Pool:
    """Buffered examples as flat arrays: tokens of example i are ``ids[starts[i]:starts[i]+lengths[i]]``."""

    ids: np.ndarray
    trained: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    sources: list[str]
    lines: np.ndarray
    truncated: np.ndarray
    adjusted: np.ndarray
    turns: np.ndarray  # int32, -1 for a whole example

    @classmethod
    def empty(cls) -> _Pool:
        none = np.zeros(0, dtype=np.int64)
        return cls(
            np.zeros(0, np.int32),
            np.zeros(0, bool),
            none,
            none,
            [],
            none,
            np.zeros(0, bool),
            np.zeros(0, bool),
            np.zeros(0, np.int32),
        )

    def __len__(self) -> int:
        return len(self.lengths)

    def take(self, order: np.ndarray) -> _Pool:
        """The examples at ``order``, in that order, with their tokens laid out afresh."""
        lengths = self.lengths[order]
        starts = np.zeros(len(order), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        gather = ranges(self.starts[order], lengths)
        return _Pool(
            self.ids[gather],
            self.trained[gather],
            starts,
            lengths,
            [self.sources[i] for i in order.tolist()],
            self.lines[order],
            self.truncated[order],
            self.adjusted[order],
            self.turns[order],
        )

    def extend(self, other: _Pool) -> _Pool:
        return _Pool(
            np.concatenate([self.ids, other.ids]),
            np.concatenate([self.trained, other.trained]),
            np.concatenate([self.starts, other.starts + len(self.ids)]),
            np.concatenate([self.lengths, other.lengths]),
            self.sources + other.sources,
            np.concatenate([self.lines, other.lines]),
            np.concatenate([self.truncated, other.truncated]),
            np.concatenate([self.adjusted, other.adjusted]),
            np.concatenate([self.turns, other.turns]),
        )


def _pool_of(enc: EncodedBatch, sources: Sequence[str], lines: np.ndarray) -> _Pool:
    # Trained flags come from each example's own offsets: the label convention
    # is settled per example, before examples meet.
    trained = trained_token_mask(enc.offsets, enc.prompt_lens, enc.trained)
    return _Pool(
        np.asarray(enc.ids, dtype=np.int32),
        trained,
        np.asarray(enc.offsets[:-1], dtype=np.int64),
        np.diff(enc.offsets).astype(np.int64),
        list(sources),
        np.asarray(lines, dtype=np.int64),
        np.asarray(enc.truncated, dtype=bool),
        np.asarray(enc.boundary_adjusted, dtype=bool),
        _turns_of(enc),
    )


def _pool_of_rows(batch: pa.RecordBatch, labels: str) -> _Pool:
    """Read the trained flags back from the labels of unpacked rows (the convention, inverted)."""
    ids_column = batch.column("input_ids")
    offsets = to_numpy(ids_column.offsets).astype(np.int64)
    offsets = offsets - offsets[0]  # the batch may be a slice
    ids = to_numpy(ids_column.flatten()).astype(np.int32)
    if labels == "hf":
        trained = to_numpy(batch.column("labels").flatten()) != IGNORE_INDEX
    else:  # target_ids[t] = ids[t+1] where ids[t+1] is trained
        trained = np.zeros(len(ids), dtype=bool)
        trained[1:] = to_numpy(batch.column("target_ids").flatten())[:-1] != IGNORE_INDEX
        trained[offsets[:-1]] = False  # a row's first token: nothing in that row predicts it
    return _Pool(
        ids,
        trained,
        offsets[:-1],
        np.diff(offsets),
        batch.column("source_file").to_pylist(),
        to_numpy(batch.column("source_line")).astype(np.int64),
        to_numpy(batch.column("truncated")),
        to_numpy(batch.column("boundary_adjusted")),
        _turns_of_rows(batch),
    )


def _turns_of(enc: EncodedBatch) -> np.ndarray:
    turns = getattr(enc, "turns", None)  # chat batches name each row's turn
    return np.full(len(enc), -1, dtype=np.int32) if turns is None else np.asarray(turns, dtype=np.int32)


def _turns_of_rows(batch: pa.RecordBatch) -> np.ndarray:
    if "turn" not in batch.schema.names:
        return np.full(batch.num_rows, -1, dtype=np.int32)
    return turn_values(batch.column("turn"))


class Packer:
    """Packs encoded examples, batch by batch, into rows of at most ``max_length`` tokens.

    Feed it every :class:`~sftprep.encode.EncodedBatch` of a build with
    :meth:`add` (or the build's unpacked Arrow rows with :meth:`add_rows`),
    write what it returns, and finish with :meth:`flush`. Each row
    holds its examples in input order; the rows of one packing round come out in
    the order of their earliest example (examples carried to a later round come
    out later).

    Args:
        max_length: the longest packed row, in tokens (``--max-length``).
        labels: ``"shifted"`` or ``"hf"``.
        schema: the schema of the batches to return (:func:`packed_schema_for`,
            perhaps with metadata attached); default ``packed_schema_for(labels)``.
        buffer_examples: how many examples to hold and pack together (at least 1).
    """

    def __init__(
        self,
        max_length: int,
        labels: str,
        schema: pa.Schema | None = None,
        buffer_examples: int = DEFAULT_BUFFER_EXAMPLES,
    ):
        if max_length < 1 or buffer_examples < 1:
            raise ValueError(
                f"max_length and buffer_examples must be positive, got {max_length}, {buffer_examples}"
            )
        self.max_length = max_length
        self.labels = labels
        self.schema = schema if schema is not None else packed_schema_for(labels)
        self.buffer_examples = buffer_examples
        self.stats = PackStats(max_length, buffer_examples)
        self._pool = _Pool.empty()

    def add(self, enc: EncodedBatch, sources: Sequence[str], lines: np.ndarray) -> list[pa.RecordBatch]:
        """Buffer a batch of encoded examples; return the packed rows that are ready (maybe none).

        Args:
            enc: the encoded examples, each at most ``max_length`` tokens.
            sources / lines: each example's input file and line (or record) number.

        Raises:
            ValueError: an example is longer than ``max_length`` (encode with
                ``EncodeOptions(max_length=...)`` so the truncation policy applies first).
        """
        return self._add(_pool_of(enc, sources, lines))

    def add_rows(self, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        """Like :meth:`add`, from the unpacked rows a build writes (``labels.sequence_batch``).

        The rows hold everything packing needs, so a build whose workers return
        Arrow rows packs them in the main process, in order. Same result as
        :meth:`add` on the examples the rows came from.

        Args:
            batch: sequence rows with the columns of ``schema_for("sequence", labels)``.

        Raises:
            ValueError: a row is longer than ``max_length``.
        """
        return self._add(_pool_of_rows(batch, self.labels))

    def _add(self, incoming: _Pool) -> list[pa.RecordBatch]:
        if len(incoming) and incoming.lengths.max() > self.max_length:
            k = int(np.argmax(incoming.lengths))
            raise ValueError(
                f"{incoming.sources[k]}:{incoming.lines[k]}: an example of {incoming.lengths[k]} tokens cannot "
                f"be packed into rows of {self.max_length}; encode with max_length={self.max_length} so it is "
                "truncated first"
            )
        out: list[pa.RecordBatch] = []
        start = 0
        # Fill the buffer exactly to its size before each round, so that rounds
        # fall at the same examples whatever the batch sizes.
        while start < len(incoming):
            stop = min(len(incoming), start + self.buffer_examples - len(self._pool))
            self._pool = self._pool.extend(incoming.take(np.arange(start, stop)))
            start = stop
            if len(self._pool) == self.buffer_examples:
                out += self._round(final=False)
        return out

    def flush(self) -> list[pa.RecordBatch]:
        """Pack and return every example still buffered."""
        return self._round(final=True) if len(self._pool) else []

    def _round(self, final: bool) -> list[pa.RecordBatch]:
        bins = best_fit_decreasing(self._pool.lengths, self.max_length)
        keep = [] if final else self._carried(bins)
        kept = set(keep)
        emit = sorted((bins[b] for b in range(len(bins)) if b not in kept), key=lambda items: items[0])
        batch = self._rows(emit)
        carry = np.array(sorted(i for b in keep for i in bins[b]), dtype=np.int64)
        self._pool = self._pool.take(carry)
        return [batch] if batch.num_rows else []

    def _carried(self, bins: list[list[int]]) -> list[int]:
        """The bins to pack again next round: the emptiest, up to a quarter of the buffer."""
        fill = [int(self._pool.lengths[b].sum()) for b in bins]
        budget = self.buffer_examples // CARRY_FRACTION
        keep = []
        for b in sorted(range(len(bins)), key=lambda b: (fill[b], -b)):
            if fill[b] == self.max_length or len(bins[b]) > budget:
                break
            keep.append(b)
            budget -= len(bins[b])
        return keep

    def _rows(self, rows: list[list[int]]) -> pa.RecordBatch:
        """Arrow rows from groups of pool indices, one group a row."""
        per_row = np.array([len(r) for r in rows], dtype=np.int64)
        pool = self._pool.take(np.array([i for r in rows for i in r], dtype=np.int64))
        ex_offsets = np.zeros(len(pool) + 1, dtype=np.int64)
        np.cumsum(pool.lengths, out=ex_offsets[1:])
        row_ex = np.zeros(len(rows) + 1, dtype=np.int64)  # row -> its examples
        np.cumsum(per_row, out=row_ex[1:])
        row_tok = ex_offsets[row_ex]  # row -> its tokens
        ids, trained = pool.ids, pool.trained
        if self.labels == "hf":
            model = [list_array(row_tok, ids, ID_TYPE), list_array(row_tok, hf_labels(ids, trained), ID_TYPE)]
        else:
            target = shifted_labels(ids, ex_offsets, trained)  # example offsets: -100 at each example's end
            mask = (target != IGNORE_INDEX).astype(np.int8)
            model = [
                list_array(row_tok, ids, ID_TYPE),
                list_array(row_tok, target, ID_TYPE),
                list_array(row_tok, mask, MASK_TYPE),
            ]
        positions = np.arange(len(ids)) - np.repeat(ex_offsets[:-1], pool.lengths)
        n_trained = np.add.reduceat(trained.astype(np.int32), row_tok[:-1]) if len(rows) else np.zeros(0)
        columns = [
            *model,
            list_array(row_tok, positions, ID_TYPE),
            list_array(row_ex, pool.lengths, ID_TYPE),
            list_array(row_ex, pool.sources, pa.string()),
            list_array(row_ex, pool.lines, pa.int64()),
            numpy_array(np.asarray(n_trained, dtype=np.int32), pa.int32()),
            list_array(row_ex, pool.truncated, pa.bool_()),
            list_array(row_ex, pool.adjusted, pa.bool_()),
            pa.ListArray.from_arrays(
                numpy_array(np.asarray(row_ex, dtype=np.int32), pa.int32()), turn_array(pool.turns)
            ),
        ]
        self._count(row_tok, per_row, int(trained.sum()))
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)

    def _count(self, row_tok: np.ndarray, per_row: np.ndarray, trained: int) -> None:
        self.stats.examples += int(per_row.sum())
        self.stats.rows += len(per_row)
        self.stats.tokens += int(row_tok[-1])
        self.stats.trained_tokens += trained
        self.stats.examples_per_row.update(per_row.tolist())
