"""``inspect --stats``: lengths, trained fraction and build counts of the selected rows."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from rich.text import Text

from sftprep.view.choose import Selection, all_groups, any_flag, in_ranges, row_lengths
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


def compute_stats(rows: Rows, sel: Selection) -> dict[str, Any]:
    """Figures over the selected rows (all rows when nothing is filtered), JSON-ready.

    Lengths are per example (a sequence row; an exploded example's prefix + target).
    Build-wide counts (skips, drops) come from the manifest.
    """
    firsts, stops = all_groups(rows, sel)
    lengths, trained, truncated, adjusted, owners = [], [], [], [], []
    n_rows, base = 0, 0
    for batch in rows.batches():
        idx = np.arange(base, base + batch.num_rows)
        owner = np.searchsorted(firsts, idx, side="right") - 1
        keep = (owner >= 0) & (idx < stops[np.maximum(owner, 0)]) if len(firsts) else np.zeros(len(idx), bool)
        if sel.index:
            keep &= in_ranges(idx, sel.index)
        base += batch.num_rows
        if not keep.any():
            continue
        n_rows += int(keep.sum())
        lengths.append(row_lengths(batch, rows.mode)[keep])
        trained.append(batch.column("num_trained_tokens").to_numpy(zero_copy_only=False)[keep])
        truncated.append(any_flag(batch.column("truncated"))[keep])
        adjusted.append(any_flag(batch.column("boundary_adjusted"))[keep])
        owners.append(owner[keep])
    cat = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype)  # noqa: E731
    owner_all = cat(owners, np.int64)
    groups, first_of = np.unique(owner_all, return_index=True)
    per_example = np.zeros(len(groups), dtype=np.int64)
    np.maximum.at(per_example, np.searchsorted(groups, owner_all), cat(lengths, np.int64))
    tokens = int(per_example.sum())
    trained_tokens = int(cat(trained, np.int64).sum())
    ordered = np.sort(per_example)
    max_length = rows.max_length
    return {
        "output": rows.name,
        "selection": bool(sel.index or sel.source or sel.lines or sel.where),
        "rows": n_rows,
        "examples": len(groups),
        "tokens": tokens,
        "trained_tokens": trained_tokens,
        "trained_fraction": trained_tokens / tokens if tokens else 0.0,
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
        "truncated": int(cat(truncated, bool)[first_of].sum()),
        "boundary_adjusted": int(cat(adjusted, bool)[first_of].sum()),
        "build_counts": (rows.manifest or {}).get("counts"),
        "label_convention": rows.convention,
        "tokenizer": (rows.manifest or {}).get("tokenizer"),
    }


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
    add("rows", f"{rows:,}" + (f" from {examples:,} examples" if rows != examples else ""))
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


def _histogram_lines(bins: list[dict[str, int]], look: Look) -> list[Text]:
    labels = [f"{b['from']:,}–{b['to']:,}" for b in bins]
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
