"""Exit codes: declared once in sftprep.errors, documented in docs/errors.md, distinct where they must be."""

from __future__ import annotations

import re
from pathlib import Path

import click
from click.testing import CliRunner

from sftprep import errors
from sftprep.cli import cli
from sftprep.cli.errors import run_mapped

ROOT = Path(__file__).resolve().parents[2]
CODES = {name: value for name, value in vars(errors).items() if name.startswith("EXIT_")}


def test_every_exit_code_is_in_the_docs_table_and_nothing_else():
    table = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, flags=re.MULTILINE)}
    assert documented == set(CODES.values())


def test_exit_codes_are_distinct():
    assert len(set(CODES.values())) == len(CODES), CODES


def test_a_bug_does_not_exit_like_a_difference():
    """`sftprep diff` exits 1 for "the builds differ": a crash must not look like that."""

    def crash() -> int:
        raise ZeroDivisionError("division by zero")

    assert run_mapped(crash, debug=False) == errors.EXIT_INTERNAL
    assert errors.EXIT_INTERNAL not in (errors.EXIT_OK, errors.EXIT_DIFFERENT)


def test_a_bug_in_a_command_says_so_in_one_line():
    @click.command()
    def broken() -> None:
        raise KeyError("oops")

    cli.add_command(broken)
    try:
        result = CliRunner().invoke(cli, ["broken"])
    finally:
        cli.commands.pop("broken")
    assert result.exit_code == errors.EXIT_INTERNAL
    assert result.output == (
        "sftprep: internal error: KeyError: 'oops' (run with --debug for a traceback; please report it)\n"
    )


def test_verify_and_diff_use_the_declared_codes():
    from sftprep import verify

    assert verify.EXIT_PROBLEMS == errors.EXIT_PROBLEMS == 5
    assert errors.EXIT_DIFFERENT == 1
