"""The text view: a row decoded, trained spans marked, and the row headers every view shares.

A packed row shows each example under its own ``┄┄ example k of n`` line, so
the boundaries (where attention and labels restart) are visible; padding shows
as one ``<pad×N>``. A chat example whose messages are known shows each message
on its own lines behind its role::

    user      │ <|user|>↵
              │ Hi<|end|>↵
    assistant │ <|assistant|>↵
              │ [[Hello!<|end|>↵
              │ <|endoftext|>]]
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from rich.text import Text

from sftprep.errors import counted
from sftprep.labels import IGNORE_INDEX
from sftprep.view.draw import CLOSE, OPEN, THINK_CLOSE, THINK_OPEN, Look, rule, subrule, wrap
from sftprep.view.pieces import Pieces, visible
from sftprep.view.rows import Example, Row, Turn


def where(row: Row) -> str:
    """Where a row came from: ``file:line``; a packed row's examples each say so under their own rule."""
    if not row.packed:
        return f"{row.source_file}:{row.source_line}"
    return f"{len(row.examples)} example{'s' * (len(row.examples) != 1)}"


def flagged(item: Row | Example) -> list[str]:
    """The build's flags on a row or an example, as words for a header."""
    pairs = (("truncated", item.truncated), ("boundary adjusted", item.boundary_adjusted))
    turn = (
        item.examples[0].turn
        if isinstance(item, Row) and len(item.examples) == 1
        else getattr(item, "turn", None)
    )
    return [name for name, on in pairs if on] + ([f"turn {turn}"] if turn is not None else [])


def _tokens(n: int, padding: int, trained: int) -> str:
    padded = f" ({padding:,} padding)" if padding else ""
    return f"{counted(n, 'token')}{padded}, {trained:,} trained"


def header(row: Row, look: Look, title: str | None = None) -> list[Text]:
    """``── row 7 · file:17 · 40 tokens, 9 trained · ... ──``: the rule above every row."""
    n = len(row.input_ids)
    trained = int((row.targets != IGNORE_INDEX).sum())
    parts = [title or f"row {row.index}"]
    if row.example is not None:
        parts.append(f"example {row.example[0] + 1} of {row.example[1]}")
    parts += [where(row), _tokens(n, row.padding, trained), *flagged(row)]
    parts += [f"{k}={_short(v)}" for k, v in row.extra.items() if not per_position(v, n)]
    bad = label_mismatches(row)
    if bad:
        parts.append(f"{bad} label{'s' * (bad != 1)} ≠ next token!")
    return rule(" · ".join(parts), look)


def example_rule(row: Row, k: int, look: Look) -> list[Text]:
    """``┄┄ example 2 of 7 · file:18 · 96 tokens, 40 trained ┄┄``: where an example of a packed row starts."""
    example = row.examples[k]
    trained = int(row.trained_tokens[example.start : example.stop].sum())
    parts = [
        f"example {k + 1} of {len(row.examples)}",
        f"{example.source_file}:{example.source_line}",
        _tokens(example.stop - example.start, 0, trained),
        *flagged(example),
    ]
    return subrule(" · ".join(parts), look)


def per_position(value: Any, n: int) -> bool:
    """Is a column's value one item per token (a list as long as the row)?"""
    return isinstance(value, list) and len(value) == n


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def label_mismatches(row: Row) -> int:
    """Trained positions whose stored label is not the next token (of the same example): a broken build."""
    nxt = np.array([-1 if i is None else i for i in row.next_ids], dtype=np.int64)
    trained = row.targets != IGNORE_INDEX
    return int((trained & (row.targets != nxt)).sum())


def _runs(texts: list[str], trained: np.ndarray, special: np.ndarray) -> list[tuple[str, bool, bool, bool]]:
    """Decoded tokens as (text, trained, special, reasoning) runs."""
    runs: list[tuple[str, bool, bool, bool]] = []
    thinking = reasoning_tokens(texts)
    for j, piece in enumerate(texts):
        key = (bool(trained[j]), bool(special[j]), bool(thinking[j]))
        if runs and runs[-1][1:] == key:
            runs[-1] = (runs[-1][0] + piece, *key)
        else:
            runs.append((piece, *key))
    return runs


