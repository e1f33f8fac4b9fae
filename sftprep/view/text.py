"""Rows drawn for people and scripts: decoded text, the token table, exploded prefixes, JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
from rich.cells import cell_len
from rich.text import Text

from sftprep.labels import IGNORE_INDEX, META_FIELDS
from sftprep.view.draw import CLOSE, OPEN, Look, fit, rule, wrap
from sftprep.view.pieces import Pieces, escape_piece, visible
from sftprep.view.rows import Row, merge_exploded


def _where(row: Row) -> str:
    lines = row.extra.get("source_line")
    if isinstance(lines, list):  # a packed row: one line per example
        return f"{row.source_file}:{','.join(map(str, lines))}"
    return f"{row.source_file}:{row.source_line}"


def _flagged(row: Row) -> list[str]:
    return [
        name
        for name, on in (("truncated", row.truncated), ("boundary adjusted", row.boundary_adjusted))
        if on
    ]


def _header(row: Row, look: Look, rows: str | None = None) -> list[Text]:
    n = len(row.input_ids)
    trained = int((row.targets != IGNORE_INDEX).sum())
    parts = [rows or f"row {row.index}", _where(row), f"{n:,} tokens, {trained:,} trained", *_flagged(row)]
    meta = {f.name for f in META_FIELDS}  # packed rows' per-example lists: shown above
    parts += [f"{k}={_short(v)}" for k, v in row.extra.items() if k not in meta and not _per_position(v, n)]
    bad = _label_mismatches(row)
    if bad:
        parts.append(f"{bad} label{'s' * (bad != 1)} ≠ next token!")
    return rule(" · ".join(parts), look)


def _per_position(value: Any, n: int) -> bool:
    return isinstance(value, list) and len(value) == n


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label_mismatches(row: Row) -> int:
    """Trained positions whose stored label is not the next token: a broken build."""
    nxt = np.array([-1 if i is None else i for i in row.next_ids], dtype=np.int64)
    trained = row.targets != IGNORE_INDEX
    return int((trained & (row.targets != nxt)).sum())


def _segments(row: Row, pieces: Pieces) -> list[tuple[str, bool, bool]]:
    """The decoded row as (text, trained, special) runs."""
    texts = pieces.texts(row.input_ids)
    trained = row.trained_tokens
    special = [int(i) in pieces.special for i in row.input_ids]
    runs: list[tuple[str, bool, bool]] = []
    for j, piece in enumerate(texts):
        key = (bool(trained[j]), special[j])
        if runs and runs[-1][1:] == key:
            runs[-1] = (runs[-1][0] + piece, *key)
        else:
            runs.append((piece, *key))
    return runs


def text_view(row: Row, pieces: Pieces, look: Look) -> list[Text]:
    """A row as decoded text: trained spans in colour, or between ``[[`` and ``]]``."""
    body = Text()
    was_trained = False
    for text, trained, special in _segments(row, pieces):
        if not look.colour and trained != was_trained:
            body.append(OPEN if trained else CLOSE)
        was_trained = trained
        base = look.style("special" if special else "text" if trained else "prompt", trained)
        escape = look.style("escape", trained)
        for part, escaped in visible(text):
            body.append(part, style=(escape if escaped and not special else base))
    if was_trained and not look.colour:
        body.append(CLOSE)
    return [*_header(row, look), *wrap(body, look.width)]


_PIECE = 16  # cells for a token string in the token table


def token_lines(row: Row, pieces: Pieces, look: Look, title: str | None = None) -> Iterator[Text]:
    """One line per position: what the model reads, what it must predict, whether that is trained.

    ``pos  id  token  →  next_id  next_token  trained``; "trained" says ``yes``,
    or ``yes (label N)`` when the stored label is not the next token.
    """
    ids = [int(i) for i in row.input_ids]
    vocab = pieces.vocab([*ids, *([row.target_id] if row.target_id is not None else [])])
    extra = {k: v for k, v in row.extra.items() if _per_position(v, len(ids))}
    pw = max(3, len(str(len(ids))))
    iw = max(5, *(len(str(i)) for i in ids)) if ids else 5
    yield from _header(row, look, title)
    head = f"{'pos':>{pw}}  {'id':>{iw}}  {'token':<{_PIECE}}    {'next':>{iw}}  {'next token':<{_PIECE}}  trained"
    yield Text(head + "".join(f"  {k}" for k in extra), style=look.style("header"))
    for t, nxt in enumerate(row.next_ids):
        trained = row.targets[t] != IGNORE_INDEX
        line = Text(f"{t:>{pw}}  {ids[t]:>{iw}}  ")
        line.append(
            fit(_piece(vocab[t], ids[t]), _PIECE),
            style=look.style("special") if ids[t] in pieces.special else None,
        )
        if nxt is None:
            line.append(" " * (8 + iw + _PIECE) + "-")
        else:
            style = look.style("trained" if trained else "prompt")
            line.append(f"  → {nxt:>{iw}}  {fit(_piece(vocab[t + 1], nxt), _PIECE)}  ", style=style)
            flag = "-" if not trained else "yes" if row.targets[t] == nxt else f"yes (label {row.targets[t]})"
            line.append(flag, style=(look.style("warn") if flag.startswith("yes (") else style))
        for values in extra.values():
            line.append(f"  {values[t]}")
        yield line


def _piece(piece: str | None, token_id: int) -> str:
    return escape_piece(piece) if piece is not None else f"#{token_id}"


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
    title = f"{span_title(group)} · {_where(first)} · {len(group)} trained token{'s' * (len(group) != 1)}"
    lines = rule(" · ".join([title, *_flagged(first)]), look)
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


def row_json(row: Row, pieces: Pieces) -> dict[str, Any]:
    """One stored row for scripts: ids, token strings, decoded pieces and the trained mask.

    ``trained[j]`` is 1 when token ``j`` is a trained target (predicted, with loss,
    from position ``j - 1``); the same in every label convention.
    """
    ids = [int(i) for i in row.input_ids]
    out: dict[str, Any] = {
        "row": row.index,
        "source_file": row.source_file,
        "source_line": row.source_line,
        "truncated": row.truncated,
        "boundary_adjusted": row.boundary_adjusted,
        "num_trained_tokens": row.num_trained_tokens,
        "input_ids": ids,
        "tokens": pieces.vocab(ids) if pieces.tok else None,
    }
    if row.target_id is None:
        out["text"] = pieces.texts(ids) if pieces.tok else None
        out["trained"] = row.trained_tokens.astype(int).tolist()
    else:
        texts = pieces.texts([*ids, row.target_id]) if pieces.tok else None
        out["text"] = texts[:-1] if texts else None
        out["position"] = len(ids)
        out["target_id"] = row.target_id
        out["target_token"] = pieces.vocab([row.target_id])[0] if pieces.tok else None
        out["target_text"] = texts[-1] if texts else None
    out.update(row.extra)
    return out
