"""``sftprep inspect``: a thin shell over :mod:`sftprep.view`.

It parses options, opens the build (or builds a preview in memory), and prints
what :func:`sftprep.view.inspect` yields: rich text on a terminal, plain text
with ``[[`` ``]]`` markers elsewhere, or JSON lines. A reader that stops early
(``| head``) ends it quietly.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click
from click.core import ParameterSource

from sftprep.cli.errors import Command
from sftprep.cli.flags import assignments, option_names, row_options
from sftprep.cli.output import say
from sftprep.config import BuildConfig
from sftprep.errors import SftprepError
from sftprep.options import VIEW_FORMATS, WHERE

# The options that only make sense with --preview (the build's row options, and --records).
_PREVIEW_ONLY = (*option_names(row_options(preview=True)), "records")


def _colour(choice: str) -> bool:
    """Colour on a terminal unless NO_COLOR is set (https://no-color.org) or TERM is dumb."""
    if choice != "auto":
        return choice == "always"
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def _console(**settings: Any) -> Any:
    """A rich Console (rich is imported only when inspect runs) that ends quietly on a closed pipe."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich exits with status 1 here; a reader that stops early is not an error,
            # so let the command end quietly with status 0 instead.
            self.quiet = True
            raise BrokenPipeError

    return _Console(**settings)


def _silence_stdout() -> None:
    """After a closed pipe: point stdout at devnull so the exit-time flush cannot fail.

    What the Python docs recommend for SIGPIPE (library/signal.html, "Note on SIGPIPE").
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (CliRunner, a StringIO)
        pass


@click.command(cls=Command)
@click.argument("out", metavar="OUT")
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=1),
    help="How many rows to show (examples in exploded builds).  [default: 3, or all rows --index names]",
)
@click.option("-a", "--all", "show_all", is_flag=True, help="Show every selected row.")
@click.option(
    "-i",
    "--index",
    "indexes",
    multiple=True,
    metavar="N|A-B",
    help="Rows by number (from 0): 7, 10-20, 3,5,9, 100- . Repeatable.",
)
@click.option(
    "--random", "random_n", type=click.IntRange(min=1), metavar="N", help="N rows chosen at random."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --random.")
@click.option(
    "--source",
    metavar="FILE[:LINE]",
    help="Rows from this input file (as built, or its last path parts), optionally one line "
    "or record number, or a range: qa.jsonl:17, qa.jsonl:10-20, :17.",
)
@click.option(
    "-w",
    "--where",
    "where",
    multiple=True,
    type=click.Choice(WHERE),
    help="Only rows that were truncated, had their prompt/target boundary adjusted, are "
    "exactly --max-length long, or never train the EOS token. Repeatable (all must hold).",
)
@click.option(
    "--tokens",
    is_flag=True,
    help="One line per position: token, the token it must predict, and whether that prediction is trained.",
)
@click.option("--stats", is_flag=True, help="Statistics of the build (of the selected rows, with filters).")
@click.option(
    "--unpack",
    is_flag=True,
    help="Packed builds: show each example of a row as the row an unpacked build writes "
    "(with --source or --where, only the examples that match).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(VIEW_FORMATS),
    default="text",
    show_default=True,
    help="json: one object per row (ids, token strings, decoded pieces, trained mask).",
)
@click.option(
    "--color",
    "--colour",
    "colour",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="auto: colour on a terminal unless NO_COLOR is set; else [[ ]] around trained text.",
)
@click.option(
    "--width", type=click.IntRange(min=40), help="Wrap at this many columns (default: the terminal's, or 80)."
)
@click.option(
    "--tokenizer",
    help="Tokenizer for token strings (default: the one the build used). "
    "With --preview: the tokenizer to build with.",
)
@click.option(
    "--preview",
    is_flag=True,
    help="OUT is an input file: build its first records in memory "
    "with the options below and show them, writing nothing.",
)
@row_options(preview=True)
@click.option(
    "--records",
    type=click.IntRange(min=1),
    default=100,
    help="With --preview: how many input records to read.  [default: 100]",
)
@click.pass_context
def inspect(
    ctx,
    out,
    limit,
    show_all,
    indexes,
    random_n,
    seed,
    source,
    where,
    tokens,
    stats,
    unpack,
    output_format,
    colour,
    width,
    tokenizer,
    preview,
    **build_options,
) -> None:
    """Show what a build trains on: rows as text or token by token, or statistics.

    OUT is a build's output directory or one of its .arrow shards; with
    --preview, an input file to build in memory. Trained text is coloured on a
    terminal and written between [[ and ]] elsewhere.

    \b
    sftprep inspect out/                       the first 3 rows
    sftprep inspect out/ --tokens -i 7         row 7, one line per position
    sftprep inspect out/ --random 5 --seed 1   5 rows at random
    sftprep inspect out/ --source qa.jsonl:17  the row built from line 17
    sftprep inspect out/ -w truncated -a       every truncated row
    sftprep inspect out/ --stats               lengths, trained fraction, counts
    sftprep inspect packed/ -i 3 --unpack      a packed row's examples, one by one
    sftprep inspect out/ --format json | jq .input_ids
    sftprep inspect --preview data.jsonl -t qa --tokenizer tokenizer.json
    sftprep inspect --preview chat.jsonl --chat-template chatml --tokenizer smollm/
    """
    from sftprep import view  # here, not above: `sftprep --help` must not wait for it

    _check_flags(ctx, limit, show_all, random_n, tokens, stats, preview)
    if unpack and stats:
        raise click.UsageError(
            "--unpack shows rows and --stats counts them (per example already): choose one"
        )
    console = _console(
        file=sys.stdout,
        width=width,
        highlight=False,
        markup=False,
        emoji=False,
        force_terminal=_colour(colour),
        no_color=not _colour(colour),
        soft_wrap=True,
    )
    look = view.Look(colour=_colour(colour), width=width or (console.width if console.is_terminal else 80))
    options = view.InspectOptions(
        selection=_selection(indexes, random_n, seed, source, where, limit, show_all),
        view="stats" if stats else "tokens" if tokens else "text",
        format=output_format,
        look=look,
        unpack=unpack,
        tokenizer=None if preview else tokenizer,
    )
    try:
        rows, tok = _open(out, preview, tokenizer, build_options, with_tokenizer=not stats)
        for item in view.inspect(rows, options, tok, log=say):
            if isinstance(item, str):
                sys.stdout.write(item + "\n")
            else:
                console.print(item)
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    # A SftprepError goes on to cli.errors.run_mapped, as a build's does: one
    # "sftprep: error: ..." line, the documented exit code, a traceback only with --debug.


def _check_flags(ctx, limit, show_all, random_n, tokens, stats, preview) -> None:
    if sum(bool(x) for x in (limit, show_all, random_n)) > 1:
        raise click.UsageError("choose one of --limit, --all and --random")
    if tokens and stats:
        raise click.UsageError("--tokens and --stats are different views: choose one")
    if not preview:
        given = [
            max(p.opts, key=len)
            for p in ctx.command.params
            if p.name in _PREVIEW_ONLY
            and ctx.get_parameter_source(p.name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
        ]
        if given:
            raise click.UsageError(f"{', '.join(given)} only work with --preview")


def _selection(indexes, random_n, seed, source, where, limit, show_all) -> Any:
    from sftprep import view

    try:
        ranges = tuple(r for text in indexes for r in view.parse_index(text))
    except SftprepError as exc:
        raise click.BadParameter(str(exc).removeprefix("--index: "), param_hint="--index") from None
    name, lines = view.parse_source(source) if source else (None, None)
    if show_all or random_n or (ranges and not limit):
        limit = None  # --index alone shows every row it names
    elif not limit:
        limit = 3
    return view.Selection(
        index=ranges, random=random_n, seed=seed, source=name, lines=lines, where=tuple(where), limit=limit
    )


def _open(out: str, preview: bool, tokenizer: str | None, options: dict[str, Any], with_tokenizer: bool):
    from sftprep import view

    if not preview:
        rows = view.open_rows(out)
        if not with_tokenizer:  # --stats shows no token strings
            return rows, None
        tok, notes = view.view_tokenizer(rows, tokenizer)
        for note in notes:
            say(note)
        return rows, tok
    records = options.pop("records")
    config = BuildConfig(
        inputs=(out,),
        output="-",
        tokenizer=tokenizer,
        **assignments(options.pop("fields"), options.pop("variables"), options.pop("roles")),
        **options,
    )
    rows, tok, notes = view.preview(config, records)
    for note in notes:
        say(note)
    return rows, tok
