"""``inspect --stats``: lengths, trained fraction and build counts of the selected rows."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.text import Text

from sftprep.arrays import filled, numpy_array, to_numpy
from sftprep.errors import counted
from sftprep.packing import PackStats
from sftprep.view.choose import Selection, all_groups, any_flag, in_ranges, list_lengths, row_lengths
from sftprep.view.draw import Look, rule, wrap
from sftprep.view.source import Rows


def _nearest_rank(sorted_values: np.ndarray, q: float) -> int:
    """The q-quantile as a value that occurs: ``sorted[ceil(q * n) - 1]``."""
    return int(sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)])


def histogram(values: np.ndarray, bins: int = 10) -> list[tuple[int, int, int]]:
    """Counts of integer values in about ``bins`` bins of a round width: ``(low, high, count)``.

    ``[3, 5, 12, 18]`` in 4 bins -> ``[(0, 4, 1), (5, 9, 1), (10, 14, 1), (15, 19, 1)]``.
    """
    if len(values) == 0:
        return []
    lo, hi = int(values.min()), int(values.max())
    raw = max(1, math.ceil((hi - lo + 1) / bins))
    step = next(m * 10**e for e in range(20) for m in (1, 2, 5) if m * 10**e >= raw)
    start = lo // step * step
    counts = np.bincount((values - start) // step)
    return [(start + k * step, start + (k + 1) * step - 1, int(c)) for k, c in enumerate(counts)]


@dataclass
class _Tally:
    """What the selected rows hold, gathered a record batch at a time."""

    rows: int = 0
    trained: int = 0
    padding: int = 0
    lengths: list[np.ndarray] = field(default_factory=list)  # per example, or per exploded row
    owners: list[np.ndarray] = field(default_factory=list)  # the example each length belongs to
    truncated: list[np.ndarray] = field(default_factory=list)
    adjusted: list[np.ndarray] = field(default_factory=list)
    per_row: list[np.ndarray] = field(default_factory=list)  # packed rows: examples in each

    def add(self, batch: pa.RecordBatch, owner: np.ndarray, mode: str) -> None:
        self.rows += batch.num_rows
        self.trained += int(to_numpy(batch.column("num_trained_tokens")).sum())
        real = row_lengths(batch, mode)
        if mode != "exploded":
            self.padding += int((list_lengths(batch.column("input_ids")) - real).sum())
        if "seq_lengths" not in batch.schema.names:
            self.lengths.append(real)
            self.owners.append(owner)
            self.truncated.append(any_flag(batch.column("truncated")))
            self.adjusted.append(any_flag(batch.column("boundary_adjusted")))
            return
        # A packed row holds several examples: each is one, with its own flags.
        lengths = _flat(batch.column("seq_lengths")).astype(np.int64)
        done = sum(len(p) for p in self.lengths)
        self.lengths.append(lengths)
        self.owners.append(np.arange(done, done + len(lengths)))
        self.truncated.append(_flat(batch.column("truncated"), False))
        self.adjusted.append(_flat(batch.column("boundary_adjusted"), False))
        self.per_row.append(list_lengths(batch.column("seq_lengths")))


def _flat(column: pa.Array, fill: Any = 0) -> np.ndarray:
    """A list column's values, one after another (``fill`` where a value is null)."""
    return to_numpy(filled(pc.list_flatten(column), fill))


def _cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def _tally(rows: Rows, sel: Selection) -> _Tally:
    firsts, stops = all_groups(rows, sel)
    tally = _Tally()
    base = 0
    for batch in rows.batches():
        idx = np.arange(base, base + batch.num_rows)
        owner = np.searchsorted(firsts, idx, side="right") - 1
        keep = (owner >= 0) & (idx < stops[np.maximum(owner, 0)]) if len(firsts) else np.zeros(len(idx), bool)
        if sel.index:
            keep &= in_ranges(idx, sel.index)
        base += batch.num_rows
        if keep.any():
            tally.add(batch.filter(numpy_array(keep, pa.bool_())), owner[keep], rows.mode)
    return tally


