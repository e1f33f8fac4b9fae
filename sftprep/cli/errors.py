"""How every sftprep command ends: one line on stderr and a documented exit code.

The group (``sftprep ...``) and each command run on its own (``inspect.main()``,
as click's CliRunner does in the tests) share this one mapping, so an error reads
the same whichever way a command was started: ``sftprep: error: ...`` and the
error's exit code (declared in :mod:`sftprep.errors`, documented in docs/errors.md),
with a traceback only under ``--debug``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from sftprep.cli.output import say
from sftprep.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    SftprepError,
    Terminated,
)


def run_mapped(invoke: Callable[[], Any], debug: bool) -> int:
    """Call ``invoke`` and turn what it raises into a message and an exit code.

    Args:
        invoke: runs the command with click's ``standalone_mode`` off.
        debug: let sftprep's errors and bugs raise (a traceback) instead.

    Returns:
        The exit code.
    """
    try:
        code = invoke()
        return code if isinstance(code, int) else 0
    except (click.exceptions.Abort, KeyboardInterrupt):
        say("interrupted; nothing was written")
        return EXIT_INTERRUPTED
    except Terminated:
        say("terminated; nothing was written")
        return EXIT_TERMINATED
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE if exc.exit_code == 2 else exc.exit_code
    except SftprepError as exc:
        if debug:
            raise
        say(f"error: {exc}")
        return exc.exit_code
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: say so in one line unless --debug
        if debug:
            raise
        say(
            f"internal error: {type(exc).__name__}: {exc} (run with --debug for a traceback; please report it)"
        )
        return EXIT_INTERNAL


class _Mapped:
    """A ``main`` that maps sftprep's errors (mixed into click's Group and Command)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        base = super().main  # type: ignore[misc]
        code = run_mapped(lambda: base(argv, prog_name, complete_var, False, **extra), "--debug" in argv)
        if standalone_mode:
            sys.exit(code)
        return code


class Group(_Mapped, click.Group):
    """The ``sftprep`` group: errors end as one line and an exit code."""


class Command(_Mapped, click.Command):
    """A command that ends the same way when it is run on its own."""
