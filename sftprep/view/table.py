"""``inspect --tokens``: one line per position, what the model reads and what it must predict.

::

    pos     id  token                next  next token        trained
     10     25  :                 →  6342  ĠParis            yes

A packed row adds its ``position_ids`` (``pid``) and an ``┄┄ example k of n``
line where each example starts; a chat example a line where each message
starts. Padding is one line, not a line per pad token.
"""

from __future__ import annotations

from collections.abc import Iterator

from rich.text import Text

from sftprep.labels import IGNORE_INDEX
from sftprep.view.draw import Look, fit, subrule
from sftprep.view.pieces import Pieces, escape_piece
from sftprep.view.rows import Row
from sftprep.view.text import example_rule, header, per_position

_PIECE = 16  # cells for a token string in the token table


def token_lines(row: Row, pieces: Pieces, look: Look, title: str | None = None) -> Iterator[Text]:
    """One line per position: what the model reads, what it must predict, whether that is trained.

    ``pos  id  token  →  next_id  next_token  trained``; "trained" says ``yes``,
    or ``yes (label N)`` when the stored label is not the next token (of the same
    example: the last position of an example predicts nothing).
    """
    ids = [int(i) for i in row.input_ids]
    vocab = pieces.vocab([*ids, *([row.target_id] if row.target_id is not None else [])])
    extra = {k: v for k, v in row.extra.items() if per_position(v, len(ids))}
    real = len(ids) - row.padding
    pw = max(3, len(str(len(ids))))
    iw = max(5, *(len(str(i)) for i in ids[:real])) if real else 5
    pid = row.position_ids
    yield from header(row, look, title)
    head = f"{'pos':>{pw}}  " + (f"{'pid':>{pw}}  " if pid is not None else "")
    head += f"{'id':>{iw}}  {'token':<{_PIECE}}    {'next':>{iw}}  {'next token':<{_PIECE}}  trained"
    yield Text(head + "".join(f"  {k}" for k in extra), style=look.style("header"))
    starts = {e.start: k for k, e in enumerate(row.examples)} if row.packed else {}
    turns = {t.start: t for e in row.examples for t in (e.turns or []) if t.stop > t.start}
    next_ids = row.next_ids
    for t in range(real):
        if t in starts:
            yield from example_rule(row, starts[t], look)
        if t in turns:
            yield from subrule(f"{turns[t].role} · message {turns[t].message}", look)
        line = Text(
            f"{t:>{pw}}  " + (f"{int(pid[t]):>{pw}}  " if pid is not None else "") + f"{ids[t]:>{iw}}  "
        )
        line.append(
            fit(_piece(vocab[t], ids[t]), _PIECE),
            style=look.style("special") if ids[t] in pieces.special else None,
        )
        line.append_text(_prediction(row, t, next_ids[t], vocab, iw, look))
        for values in extra.values():
            line.append(f"  {values[t]}")
        yield line
    if row.padding:
        piece = _piece(vocab[real], ids[real])
        yield from subrule(
            f"padding · positions {real:,}–{len(ids) - 1:,}: {row.padding:,} × {piece} ({ids[real]})", look
        )


def _prediction(row: Row, t: int, nxt: int | None, vocab: list[str | None], iw: int, look: Look) -> Text:
    """``→ next_id  next_token  trained`` for position ``t``; ``-`` alone where nothing follows."""
    target = int(row.targets[t])
    trained = target != IGNORE_INDEX
    if nxt is None:
        out = Text(" " * (8 + iw + _PIECE))
        if trained:  # a label where the example ends: it crosses into the next example or padding
            return out.append(f"yes (label {target})", style=look.style("warn"))
        return out.append("-")
    style = look.style("trained" if trained else "prompt")
    out = Text(f"  → {nxt:>{iw}}  {fit(_piece(vocab[t + 1], nxt), _PIECE)}  ", style=style)
    flag = "-" if not trained else "yes" if target == nxt else f"yes (label {target})"
    return out.append(flag, style=(look.style("warn") if flag.startswith("yes (") else style))


def _piece(piece: str | None, token_id: int) -> str:
    return escape_piece(piece) if piece is not None else f"#{token_id}"
