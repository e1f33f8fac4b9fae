"""The ``sftprep`` command line: a thin shell over the library.

Each command parses options, builds a config, calls one library function and
turns library errors into a one-line message and a documented exit code
(docs/errors.md, "Exit codes"). Data goes to stdout, everything else to stderr.

One module a concern:

    errors     how every command ends: the error -> message and exit code mapping
    flags      the build's flags as decorator bundles (build and inspect --preview share them)
    output     ``sftprep: ...`` lines, the build summary, the progress bar
    build      ``sftprep build``
    inspect    ``sftprep inspect``
    merge      ``sftprep merge``
    verify     ``sftprep verify`` and ``sftprep diff``
    export     ``sftprep export``
    templates  ``sftprep templates``

The command modules import only click and the light :mod:`sftprep.options` /
:mod:`sftprep.config` at the top; each imports its library module when it runs.
So ``sftprep --help`` loads no numpy, pyarrow or tokenizers, and a command loads
only what it uses (``tests/cli/test_startup.py`` checks both).
"""

from __future__ import annotations

import signal

import click

from sftprep import __version__
from sftprep.cli import build, export, inspect, merge, templates, verify  # the command modules
from sftprep.cli.errors import Group
from sftprep.errors import Terminated

__all__ = ["cli", "main"]


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sftprep")
@click.option("--debug", is_flag=True, help="Show a traceback for errors (for bug reports).")
def cli(debug: bool) -> None:
    """Turn supervised fine-tuning data into tokenized training rows.

    \b
    sftprep build data.jsonl --template qa --tokenizer tokenizer.json -o out/
    sftprep templates
    """


for _command in (build.build, templates.templates, inspect.inspect, merge.merge, verify.verify,
                 verify.diff, export.export):  # fmt: skip
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _terminate)
    cli.main(argv, prog_name="sftprep")


def _terminate(signum, frame) -> None:
    # Unwind like Ctrl-C does, so the staging directory is removed on the way out.
    raise Terminated()
