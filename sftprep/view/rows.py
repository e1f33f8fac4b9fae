"""Rows, independent of the label convention: the form every view draws from.

Position ``t`` of a :class:`Row` is trained to predict ``row.targets[t]``
(-100 where it is not trained), whether the build stored shifted
``target_ids``, unshifted Hugging Face ``labels`` or exploded
``(prefix, target_id)`` rows, so the three conventions print alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from sftprep.arrays import to_numpy
from sftprep.labels import IGNORE_INDEX, META_FIELDS
from sftprep.packing import unpack_row
from sftprep.view.choose import in_ranges
from sftprep.view.source import Rows

_MODEL_COLUMNS = {"input_ids", "target_ids", "loss_mask", "labels", "attention_mask", "target_id", "position"}
# Packed rows' columns: read into Row.examples and Row.position_ids.
_PACKED_COLUMNS = {"position_ids", "seq_lengths"}
KNOWN_COLUMNS = frozenset(_MODEL_COLUMNS | _PACKED_COLUMNS | {f.name for f in META_FIELDS})


@dataclass
class Turn:
    """One message of a chat row: its role and its tokens ``[start, stop)`` in the row."""

    message: int
    role: str
    start: int
    stop: int


@dataclass
class Example:
    """One example of a row: the whole of an unpacked row, or one example of a packed row.

    Attributes:
        start / stop: its tokens in the row, ``[start, stop)`` (padding is not part of it).
        source_file / source_line: where it came from.
        truncated / boundary_adjusted: as the build flagged it.
        turns: a chat example's messages, when they are known (see :mod:`sftprep.view.turns`).
    """

    start: int
    stop: int
    source_file: str
    source_line: int
    truncated: bool = False
    boundary_adjusted: bool = False
    turns: list[Turn] | None = None
    turn: int | None = None  # the chat turn a ``--turns each`` row trains (the ``turn`` column)


@dataclass
class Row:
    """One stored row, with its labels in one convention-free form.

    Attributes:
        index: the row's number in the build (0-based, over all shards).
        input_ids: the ids the model reads.
        targets: per position ``t``, the id that position is trained to predict,
            or -100 (the shifted convention: ``--labels hf`` rows are shifted here).
        target_id: exploded rows: the one trained token, after ``input_ids``.
        extra: columns sftprep does not know.
        examples: the examples in the row (one unless it is packed).
        padding: padding tokens at the end of the row (``--pad-to``).
        position_ids: a packed row's position ids (None for unpacked rows).
        stored: a packed row's columns as stored, for :func:`unpack`.
        example: ``(k, n)`` for example ``k`` of ``n`` taken out of a packed row (``--unpack``).
    """

    index: int
    source_file: str
    source_line: int
    input_ids: np.ndarray
    targets: np.ndarray
    truncated: bool = False
    boundary_adjusted: bool = False
    num_trained_tokens: int = 0
    target_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    examples: list[Example] = field(default_factory=list)
    padding: int = 0
    position_ids: np.ndarray | None = None
    stored: dict[str, Any] | None = None
    example: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not self.examples:
            n = len(self.input_ids) - self.padding
            self.examples = [
                Example(0, n, self.source_file, self.source_line, self.truncated, self.boundary_adjusted)
            ]

    @property
    def packed(self) -> bool:
        return self.position_ids is not None

    @property
    def next_ids(self) -> list[int | None]:
        """Per position, the token that follows it in the same example (None: none follows)."""
        after: list[int | None] = [int(i) for i in self.input_ids[1:]]
        out = [*after, self.target_id]
        if self.packed or self.padding:  # the next example's first token, or padding, is not predicted
            for example in self.examples:
                if example.stop:
                    out[example.stop - 1] = None
            out[len(out) - self.padding :] = [None] * self.padding
        return out

    @property
    def trained_tokens(self) -> np.ndarray:
        """Per token ``j``: is it a trained target (predicted, with loss, from ``j - 1``)?"""
        flags = np.zeros(len(self.input_ids), dtype=bool)
        flags[1:] = self.targets[:-1] != IGNORE_INDEX
        return flags


class _Columns:
    """One record batch's columns as numpy, for pulling out single rows cheaply."""

    def __init__(self, batch: pa.RecordBatch):
        self.batch = batch
        self.names = batch.schema.names
        self._lists: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def ids(self, name: str, i: int) -> np.ndarray:
        if name not in self._lists:
            column = self.batch.column(name)
            self._lists[name] = (to_numpy(column.offsets), to_numpy(column.values))
        offsets, values = self._lists[name]
        return values[offsets[i] : offsets[i + 1]]

    def value(self, name: str, i: int) -> Any:
        return self.batch.column(name)[i].as_py()


def _make_row(cols: _Columns, i: int, index: int, labels: str) -> Row:
    row = _row(cols.names, lambda name: cols.ids(name, i), lambda name: cols.value(name, i), index, labels)
    if row.packed:
        row.stored = {name: cols.value(name, i) for name in cols.names}
    return row


