"""Choosing rows: by number, source, condition or at random, grouped by example.

Filters run on whole record batches with Arrow compute and numpy; no row is
turned into Python objects until it is chosen. The rows of one exploded
example are consecutive, and a filter matches the example when one of its rows
matches.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sftprep.arrays import filled, to_numpy
from sftprep.errors import ConfigError
from sftprep.options import WHERE
from sftprep.view.source import Rows


@dataclass(frozen=True)
class Selection:
    """Which rows to show. Filters combine with AND; ``limit``/``random`` count examples.

    Attributes:
        index: row-number ranges ``(start, stop)``, from :func:`parse_index`.
        random: show this many examples chosen at random (with ``seed``).
        source: rows from this input file (the name as built, or its tail after a ``/``).
        lines: rows from these source lines (or record numbers), inclusive.
        where: conditions from :data:`WHERE`, all of which must hold.
        limit: how many examples to show; None shows all.
    """

    index: tuple[tuple[int, int], ...] = ()
    random: int | None = None
    seed: int = 0
    source: str | None = None
    lines: tuple[int, int] | None = None
    where: tuple[str, ...] = ()
    limit: int | None = 3


_RANGE = re.compile(r"^\s*(\d+)\s*(?:(-)\s*(\d*)\s*)?$")


def parse_index(text: str) -> list[tuple[int, int]]:
    """``"7"`` -> ``[(7, 8)]``; ``"10-12,20"`` -> ``[(10, 13), (20, 21)]``; ``"5-"`` is 5 onwards."""
    ranges = []
    for part in text.split(","):
        match = _RANGE.match(part)
        if not match:
            raise ConfigError(f"--index: '{part.strip()}' is not a row number or range (e.g. 7, 10-20, 5-)")
        start = int(match.group(1))
        stop = start + 1 if not match.group(2) else int(match.group(3)) + 1 if match.group(3) else 2**62
        if stop <= start:
            raise ConfigError(f"--index: the range '{part.strip()}' is empty")
        ranges.append((start, stop))
    return ranges


def parse_source(text: str) -> tuple[str | None, tuple[int, int] | None]:
    """``"qa.jsonl:17"`` -> ``("qa.jsonl", (17, 17))``; ``"qa.jsonl:3-9"``; ``"qa.jsonl"``; ``":17"``."""
    name, sep, tail = text.rpartition(":")
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", tail) if sep else None
    if not match:
        return text, None
    lo = int(match.group(1))
    return name or None, (lo, int(match.group(2) or lo))


def in_ranges(values: np.ndarray, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    inside = np.zeros(len(values), dtype=bool)
    for start, stop in ranges:
        inside |= (values >= start) & (values < stop)
    return inside


def row_lengths(batch: pa.RecordBatch, mode: str) -> np.ndarray:
    """Real tokens per row: padding left out; prefix + target for exploded rows.

    A packed row holds ``sum(seq_lengths)`` tokens before its padding; a padded
    row (or an hf row) has ``attention_mask`` 1 on its real tokens.
    """
    if mode == "exploded":
        return to_numpy(batch.column("position")).astype(np.int64) + 1
    for name in ("seq_lengths", "attention_mask"):
        if name in batch.schema.names:
            return list_sums(batch.column(name))
    return list_lengths(batch.column("input_ids"))


def list_lengths(column: pa.Array) -> np.ndarray:
    """Per row of a list column: how many values it holds."""
    return to_numpy(pc.list_value_length(column)).astype(np.int64)


def list_sums(column: pa.Array) -> np.ndarray:
    """Per row of a list column of numbers: their sum."""
    values = to_numpy(pc.list_flatten(column))
    parents = to_numpy(pc.list_parent_indices(column))
    return np.bincount(parents, weights=values, minlength=len(column))[: len(column)].astype(np.int64)


def _label_column(batch: pa.RecordBatch) -> str:
    return next(n for n in ("target_ids", "labels", "target_id") if n in batch.schema.names)


def _eos_trained(batch: pa.RecordBatch, eos_id: int) -> np.ndarray:
    """Per row: is the EOS token one of its trained targets?"""
    column = batch.column(_label_column(batch))
    if not pa.types.is_list(column.type):
        return to_numpy(column) == eos_id
    hits = to_numpy(pc.list_parent_indices(column))[to_numpy(pc.list_flatten(column)) == eos_id]
    return np.bincount(hits, minlength=batch.num_rows)[: batch.num_rows] > 0


def _any_per_row(column: pa.Array, test: Callable[[pa.Array], np.ndarray]) -> np.ndarray:
    """``test`` per row; for list columns (packed rows hold one value per example), any of them."""
    if not pa.types.is_list(column.type):
        return test(column)
    hits = to_numpy(pc.list_parent_indices(column))[test(pc.list_flatten(column))]
    return np.bincount(hits, minlength=len(column))[: len(column)] > 0


def any_flag(column: pa.Array) -> np.ndarray:
    return _any_per_row(column, lambda c: to_numpy(filled(c, False)))


def _row_filter(batch: pa.RecordBatch, base: int, rows: Rows, sel: Selection) -> np.ndarray:
    keep = np.ones(batch.num_rows, dtype=bool)
    if sel.index:
        keep &= in_ranges(np.arange(base, base + batch.num_rows), sel.index)
    if sel.source:
        name = sel.source
        hits = _any_per_row(batch.column("source_file"), lambda c: _names_match(c, name))
        if "source" in batch.schema.names:  # a recipe build: a source's name selects its rows
            hits |= _any_per_row(batch.column("source"), lambda c: _names_match(c, name))
        keep &= hits
    if sel.lines:
        lo, hi = sel.lines
        keep &= _any_per_row(batch.column("source_line"), lambda c: (lo <= to_numpy(c)) & (to_numpy(c) <= hi))
    for flag in ("truncated", "boundary-adjusted"):
        if flag in sel.where:
            keep &= any_flag(batch.column(flag.replace("-", "_")))
    if "max-length" in sel.where:
        keep &= row_lengths(batch, rows.mode) == rows.max_length
    return keep


def _names_match(files: pa.Array, name: str) -> np.ndarray:
    """Per value: is it the file ``name``, or a path ending in ``/name``?

    Compared once per distinct file (a build has few), in Python: pyarrow's
    string kernels would import pandas to convert ``name``.
    """
    encoded = files.dictionary_encode()
    names = encoded.dictionary.to_pylist()
    hits = np.array([n == name or n.endswith("/" + name) for n in names], dtype=bool)
    return hits[to_numpy(encoded.indices)] if len(names) else np.zeros(len(files), dtype=bool)


def example_matches(sel: Selection, source_file: str, source_line: int, flags: dict[str, bool]) -> bool:
    """Does one example of a packed row pass the source, line and flag filters (``--unpack``)?

    ``flags`` holds its ``truncated`` and ``boundary_adjusted`` flags.
    """
    if sel.source and not (source_file == sel.source or source_file.endswith("/" + sel.source)):
        return False
    if sel.lines and not sel.lines[0] <= source_line <= sel.lines[1]:
        return False
    return all(flags[f.replace("-", "_")] for f in ("truncated", "boundary-adjusted") if f in sel.where)


def _check_where(rows: Rows, sel: Selection) -> None:
    unknown = sorted(set(sel.where) - set(WHERE))
    if unknown:
        raise ConfigError(f"unknown --where {', '.join(unknown)} (choose from {', '.join(WHERE)})")
    if "max-length" in sel.where and rows.max_length is None:
        raise ConfigError(f"{rows.name} was built without --max-length, so no row can hit it")
    if "no-eos" in sel.where and rows.convention.get("eos_id") is None:
        raise ConfigError(f"{rows.name}: the label convention does not name the EOS id")


def _group_starts(batch: pa.RecordBatch, mode: str, previous: tuple | None) -> np.ndarray:
    """Per row: does it start a new example? Exploded rows of one example are consecutive."""
    n = batch.num_rows
    if mode != "exploded":
        return np.ones(n, dtype=bool)
    files, lines = batch.column("source_file"), to_numpy(batch.column("source_line"))
    position = to_numpy(batch.column("position"))
    starts = np.empty(n, dtype=bool)
    if n > 1:
        other_file = pc.not_equal(files.slice(1), files.slice(0, n - 1))
        starts[1:] = to_numpy(other_file) | (lines[1:] != lines[:-1])
        starts[1:] |= position[1:] <= position[:-1]
    if previous is None:
        starts[0] = True
    else:
        file, line, pos = previous
        starts[0] = files[0].as_py() != file or lines[0] != line or position[0] <= pos
    return starts


def _matching_groups(rows: Rows, sel: Selection) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(firsts, stops)`` row ranges of the examples that match, a batch at a time.

    An example matches when one of its rows passes every row filter and, for
    ``no-eos``, none of its rows trains the EOS token.
    """
    _check_where(rows, sel)
    no_eos = "no-eos" in sel.where
    pending: list[Any] | None = None  # [first, stop, matched, eos] of an example that may go on
    previous: tuple | None = None
    base = 0

    def finished(group: list[Any]) -> bool:
        return bool(group[2] and not (no_eos and group[3]))

    for batch in rows.batches():
        n = batch.num_rows
        if n == 0:
            continue
        starts = _group_starts(batch, rows.mode, previous)
        match = _row_filter(batch, base, rows, sel)
        eos = _eos_trained(batch, rows.convention["eos_id"]) if no_eos else np.zeros(n, dtype=bool)
        cut = np.flatnonzero(starts)
        head = int(cut[0]) if len(cut) else n
        if pending is not None:
            pending[1] += head
            pending[2] |= bool(match[:head].any())
            pending[3] |= bool(eos[:head].any())
            if len(cut):
                if finished(pending):
                    yield np.array([pending[0]]), np.array([pending[1]])
                pending = None
        if len(cut):
            matched = np.logical_or.reduceat(match, cut)
            trains_eos = np.logical_or.reduceat(eos, cut)
            ok = matched & ~trains_eos if no_eos else matched
            stops = np.append(cut[1:], n)
            done = np.flatnonzero(ok[:-1])
            if len(done):
                yield base + cut[done], base + stops[done]
            pending = [base + int(cut[-1]), base + n, bool(matched[-1]), bool(trains_eos[-1])]
        if rows.mode == "exploded":
            last = n - 1
            previous = (
                batch.column("source_file")[last].as_py(),
                int(batch.column("source_line")[last].as_py()),
                int(batch.column("position")[last].as_py()),
            )
        base += n
    if pending is not None and finished(pending):
        yield np.array([pending[0]]), np.array([pending[1]])


def choose(rows: Rows, sel: Selection) -> list[tuple[int, int]]:
    """The ``(first, stop)`` row ranges of the examples to show, in row order."""
    if sel.random is None:
        chosen: list[tuple[int, int]] = []
        for firsts, stops in _matching_groups(rows, sel):
            chosen.extend(zip(firsts.tolist(), stops.tolist(), strict=True))
            if sel.limit is not None and len(chosen) >= sel.limit:
                return chosen[: sel.limit]
        return chosen
    firsts, stops = all_groups(rows, sel)
    pick = sorted(random.Random(sel.seed).sample(range(len(firsts)), min(sel.random, len(firsts))))
    return [(int(firsts[i]), int(stops[i])) for i in pick]


def all_groups(rows: Rows, sel: Selection) -> tuple[np.ndarray, np.ndarray]:
    parts = list(_matching_groups(rows, sel))
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
