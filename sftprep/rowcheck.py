"""The rules every stored row follows, checked vectorised one record batch at a time.

``sftprep verify`` (:mod:`sftprep.verify`) runs :meth:`RowChecker.check` on every
record batch of a build. Each rule is a numpy expression over the batch's flat
token arrays, so a batch costs a few passes over its tokens, never a Python loop
over rows. The rules (README "Label conventions", :mod:`sftprep.labels`,
:mod:`sftprep.packing`, :mod:`sftprep.padding`):

* every id is in the vocabulary; list columns have one value per token;
* shifted rows: ``target_ids[t]`` is ``input_ids[t+1]`` or -100, -100 at the
  last position of a row or example and in padding; ``loss_mask`` is 1 exactly
  where ``target_ids`` is not -100;
* hf rows: ``labels[j]`` is ``input_ids[j]`` or -100, -100 at the first token of
  a row or example and in padding;
* packed rows: ``position_ids`` count 0, 1, ... from each example's start (and
  again over the padding); per-example lists have one entry per example;
* padded rows: ``attention_mask`` is 1 on the real tokens and 0 on padding,
  padding holds the pad id, and rows have the padded length;
* exploded rows: ``position`` is the prefix length, and the rows of one example
  extend each other (row k+1's prefix is row k's prefix plus row k's target);
* every row (every example of a packed row) trains at least one token, and
  ``num_trained_tokens`` says how many.

Example: shifted ``input_ids [5, 6, 7]``, ``target_ids [-100, 8, -100]`` breaks
the first rule at position 1 (8 is not ``input_ids[2]`` = 7).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sftprep.arrays import filled, ranges, to_numpy
from sftprep.labels import IGNORE_INDEX, NULLABLE
from sftprep.padding import padded_lengths


@dataclass
class Finding:
    """One rule broken in some rows of a batch.

    Attributes:
        column: the column that breaks it.
        rows: the batch-relative rows that break it (each once).
        positions: for each row, the first position that breaks it (None: a per-row rule).
        message: what is wrong, with ``{value}`` etc. filled from the first position per row.
    """

    column: str
    rows: np.ndarray
    positions: np.ndarray | None
    message: str
    details: list[str] = field(default_factory=list)


@dataclass
class Layout:
    """What a build's rows look like, from its manifest."""

    mode: str = "sequence"
    labels: str = "shifted"
    packed: bool = False
    padded: bool = False
    vocab_size: int | None = None
    pad_id: int | None = None
    pad_length: int | None = None
    pad_multiple: int | None = None

    @classmethod
    def of(cls, manifest: dict[str, Any]) -> Layout:
        convention = manifest.get("label_convention") or {}
        config = manifest.get("config") or {}
        padding = manifest.get("padding") or {}
        return cls(
            mode=convention.get("mode", config.get("mode", "sequence")),
            labels=convention.get("labels", config.get("labels", "shifted")),
            packed=bool(convention.get("packed", config.get("pack"))),
            padded=bool(convention.get("padded")),
            vocab_size=(manifest.get("tokenizer") or {}).get("vocab_size"),
            pad_id=padding.get("pad_id"),
            pad_length=config.get("max_length") if padding.get("to") == "max-length" else None,
            pad_multiple=padding.get("multiple_of"),
        )


@dataclass
class Totals:
    """What the checked rows add up to, for the manifest's counts."""

    rows: int = 0
    examples: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    truncated: int = 0
    boundary_adjusted: int = 0


def _lengths(column: pa.Array) -> np.ndarray:
    offsets = to_numpy(column.offsets).astype(np.int64)
    return np.diff(offsets)


def _flat(column: pa.Array) -> np.ndarray:
    return to_numpy(column.flatten())


