"""See what a build trains on, token by token: choose rows, render them, summarise them.

The library behind ``sftprep inspect``. A build's rows are read straight from
its Arrow shards (memory-mapped, one record batch at a time) and turned into
:class:`Row` objects that no longer depend on the label convention: position
``t`` of a row is trained to predict ``row.targets[t]`` (-100 where it is not
trained), whether the build stored shifted ``target_ids``, unshifted Hugging
Face ``labels`` or exploded ``(prefix, target_id)`` rows. Every view is drawn
from that one form, so the three conventions print alike.

Views (all rich ``Text``, plain when ``Look.colour`` is off)::

    text    Question: What is the capital of France? Answer:[[ Paris<|endoftext|>]]
    tokens  pos  id  token  ->  next id  next token  trained   (one line per position)
    stats   rows, length distribution with a histogram, trained fraction, build counts

Packed rows (``--pack``) show where each example starts, padding shows as
one ``<pad×N>``, and ``InspectOptions.unpack`` shows a packed row as the rows
an unpacked build writes. Chat rows show each message behind its role
(:mod:`sftprep.view.turns` finds them). Columns this package does not know
ride along in ``Row.extra``: per-position lists become extra columns of the
token table, other values are shown in the row header, and both go into the
JSON output as they are.

One concern a module:

    source   open a build (shards, manifest) and find its tokenizer
    preview  build an input's first records in memory (``--preview``)
    choose   select rows by number, source, condition or at random
    rows     the convention-free :class:`Row` (its examples, padding), fetched from the shards
    pieces   token strings, with invisible characters made visible
    draw     colour or plain markers, folding, rules
    text     the text view and the row headers
    table    the token table (``--tokens``)
    exploded exploded rows, grouped by example
    export   rows as JSON
    stats    ``--stats``
    turns    chat rows' messages and roles, from their records rendered again
    command  :func:`inspect`: everything the command prints
"""

from sftprep.view.choose import WHERE, Selection, choose, parse_index, parse_source
from sftprep.view.command import FORMATS, VIEWS, InspectOptions, inspect
from sftprep.view.draw import CLOSE, OPEN, Look, wrap
from sftprep.view.exploded import exploded_view
from sftprep.view.export import row_json
from sftprep.view.pieces import Pieces, escape_piece, visible
from sftprep.view.preview import preview
from sftprep.view.rows import KNOWN_COLUMNS, Example, Row, Turn, fetch, merge_exploded, unpack
from sftprep.view.source import Rows, open_rows, view_tokenizer
from sftprep.view.stats import compute_stats, histogram, stats_view
from sftprep.view.table import token_lines
from sftprep.view.text import text_view
from sftprep.view.turns import Turns, open_turns

__all__ = [
    "CLOSE",
    "FORMATS",
    "KNOWN_COLUMNS",
    "OPEN",
    "VIEWS",
    "WHERE",
    "Example",
    "InspectOptions",
    "Look",
    "Pieces",
    "Row",
    "Rows",
    "Selection",
    "Turn",
    "Turns",
    "choose",
    "compute_stats",
    "escape_piece",
    "exploded_view",
    "fetch",
    "histogram",
    "inspect",
    "merge_exploded",
    "open_rows",
    "open_turns",
    "parse_index",
    "parse_source",
    "preview",
    "row_json",
    "stats_view",
    "text_view",
    "token_lines",
    "unpack",
    "view_tokenizer",
    "visible",
    "wrap",
]
