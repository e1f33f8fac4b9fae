"""The whole ``sftprep inspect``: options in, lines out."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from rich.text import Text
from tokenizers import Tokenizer

from sftprep.errors import ConfigError
from sftprep.view.choose import Selection, choose
from sftprep.view.draw import Look
from sftprep.view.pieces import Pieces
from sftprep.view.rows import fetch, merge_exploded
from sftprep.view.source import Rows
from sftprep.view.stats import compute_stats, stats_view
from sftprep.view.text import exploded_view, row_json, span_title, text_view, token_lines

VIEWS = ("text", "tokens", "stats")
FORMATS = ("text", "json")


@dataclass(frozen=True)
class InspectOptions:
    """What ``sftprep inspect`` shows.

    Attributes:
        selection: which rows.
        view: ``text`` (decoded rows), ``tokens`` (one line per position) or ``stats``.
        format: ``text`` or ``json`` (one object per row, or one for the stats).
        look: colour and width.
    """

    selection: Selection = field(default_factory=Selection)
    view: str = "text"
    format: str = "text"
    look: Look = field(default_factory=Look)


def inspect(
    rows: Rows, options: InspectOptions, tokenizer: Tokenizer | None, log: Callable[[str], None] | None = None
) -> Iterator[Text | str]:
    """Everything ``sftprep inspect`` prints: rich ``Text`` lines, or JSON strings (one a line).

    Raises:
        ConfigError: a condition the build cannot meet (``max-length`` without a limit).
    """
    say = log or (lambda message: None)
    look, sel = options.look, options.selection
    if options.view not in VIEWS or options.format not in FORMATS:
        raise ConfigError(f"unknown view '{options.view}' or format '{options.format}'")
    if options.view == "stats":
        stats = compute_stats(rows, sel)
        if options.format == "json":
            yield json.dumps(stats, ensure_ascii=False, sort_keys=True)
        else:
            yield from stats_view(stats, look)
        return
    pieces = Pieces(tokenizer)
    shown = 0
    for group in fetch(rows, choose(rows, sel), sel.index):
        shown += 1
        if options.format == "json":
            for row in group:
                yield json.dumps(row_json(row, pieces), ensure_ascii=False)
        elif rows.mode == "exploded":
            if options.view == "tokens":
                yield from token_lines(merge_exploded(group), pieces, look, span_title(group))
            else:
                yield from exploded_view(group, pieces, look)
        elif options.view == "tokens":
            yield from token_lines(group[0], pieces, look)
        else:
            yield from text_view(group[0], pieces, look)
    if not shown:
        say(f"{rows.name}: no rows match")