def _starts(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


class _Batch:
    """One batch's flat token arrays and the per-token row bookkeeping the rules share."""

    def __init__(self, batch: pa.RecordBatch):
        self.batch = batch
        ids = batch.column("input_ids")
        self.lengths = _lengths(ids)
        self.offsets = _starts(self.lengths)
        self.ids = _flat(ids)
        self.row_of = np.repeat(np.arange(batch.num_rows), self.lengths)
        self.pos = np.arange(len(self.ids)) - self.offsets[:-1][self.row_of]

    def tokens(
        self, column: str, bad: np.ndarray, message: str, values: dict[str, np.ndarray]
    ) -> Finding | None:
        """A finding for the flat tokens where ``bad`` holds: the first one of each row."""
        where = np.flatnonzero(bad)
        if not len(where):
            return None
        rows, first = np.unique(self.row_of[where], return_index=True)
        at = where[first]
        details = [message.format(**{k: int(v[i]) for k, v in values.items()}) for i in at[:50]]
        return Finding(column, rows, at - self.offsets[:-1][rows], message, details)


def _sums(flags: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """How many flags are set in each run ``flags[starts[i] : starts[i] + lengths[i]]``."""
    ends = starts + lengths
    if len(starts) and (lengths > 0).all() and (starts[1:] == ends[:-1]).all() and ends[-1] == len(flags):
        # Runs that tile the array (rows; unpadded examples): reduceat, 4x faster than a cumsum.
        return np.add.reduceat(flags.view(np.int8), starts, dtype=np.int32).astype(np.int64)
    cum = np.zeros(len(flags) + 1, dtype=np.int64)
    np.cumsum(flags, out=cum[1:])
    return cum[ends] - cum[starts]


def _rows(column: str, bad: np.ndarray, message: str) -> Finding | None:
    rows = np.flatnonzero(bad)
    return Finding(column, rows, None, message, [message] * min(len(rows), 50)) if len(rows) else None


class RowChecker:
    """Checks record batches of one build against its :class:`Layout`.

    Exploded rows of one example may straddle two batches, so the checker keeps
    the last row of the batch before.
    """

    def __init__(self, layout: Layout):
        self.layout = layout
        self.totals = Totals()
        self._last: dict[str, Any] | None = None  # exploded: the previous batch's last row

    def check(self, batch: pa.RecordBatch) -> list[Finding]:
        """Every rule broken in ``batch``; adds its rows to :attr:`totals`."""
        found: list[Finding | None] = [
            _rows(name, to_numpy(col.is_null()), "null value")
            for name, col in zip(batch.schema.names, batch.columns, strict=True)
            if col.null_count and name not in NULLABLE
        ]
        if any(found):
            return [f for f in found if f]
        b = _Batch(batch)
        self.totals.rows += batch.num_rows
        found += self._vocab(b)
        if self.layout.mode == "exploded":
            found += self._exploded(b)
        else:
            found += self._sequence(b)
        return [f for f in found if f is not None]

    def _vocab(self, b: _Batch) -> list[Finding | None]:
        vocab = self.layout.vocab_size
        if vocab is None:
            return []
        bad = (b.ids < 0) | (b.ids >= vocab)
        out = [
            b.tokens("input_ids", bad, f"id {{id}} is outside the vocabulary (0..{vocab - 1})", {"id": b.ids})
        ]
        if "target_id" in b.batch.schema.names:
            target = to_numpy(b.batch.column("target_id"))
            out.append(
                _rows("target_id", (target < 0) | (target >= vocab), "target id outside the vocabulary")
            )
        return out

    # -- sequence rows (plain, packed, padded) ------------------------------------------------

    def _sequence(self, b: _Batch) -> list[Finding | None]:
        found: list[Finding | None] = []
        cols = b.batch.schema.names
        per_token = [
            c for c in ("target_ids", "loss_mask", "labels", "attention_mask", "position_ids") if c in cols
        ]
        aligned = {}
        for name in per_token:
            lengths = _lengths(b.batch.column(name))
            bad = lengths != b.lengths
            found.append(_rows(name, bad, "has a different length than input_ids"))
            if not bad.any():
                aligned[name] = _flat(b.batch.column(name))
        ex = self._examples(b, found)
        if ex is None:
            return found
        ex_len, ex_start, ex_row, real = ex
        first = np.zeros(len(b.ids), dtype=bool)
        last = np.zeros(len(b.ids), dtype=bool)
        nonempty = ex_len > 0
        first[ex_start[nonempty]] = True
        last[(ex_start + ex_len - 1)[nonempty]] = True
        labelled = self._labels(b, aligned, first, last, real, found)
        if "attention_mask" in aligned:
            att = aligned["attention_mask"]
            found.append(b.tokens("attention_mask", att != real, "is {value}, expected {want} (1 on tokens, 0 on padding)",
                                  {"value": att, "want": real.astype(np.int8)}))  # fmt: skip
        if "position_ids" in aligned:
            found.append(self._positions(b, aligned["position_ids"], ex_len, ex_start, real))
        if self.layout.padded:
            found += self._padding(b, real)
        if labelled is not None:
            found += self._trained_counts(b, labelled, ex_len, ex_start, ex_row)
        self._count_flags(b)
        self.totals.examples += len(ex_len)
        self.totals.tokens += int(real.sum())
        return found

    def _examples(self, b: _Batch, found: list[Finding | None]):
        """Each example's length, flat start and row, and which tokens are real (not padding)."""
        batch = b.batch
        if "seq_lengths" in batch.schema.names:
            seq = batch.column("seq_lengths")
            per_row = _lengths(seq)
            ex_len = _flat(seq).astype(np.int64)
            ex_row = np.repeat(np.arange(batch.num_rows), per_row)
            for name in ("source_file", "source_line", "truncated", "boundary_adjusted", "turn"):
                if name in batch.schema.names and pa.types.is_list(batch.schema.field(name).type):
                    bad = _lengths(batch.column(name)) != per_row
                    found.append(_rows(name, bad, "does not list one entry per example (seq_lengths)"))
        else:
            ex_row = np.arange(batch.num_rows)
            ex_len = b.lengths.copy()
            if self.layout.padded and "attention_mask" in batch.schema.names:
                ex_len = (
                    np.add.reduceat(_flat(batch.column("attention_mask")).astype(np.int64), b.offsets[:-1])
                    if len(b.ids)
                    else ex_len
                )
                ex_len = np.where(b.lengths > 0, ex_len, 0)
        real_len = np.bincount(ex_row, weights=ex_len, minlength=batch.num_rows).astype(np.int64)
        too_long = real_len > b.lengths
        found.append(
            _rows(
                "seq_lengths",
                too_long & ("seq_lengths" in batch.schema.names),
                "add up to more than the row's tokens",
            )
        )
        if too_long.any() or (ex_len < 0).any():
            return None
        if not self.layout.padded:
            found.append(
                _rows(
                    "seq_lengths",
                    real_len != b.lengths,
                    "do not add up to the row's tokens (no padding in this build)",
                )
            )
        in_row = (
            _starts(ex_len)[:-1]
            - _starts(ex_len)[_starts(np.bincount(ex_row, minlength=batch.num_rows))[ex_row]]
        )
        ex_start = b.offsets[:-1][ex_row] + in_row
        real = b.pos < real_len[b.row_of]
        return ex_len, ex_start, ex_row, real

    def _labels(self, b, aligned, first, last, real, found) -> tuple[np.ndarray, np.ndarray] | None:
        """Check the label columns.

        Returns:
            Per token: is it a rightly trained target; and per label position: is it labelled at all
            (what ``num_trained_tokens`` counts).
        """
        n = len(b.ids)
        if self.layout.labels == "hf":
            if "labels" not in aligned:
                return None
            lab = aligned["labels"]
            on = lab != IGNORE_INDEX
            found.append(
                b.tokens(
                    "labels",
                    on & (lab != b.ids),
                    "is {value}, neither input_ids ({id}) nor -100",
                    {"value": lab, "id": b.ids},
                )
            )
            found.append(
                b.tokens(
                    "labels",
                    on & first,
                    "{value} on the first token of a row or example (nothing predicts it)",
                    {"value": lab},
                )
            )
            found.append(
                b.tokens(
                    "labels", on & ~real, "{value} on padding (padding is never trained)", {"value": lab}
                )
            )
            return on & real & ~first, on
        if "target_ids" not in aligned:
            return None
        tgt = aligned["target_ids"]
        on = tgt != IGNORE_INDEX
        nxt = np.full(n, IGNORE_INDEX, dtype=np.int64)
        nxt[:-1] = b.ids[1:]
        row_end = b.pos == b.lengths[b.row_of] - 1
        nxt[row_end] = IGNORE_INDEX
        found.append(b.tokens("target_ids", on & (tgt != nxt) & ~row_end, "is {value}, neither input_ids[t+1] ({next}) nor -100",
                              {"value": tgt, "next": nxt}))  # fmt: skip
        found.append(b.tokens("target_ids", on & last & real, "{value} at the last token of a row or example (a label crossing into what follows)",
                              {"value": tgt}))  # fmt: skip
        found.append(
            b.tokens(
                "target_ids", on & ~real, "{value} on padding (padding is never trained)", {"value": tgt}
            )
        )
        if "loss_mask" in aligned:
            mask = aligned["loss_mask"]
            found.append(
                b.tokens(
                    "loss_mask",
                    mask != on,
                    "is {value} where target_ids is {target}",
                    {"value": mask, "target": tgt},
                )
            )
        trained = np.zeros(n, dtype=bool)
        trained[1:] = on[:-1] & ~row_end[:-1]
        return trained & real & ~first, on

    def _positions(self, b, positions, ex_len, ex_start, real) -> Finding | None:
        # Each token's segment (example, or the padding after them) starts where the last
        # segment start at or before it is: a running maximum over the starts.
        n = len(b.ids)
        starts = np.zeros(n, dtype=np.int64)
        starts[b.offsets[:-1][b.lengths > 0]] = b.offsets[:-1][b.lengths > 0]
        starts[ex_start[ex_len > 0]] = ex_start[ex_len > 0]
        pad_start = np.flatnonzero(~real & np.append(True, real[:-1] | (b.pos[1:] == 0)))
        starts[pad_start] = pad_start
        want = np.arange(n) - np.maximum.accumulate(starts) if n else starts
        return b.tokens("position_ids", positions != want, "is {value}, expected {want} (positions restart at each example)",
                        {"value": positions, "want": want})  # fmt: skip

    def _padding(self, b, real) -> list[Finding | None]:
        out = []
        if self.layout.pad_id is not None:
            out.append(b.tokens("input_ids", ~real & (b.ids != self.layout.pad_id),
                                f"padding holds {{value}}, not the pad id {self.layout.pad_id}", {"value": b.ids}))  # fmt: skip
        if self.layout.pad_length is not None or self.layout.pad_multiple is not None:
            real_len = _sums(real, b.offsets[:-1], b.lengths)
            want = padded_lengths(real_len, self.layout.pad_length, self.layout.pad_multiple)
            out.append(_rows("input_ids", want != b.lengths, "is not padded to the build's length"))
        return out

    def _trained_counts(self, b, labelled, ex_len, ex_start, ex_row) -> list[Finding | None]:
        trained, on = labelled
        per_row = _sums(trained, b.offsets[:-1], b.lengths)
        labels = _sums(on, b.offsets[:-1], b.lengths)
        stored = to_numpy(b.batch.column("num_trained_tokens")).astype(np.int64)
        out = [_rows("num_trained_tokens", stored != labels, "does not match the labels in the row"),
               _rows("input_ids", per_row == 0, "no trained token in this row")]  # fmt: skip
        if "seq_lengths" in b.batch.schema.names:
            per_ex = _sums(trained, ex_start, ex_len)
            empty = np.bincount(ex_row[per_ex == 0], minlength=len(b.lengths)) > 0
            out.append(_rows("seq_lengths", empty & (per_row > 0), "an example in this row trains no token"))
        self.totals.trained_tokens += int(labels.sum())
        return out

    def _count_flags(self, b: _Batch) -> None:
        for name in ("truncated", "boundary_adjusted"):
            column = b.batch.column(name)
            flags = _flat(column) if pa.types.is_list(column.type) else to_numpy(column)
            setattr(self.totals, name, getattr(self.totals, name) + int(np.count_nonzero(flags)))

    # -- exploded rows ---------------------------------------------------------------------------

    def _exploded(self, b: _Batch) -> list[Finding | None]:
        batch = b.batch
        position = to_numpy(batch.column("position")).astype(np.int64)
        target = to_numpy(batch.column("target_id")).astype(np.int64)
        trained = to_numpy(batch.column("num_trained_tokens"))
        found: list[Finding | None] = [
            _rows("position", position != b.lengths, "is not the length of input_ids"),
            _rows("position", b.lengths < 1, "0: a row's first token is never trained"),
            _rows("num_trained_tokens", trained != 1, "is not 1 (an exploded row trains one token)"),
        ]
        keys = [batch.column(c) for c in ("source_file", "source_line", "turn") if c in batch.schema.names]
        same = np.ones(max(batch.num_rows - 1, 0), dtype=bool)
        for key in keys:
            key = filled(key, -1) if pa.types.is_integer(key.type) else key  # turn: null for pairs
            same &= to_numpy(pc.equal(key[1:], key[:-1]))
        same &= b.lengths[1:] > b.lengths[:-1]
        # Row k+1 of the same example: its prefix starts with row k's prefix, then row k's target.
        k = np.flatnonzero(same)
        a_idx = ranges(b.offsets[k], b.lengths[k])
        b_idx = ranges(b.offsets[k + 1], b.lengths[k])
        differs = np.zeros(batch.num_rows, dtype=bool)
        if len(a_idx):
            bad_tok = b.ids[a_idx] != b.ids[b_idx]
            owner = np.repeat(k, b.lengths[k])
            differs[owner[bad_tok] + 1] = True
        differs[k + 1] |= b.ids[b.offsets[k + 1] + b.lengths[k]] != target[k]
        found.append(
            _rows(
                "input_ids",
                differs,
                "does not extend the previous row of its example by that row's target_id",
            )
        )
        found.append(self._straddle(batch, b, target, same))
        starts = np.ones(batch.num_rows, dtype=bool)
        starts[1:] = ~same
        if self._last is not None and batch.num_rows and self._continues(batch, b):
            starts[0] = False
        self.totals.examples += int(starts.sum())
        self.totals.trained_tokens += batch.num_rows
        for name in ("truncated", "boundary_adjusted"):
            flags = to_numpy(batch.column(name))
            setattr(self.totals, name, getattr(self.totals, name) + int(np.count_nonzero(flags & starts)))
        if batch.num_rows:
            i = batch.num_rows - 1
            self._last = {"row": batch.slice(i, 1).to_pylist()[0]}
        return found

    def _continues(self, batch: pa.RecordBatch, b: _Batch) -> bool:
        assert self._last is not None
        prev, row = self._last["row"], batch.slice(0, 1).to_pylist()[0]
        keys = [c for c in ("source_file", "source_line", "turn") if c in batch.schema.names]
        return all(prev[c] == row[c] for c in keys) and row["position"] > prev["position"]

    def _straddle(self, batch, b, target, same) -> Finding | None:
        """The pair of rows across the boundary with the batch before."""
        if self._last is None or not batch.num_rows or not self._continues(batch, b):
            return None
        prev, ids = self._last["row"], b.ids[: b.lengths[0]].tolist()
        n = len(prev["input_ids"])
        if ids[:n] == prev["input_ids"] and ids[n] == prev["target_id"]:
            return None
        return _rows(
            "input_ids",
            np.arange(batch.num_rows) == 0,
            "does not extend the previous row of its example by that row's target_id",
        )
