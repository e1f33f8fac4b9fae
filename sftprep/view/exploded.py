"""Exploded rows (``--mode exploded``) of one example: ``position  prefix → target``, a line each."""

from __future__ import annotations

import numpy as np
from rich.cells import cell_len
from rich.text import Text

from sftprep.view.draw import CLOSE, OPEN, Look, rule
from sftprep.view.pieces import Pieces, visible
from sftprep.view.rows import Row, merge_exploded
from sftprep.view.text import flagged, where


def span_title(group: list[Row]) -> str:
    first, last = group[0].index, group[-1].index
    contiguous = last - first + 1 == len(group)
    if len(group) == 1:
        return f"row {first}"
    if contiguous:
        return f"rows {first}–{last}"
    return "rows " + ", ".join(str(r.index) for r in group)


def exploded_view(group: list[Row], pieces: Pieces, look: Look) -> list[Text]:
    """The exploded rows of one example: ``position  prefix → target``, prefixes elided in the middle."""
    whole = merge_exploded(group)
    texts = pieces.texts(whole.input_ids)
    cells = _cumulative_cells(texts)
    first = group[0]
    title = f"{span_title(group)} · {where(first)} · {len(group)} trained token{'s' * (len(group) != 1)}"
    lines = rule(" · ".join([title, *flagged(first)]), look)
    shown = []
    for row in group:
        n = len(row.input_ids)
        if n < len(texts) and np.array_equal(whole.input_ids[:n], row.input_ids):
            shown.append((row, texts, cells))
        else:  # not a prefix of the example's longest row: decode it on its own
            own = pieces.texts([*row.input_ids, row.target_id or 0])
            shown.append((row, own, _cumulative_cells(own)))
    targets = []
    for row, row_texts, _ in shown:
        target = Text("" if look.colour else OPEN)
        _append_visible(target, row_texts[len(row.input_ids)], look, trained=True)
        targets.append(target.append("" if look.colour else CLOSE))
    room = min(24, max(t.cell_len for t in targets))  # one budget for all, so the prefixes line up
    pw = max(3, len(str(len(whole.input_ids))))
    for (row, row_texts, row_cells), target in zip(shown, targets, strict=True):
        n = len(row.input_ids)
        line = Text(f"{n:>{pw}}  ")
        line.append_text(
            _elide(row_texts, row_cells, n, look.width - pw - 5 - max(room, target.cell_len), look)
        )
        lines.append(line.append(" → ").append_text(target))
    return lines


def _cumulative_cells(texts: list[str]) -> np.ndarray:
    """``cells[k]``: the width of ``texts[:k]`` on one line (escapes included)."""
    widths = [sum(cell_len(p) for p, _ in visible(t, newlines=False)) for t in texts]
    return np.concatenate([[0], np.cumsum(widths, dtype=np.int64)])


def _append_visible(text: Text, piece: str, look: Look, trained: bool = False) -> None:
    style, escape = look.style("text" if trained else "prompt", trained), look.style("escape", trained)
    for part, escaped in visible(piece, newlines=False):
        text.append(part, style=(escape if escaped else style))


def _elide(texts: list[str], cells: np.ndarray, n: int, budget: int, look: Look) -> Text:
    """The prefix ``texts[:n]`` on one line: whole if it fits in ``budget`` cells, else head…⟨N tokens⟩…tail.

    ``cells`` (from :func:`_cumulative_cells`) makes this cheap for every row of a long example.
    """
    budget = max(budget, 24)
    out = Text()
    if cells[n] <= budget:
        _append_visible(out, "".join(texts[:n]), look)
        return out
    half = (budget - len(f"…⟨{n} tokens⟩…")) // 2
    head = int(np.searchsorted(cells[: n + 1], half, side="right")) - 1  # longest head within half
    tail = max(head, int(np.searchsorted(cells[: n + 1], cells[n] - half, side="left")))
    _append_visible(out, "".join(texts[:head]), look)
    out.append(f"…⟨{tail - head} tokens⟩…", style=look.style("escape"))
    _append_visible(out, "".join(texts[tail:n]), look)
    return out