def compute_stats(rows: Rows, sel: Selection) -> dict[str, Any]:
    """Figures over the selected rows (all rows when nothing is filtered), JSON-ready.

    Lengths are per example: a sequence row without its padding, an exploded
    example's prefix + target, each example of a packed row. Build-wide counts
    (skips, drops) come from the manifest. For packed rows, ``packing`` has the
    figures the manifest has, recomputed from the selected rows' ``seq_lengths``
    (``build_packing`` is the manifest's, for the whole build).
    """
    tally = _tally(rows, sel)
    owner_all = _cat(tally.owners, np.int64)
    groups, first_of = np.unique(owner_all, return_index=True)
    per_example = np.zeros(len(groups), dtype=np.int64)
    np.maximum.at(per_example, np.searchsorted(groups, owner_all), _cat(tally.lengths, np.int64))
    tokens = int(per_example.sum())
    ordered = np.sort(per_example)
    max_length = rows.max_length
    manifest = rows.manifest or {}
    return {
        "output": rows.name,
        "selection": bool(sel.index or sel.source or sel.lines or sel.where),
        "rows": tally.rows,
        "examples": len(groups),
        "tokens": tokens,
        "trained_tokens": tally.trained,
        "trained_fraction": tally.trained / tokens if tokens else 0.0,
        "padding_tokens": tally.padding,
        "length": None
        if not len(ordered)
        else {
            "min": int(ordered[0]),
            "median": float(np.median(ordered)),
            "p95": _nearest_rank(ordered, 0.95),
            "max": int(ordered[-1]),
        },
        "histogram": [{"from": a, "to": b, "count": c} for a, b, c in histogram(per_example)],
        "max_length": max_length,
        "at_max_length": int((per_example == max_length).sum()) if max_length else 0,
        "truncated": int(_cat(tally.truncated, bool)[first_of].sum()),
        "boundary_adjusted": int(_cat(tally.adjusted, bool)[first_of].sum()),
        "packing": _packing(tally, tokens, manifest.get("packing"), max_length) if rows.packed else None,
        "build_packing": manifest.get("packing"),
        "build_counts": manifest.get("counts"),
        "label_convention": rows.convention,
        "tokenizer": manifest.get("tokenizer"),
        # a recipe build's per-source counts (a plain build's figures stay as they were)
        **(
            {"sources": manifest["sources"], "splits": list(manifest["splits"])}
            if manifest.get("sources")
            else {}
        ),
    }


def _packing(tally: _Tally, tokens: int, build: dict[str, Any] | None, max_length: int | None) -> dict:
    """The manifest's ``packing`` figures for the selected rows (equal to it when all are selected)."""
    build = build or {}
    stats = PackStats(int(build.get("max_length") or max_length or 0), int(build.get("buffer_examples") or 0))
    per_row = _cat(tally.per_row, np.int64)
    stats.rows, stats.examples, stats.tokens, stats.trained_tokens = (
        tally.rows,
        int(per_row.sum()),
        tokens,
        tally.trained,
    )
    stats.examples_per_row = Counter(per_row.tolist())
    return stats.as_dict()


_CONVENTIONS = {
    ("sequence", "shifted"): "shifted (input_ids, target_ids, loss_mask): no shift in the loss",
    ("sequence", "hf"): "hf (input_ids, attention_mask, labels): the model shifts in its loss",
    ("exploded", "shifted"): "exploded (input_ids = prefix, target_id): a row per trained token",
}


