"""Rows, independent of the label convention: the form every view draws from.

Position ``t`` of a :class:`Row` is trained to predict ``row.targets[t]``
(-100 where it is not trained), whether the build stored shifted
``target_ids``, unshifted Hugging Face ``labels`` or exploded
``(prefix, target_id)`` rows, so the three conventions print alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from sftprep.labels import IGNORE_INDEX, META_FIELDS
from sftprep.view.choose import in_ranges
from sftprep.view.source import Rows

_MODEL_COLUMNS = {"input_ids", "target_ids", "loss_mask", "labels", "attention_mask", "target_id", "position"}
KNOWN_COLUMNS = frozenset(_MODEL_COLUMNS | {f.name for f in META_FIELDS})


@dataclass
class Row:
    """One stored row, with its labels in one convention-free form.

    Attributes:
        index: the row's number in the build (0-based, over all shards).
        input_ids: the ids the model reads.
        targets: per position ``t``, the id that position is trained to predict,
            or -100 (the shifted convention: ``--labels hf`` rows are shifted here).
        target_id: exploded rows: the one trained token, after ``input_ids``.
        extra: columns sftprep does not know (a later ``position_ids``, ...).
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

    @property
    def next_ids(self) -> list[int | None]:
        """Per position, the token that follows it (what the model sees next)."""
        after = [int(i) for i in self.input_ids[1:]]
        return [*after, self.target_id]

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
            self._lists[name] = (column.offsets.to_numpy(), column.values.to_numpy(zero_copy_only=False))
        offsets, values = self._lists[name]
        return values[offsets[i] : offsets[i + 1]]

    def value(self, name: str, i: int) -> Any:
        return self.batch.column(name)[i].as_py()


def _make_row(cols: _Columns, i: int, index: int, labels: str) -> Row:
    ids = cols.ids("input_ids", i)
    target_id = None
    if "target_id" in cols.names:
        target_id = int(cols.value("target_id", i))
        targets = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
        if len(ids):
            targets[-1] = target_id
    elif "labels" in cols.names and labels == "hf":
        targets = np.append(cols.ids("labels", i)[1:], IGNORE_INDEX)
    else:
        targets = cols.ids("target_ids", i)
    meta = {f.name: cols.value(f.name, i) if f.name in cols.names else None for f in META_FIELDS}
    extra = {n: cols.value(n, i) for n in cols.names if n not in KNOWN_COLUMNS}
    # Packed rows hold one source, line and flag per example: keep those lists as
    # they are (extra), and the first example's source as the row's.
    extra.update({k: v for k, v in meta.items() if isinstance(v, list)})
    first = {k: (v[0] if v else None) if isinstance(v, list) else v for k, v in meta.items()}
    return Row(
        index=index,
        source_file=first["source_file"] or "",
        source_line=int(first["source_line"] or 0),
        input_ids=ids,
        targets=targets,
        truncated=_any(meta["truncated"]),
        boundary_adjusted=_any(meta["boundary_adjusted"]),
        num_trained_tokens=int(first["num_trained_tokens"] or 0),
        target_id=target_id,
        extra=extra,
    )


def _any(value: Any) -> bool:
    """A flag, or any of a packed row's per-example flags."""
    return any(value) if isinstance(value, list) else bool(value)


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