def reasoning_tokens(texts: list[str]) -> np.ndarray:
    """Per token, is it part of a think block: from a ``<think>`` token to the next ``</think>``."""
    out = np.zeros(len(texts), dtype=bool)
    start = None
    for j, piece in enumerate(texts):
        if piece.strip() == "<think>":
            start = j
        elif piece.strip() == "</think>" and start is not None:
            out[start : j + 1] = True
            start = None
    return out


def _body(texts: list[str], trained: np.ndarray, special: np.ndarray, look: Look) -> Text:
    """Decoded tokens: trained spans in colour, or between ``[[`` and ``]]``; think blocks in
    their own colour, or between ``⟪`` and ``⟫``."""
    body = Text()
    was_trained = was_thinking = False
    for text, on, is_special, thinking in _runs(texts, trained, special):
        if not look.colour:
            if was_thinking and not thinking:
                body.append(THINK_CLOSE)
            if on != was_trained:
                body.append(CLOSE if was_trained else "")
            if on and not was_trained:
                body.append(OPEN)
            if thinking and not was_thinking:
                body.append(THINK_OPEN)
        was_trained, was_thinking = on, thinking
        kind = "special" if is_special else "reasoning" if thinking else "text" if on else "prompt"
        base = look.style(kind, on)
        escape = look.style("escape", on)
        for part, escaped in visible(text):
            body.append(part, style=(escape if escaped and not is_special else base))
    if not look.colour:
        body.append((THINK_CLOSE if was_thinking else "") + (CLOSE if was_trained else ""))
    return body


def padding_mark(n: int, look: Look) -> Text:
    """Padding in one piece: ``<pad×37>``, never 37 tokens (and with no space to fold the line at)."""
    return Text(f"<pad×{n:,}>", style=look.style("escape"))


def text_view(row: Row, pieces: Pieces, look: Look) -> list[Text]:
    """A row as decoded text: trained spans in colour, or between ``[[`` and ``]]``.

    Each example of a packed row is decoded on its own (as its unpacked row
    would be) under an :func:`example_rule`; chat examples whose turns are known
    show each message behind its role.
    """
    lines = header(row, look)
    trained = row.trained_tokens
    special = np.isin(row.input_ids, list(pieces.special))
    for k, example in enumerate(row.examples):
        if row.packed:
            lines += example_rule(row, k, look)
        a, b = example.start, example.stop
        texts = pieces.texts(row.input_ids[a:b])
        last = k == len(row.examples) - 1
        tail = padding_mark(row.padding, look) if last and row.padding else None
        if example.turns:
            lines += _turn_lines(example, texts, trained[a:b], special[a:b], tail, look)
        else:
            body = _body(texts, trained[a:b], special[a:b], look)
            lines += wrap(body.append_text(tail) if tail else body, look.width)
    if not row.examples and row.padding:
        lines.append(padding_mark(row.padding, look))
    return lines


def _turn_lines(
    example: Example,
    texts: list[str],
    trained: np.ndarray,
    special: np.ndarray,
    tail: Text | None,
    look: Look,
) -> list[Text]:
    """A chat example, message by message, each behind its role: ``user      │ text``."""
    turns: list[Turn] = example.turns or []
    gutter = max(len(t.role) for t in turns) + 1
    style = look.style("header")
    lines: list[Text] = []
    for k, turn in enumerate(turns):
        a, b = turn.start - example.start, turn.stop - example.start
        body = _body(texts[a:b], trained[a:b], special[a:b], look)
        if tail is not None and k == len(turns) - 1:
            body.append_text(tail)
        for i, piece in enumerate(wrap(body, max(20, look.width - gutter - 2))):
            label = Text(f"{turn.role if i == 0 else '':<{gutter}}│ ", style=style)
            lines.append(label.append_text(piece))
    return lines