def stats_view(stats: dict[str, Any], look: Look) -> list[Text]:
    """:func:`compute_stats` figures as aligned lines, with a length histogram."""
    lines = rule(f"{stats['output']}{' (selected rows)' if stats['selection'] else ''}", look)

    def add(label: str, *values: str) -> None:
        pieces = [p for v in values for p in wrap(Text(v), max(20, look.width - _LABEL))]
        for k, piece in enumerate(pieces):
            line = Text(f"{label if k == 0 else '':<{_LABEL}}", style=look.style("header"))
            lines.append(line.append_text(piece))

    rows, examples, limit, at = stats["rows"], stats["examples"], stats["max_length"], stats["at_max_length"]
    add("rows", f"{rows:,}" + (f" from {counted(examples, 'example')}" if rows != examples else ""))
    fraction = stats["trained_fraction"]
    add("tokens", f"{stats['tokens']:,}, of which {stats['trained_tokens']:,} trained ({fraction:.1%})")
    length = stats["length"]
    if length:
        add(
            "length",
            f"min {length['min']:,} · median {length['median']:,g} · p95 {length['p95']:,} · "
            f"max {length['max']:,} tokens",
        )
        lines += _histogram_lines(stats["histogram"], look)
    share = f" ({at / examples:.1%})" if examples else ""
    add(
        "max length",
        f"{limit:,}: {at:,} example{'s' * (at != 1)} at the limit{share}" if limit else "not set",
    )
    add("flagged", f"truncated {stats['truncated']:,} · boundary adjusted {stats['boundary_adjusted']:,}")
    if stats["packing"]:
        build = stats["build_packing"] if stats["selection"] else None
        _packing_lines(stats["packing"], build, add, lines, look)
    padding = stats["padding_tokens"]
    if padding:
        share = padding / (padding + stats["tokens"])
        add("padding", f"{padding:,} tokens ({share:.1%} of the rows), never attended or trained")
    counts = stats["build_counts"]
    if counts:
        skipped = ", ".join(f"{k} {v:,}" for k, v in (counts.get("skipped") or {}).items())
        add(
            "records",
            f"{counts['records_read']:,} read · skipped {counts.get('skipped_total', 0):,}"
            f"{f' ({skipped})' if skipped else ''} · dropped as too long {counts['dropped_too_long']:,}",
        )
        add(
            "build",
            f"truncated {counts['truncated']:,} · boundary adjusted {counts['boundary_adjusted']:,} · "
            f"EOS in text {counts.get('eos_in_text', 0):,} · double BOS {counts.get('double_bos_removed', 0):,}",
        )
        if counts.get("turn_rows") or counts.get("empty_reasoning") or counts.get("reasoning_dropped"):
            add(
                "chat turns",
                f"{counts.get('conversations_by_turn', 0):,} conversations one row per turn: "
                f"{counts.get('turn_rows', 0):,} rows, {counts.get('turn_tokens', 0):,} tokens · empty think "
                f"{counts.get('empty_reasoning', 0):,} · reasoning dropped {counts.get('reasoning_dropped', 0):,}",
            )
    if stats.get("sources"):
        from sftprep.recipe_output import source_table

        lines += [Text(line) for line in source_table(stats)]
    conv = stats["label_convention"]
    key = (conv.get("mode", "sequence"), "shifted" if conv.get("mode") == "exploded" else conv.get("labels"))
    add("labels", _CONVENTIONS.get(key, json.dumps(conv)))
    add("eos", f"{conv.get('eos_token')} ({conv.get('eos_id')}) · ignore index {conv.get('ignore_index')}")
    tok = stats["tokenizer"]
    if tok:
        added = f" · added {', '.join(tok['added_tokens'])}" if tok.get("added_tokens") else ""
        add("tokenizer", tok["name"], f"vocab {tok['vocab_size']:,} · sha256 {tok['sha256'][:12]}{added}")
    return lines


_LABEL = 12  # cells for the labels of the stats view


def _packing_lines(
    packing: dict[str, Any],
    build: dict[str, Any] | None,
    add: Callable[..., None],
    lines: list[Text],
    look: Look,
) -> None:
    """Efficiency and examples per row (with a histogram); the whole build's too when rows are selected.

    ``add(label, text)`` appends a labelled line to ``lines``.
    """
    add(
        "packing",
        f"efficiency {packing['efficiency']:.1%}: {packing['tokens']:,} tokens in {packing['rows']:,} "
        f"rows of {packing['max_length']:,}",
    )
    per_row = packing["examples_per_row"]
    add(
        "per row",
        f"{per_row['mean']:,.1f} examples on average · min {per_row['min']:,} · max {per_row['max']:,}",
    )
    counts = per_row["histogram"]
    values = np.repeat([int(k) for k in counts], [int(v) for v in counts.values()])
    bins = [{"from": a, "to": b, "count": c} for a, b, c in histogram(values)]
    lines += _histogram_lines(bins, look) if bins else []
    if build:
        add(
            "whole build",
            f"efficiency {build['efficiency']:.1%} · {build['examples_per_row']['mean']:,.1f} examples per row",
        )


def _histogram_lines(bins: list[dict[str, int]], look: Look) -> list[Text]:
    labels = [f"{b['from']:,}–{b['to']:,}" if b["to"] > b["from"] else f"{b['from']:,}" for b in bins]
    lw = max(len(s) for s in labels)
    cw = max(len(f"{b['count']:,}") for b in bins)
    room = max(10, look.width - _LABEL - lw - cw - 4)
    top = max(b["count"] for b in bins) or 1
    out = []
    for label, b in zip(labels, bins, strict=True):
        eighths = round(b["count"] / top * room * 8)
        bar = "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]
        line = Text(" " * _LABEL + f"{label:>{lw}} │")
        line.append(f"{bar:<{room}}", style=look.style("bar"))
        out.append(line.append(f" {b['count']:>{cw},}"))
    return out