def _row(
    names: Sequence[str],
    ids: Callable[[str], np.ndarray],
    value: Callable[[str], Any],
    index: int,
    labels: str,
) -> Row:
    """A :class:`Row` from its columns: ``ids(name)`` gives a list column as numpy, ``value(name)`` any."""
    input_ids = ids("input_ids")
    target_id = None
    if "target_id" in names:
        target_id = int(value("target_id"))
        targets = np.full(len(input_ids), IGNORE_INDEX, dtype=np.int64)
        if len(input_ids):
            targets[-1] = target_id
    elif "labels" in names and labels == "hf":
        targets = np.append(ids("labels")[1:], IGNORE_INDEX)
    else:
        targets = ids("target_ids")
    meta = {f.name: value(f.name) if f.name in names else None for f in META_FIELDS}
    examples, padding = _examples(names, ids, meta, len(input_ids))
    first = examples[0] if examples else Example(0, 0, "", 0)
    return Row(
        index=index,
        source_file=first.source_file,
        source_line=first.source_line,
        input_ids=input_ids,
        targets=targets,
        truncated=any(e.truncated for e in examples),
        boundary_adjusted=any(e.boundary_adjusted for e in examples),
        num_trained_tokens=int(meta["num_trained_tokens"] or 0),
        target_id=target_id,
        extra={n: value(n) for n in names if n not in KNOWN_COLUMNS},
        examples=examples,
        padding=padding,
        position_ids=ids("position_ids") if "seq_lengths" in names and "position_ids" in names else None,
    )


def _examples(
    names: Sequence[str], ids: Callable[[str], np.ndarray], meta: dict[str, Any], n: int
) -> tuple[list[Example], int]:
    """The row's examples and its padding: packed rows list one source, line and flag per example."""
    if "seq_lengths" in names:
        lengths = [int(k) for k in ids("seq_lengths")]
    elif "attention_mask" in names:  # padded, or hf labels: real tokens have mask 1, padding is at the end
        lengths = [int(ids("attention_mask").sum())]
    else:
        lengths = [n]

    def per_example(name: str, k: int) -> Any:
        v = meta[name]
        return v[k] if isinstance(v, list) else v

    examples, start = [], 0
    for k, length in enumerate(lengths):
        examples.append(
            Example(
                start,
                start + length,
                per_example("source_file", k) or "",
                int(per_example("source_line", k) or 0),
                bool(per_example("truncated", k)),
                bool(per_example("boundary_adjusted", k)),
                turn=per_example("turn", k),
            )
        )
        start += length
    return examples, n - start


def unpack(row: Row, labels: str) -> list[Row]:
    """A packed row's examples as the rows an unpacked build writes (:func:`sftprep.packing.unpack_row`).

    Each keeps the packed row's ``index`` and says which example it is in ``example``.
    An unpacked row comes back as it is.
    """
    if row.stored is None:
        return [row]
    parts = unpack_row(row.stored)
    out = []
    for k, part in enumerate(parts):
        example = _row(list(part), functools.partial(_as_array, part), part.__getitem__, row.index, labels)
        example.example = (k, len(parts))
        out.append(example)
    return out


def _as_array(values: dict[str, Any], name: str) -> np.ndarray:
    return np.asarray(values[name])


def fetch(
    rows: Rows, groups: list[tuple[int, int]], index: Sequence[tuple[int, int]] = ()
) -> Iterator[list[Row]]:
    """The rows of each chosen example, in order; with ``index``, only those row numbers.

    Stops reading as soon as the last wanted row is found.
    """
    want = [np.arange(a, b) for a, b in groups]
    flat = np.concatenate(want) if want else np.zeros(0, dtype=np.int64)
    owner = np.repeat(np.arange(len(groups)), [b - a for a, b in groups])
    if index:
        inside = in_ranges(flat, index)
        flat, owner = flat[inside], owner[inside]
    labels = str(rows.convention.get("labels", "shifted"))
    current: list[Row] = []
    group = 0
    base = 0
    for batch in rows.batches():
        lo, hi = np.searchsorted(flat, [base, base + batch.num_rows])
        cols = _Columns(batch)
        for k in range(lo, hi):
            if owner[k] != group and current:
                yield current
                current = []
            group = owner[k]
            current.append(_make_row(cols, int(flat[k] - base), int(flat[k]), labels))
        base += batch.num_rows
        if hi == len(flat):
            break
    if current:
        yield current


def merge_exploded(group: list[Row]) -> Row:
    """The exploded rows of one example as one sequence row (the full ids, every target).

    Rows whose prefix is not a prefix of the longest one are left out of the
    targets; :func:`token_lines` shows them separately.
    """
    longest = max(group, key=lambda r: len(r.input_ids))
    ids = np.append(longest.input_ids, longest.target_id if longest.target_id is not None else [])
    ids = ids.astype(np.int64)
    targets = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
    for row in group:
        n = len(row.input_ids)
        if n and row.target_id is not None and np.array_equal(ids[:n], row.input_ids):
            targets[n - 1] = row.target_id
    first = group[0]
    return Row(
        first.index,
        first.source_file,
        first.source_line,
        ids,
        targets,
        first.truncated,
        first.boundary_adjusted,
        int((targets != IGNORE_INDEX).sum()),
        None,
        dict(first.extra),
    )
