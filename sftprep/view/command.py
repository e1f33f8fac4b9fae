"""The whole ``sftprep inspect``: options in, lines out."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from rich.text import Text
from tokenizers import Tokenizer

from sftprep.errors import ConfigError
from sftprep.options import VIEW_FORMATS
from sftprep.view.choose import Selection, choose, example_matches
from sftprep.view.draw import Look
from sftprep.view.exploded import exploded_view, span_title
from sftprep.view.export import row_json
from sftprep.view.pieces import Pieces
from sftprep.view.rows import Row, fetch, merge_exploded, unpack
from sftprep.view.source import Rows
from sftprep.view.stats import compute_stats, stats_view
from sftprep.view.table import token_lines
from sftprep.view.text import text_view
from sftprep.view.turns import Turns, open_turns

VIEWS = ("text", "tokens", "stats")
FORMATS = VIEW_FORMATS


@dataclass(frozen=True)
class InspectOptions:
    """What ``sftprep inspect`` shows.

    Attributes:
        selection: which rows.
        view: ``text`` (decoded rows), ``tokens`` (one line per position) or ``stats``.
        format: ``text`` or ``json`` (one object per row, or one for the stats).
        look: colour and width.
        unpack: show each example of a packed row as the row an unpacked build writes
            (only the examples that pass the source, line and flag filters).
        tokenizer: the tokenizer to render chat records again with, to find the roles of
            their messages (default: the build's; see :mod:`sftprep.view.turns`).
    """

    selection: Selection = field(default_factory=Selection)
    view: str = "text"
    format: str = "text"
    look: Look = field(default_factory=Look)
    unpack: bool = False
    tokenizer: str | None = None


def inspect(
    rows: Rows, options: InspectOptions, tokenizer: Tokenizer | None, log: Callable[[str], None] | None = None
) -> Iterator[Text | str]:
    """Everything ``sftprep inspect`` prints: rich ``Text`` lines, or JSON strings (one a line).

    Raises:
        ConfigError: a condition the build cannot meet (``max-length`` without a limit),
            or ``unpack`` on rows that are not packed.
    """
    say = log or (lambda message: None)
    look, sel = options.look, options.selection
    if options.view not in VIEWS or options.format not in FORMATS:
        raise ConfigError(f"unknown view '{options.view}' or format '{options.format}'")
    if options.unpack and not rows.packed:
        raise ConfigError(f"--unpack: {rows.name} is not packed (its rows have no seq_lengths)")
    if options.view == "stats":
        stats = compute_stats(rows, sel)
        if options.format == "json":
            yield json.dumps(stats, ensure_ascii=False, sort_keys=True)
        else:
            yield from stats_view(stats, look)
        return
    pieces = Pieces(tokenizer)
    turns = open_turns(rows, options.tokenizer, say)
    shown = 0
    try:
        for group in fetch(rows, choose(rows, sel), sel.index):
            shown += 1
            yield from _group(group, rows, options, pieces, turns)
    finally:
        if turns is not None:
            turns.close()
    if not shown:
        say(f"{rows.name}: no rows match")


def _group(
    group: list[Row], rows: Rows, options: InspectOptions, pieces: Pieces, turns: Turns | None
) -> Iterator[Text | str]:
    """The lines of one chosen example: its row, its exploded rows, or a packed row's examples."""
    look = options.look
    if rows.mode == "exploded":
        if options.format == "json":
            yield from (json.dumps(row_json(row, pieces), ensure_ascii=False) for row in group)
        elif options.view == "tokens":
            whole = merge_exploded(group)
            if turns is not None:
                turns.apply(whole)
            yield from token_lines(whole, pieces, look, span_title(group))
        else:
            yield from exploded_view(group, pieces, look)
        return
    for row in _unpacked(group[0], rows, options.selection) if options.unpack else group:
        if turns is not None:
            turns.apply(row)
        if options.format == "json":
            yield json.dumps(row_json(row, pieces), ensure_ascii=False)
        elif options.view == "tokens":
            yield from token_lines(row, pieces, look)
        else:
            yield from text_view(row, pieces, look)


def _unpacked(row: Row, rows: Rows, sel: Selection) -> list[Row]:
    """A packed row's examples that pass the filters, as unpacked rows."""
    labels = str(rows.convention.get("labels", "shifted"))
    return [
        example
        for example in unpack(row, labels)
        if example_matches(
            sel,
            example.source_file,
            example.source_line,
            {"truncated": example.truncated, "boundary_adjusted": example.boundary_adjusted},
        )
    ]
