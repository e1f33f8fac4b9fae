"""``sftprep inspect`` reports errors as ``build`` does (issue 16, item 8).

One line ``sftprep: error: ...``, the documented exit code, and a traceback only
with ``--debug``; click's own usage errors keep click's form, as for ``build``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sftprep.build import BuildConfig, run_build
from sftprep.cli import cli
from sftprep.errors import EXIT_IO, EXIT_USAGE, ConfigError, InputError


@pytest.fixture
def built(tmp_path: Path) -> Path:
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "What?", "answer": "That."}\n')
    out = tmp_path / "out"
    run_build(BuildConfig(inputs=(str(data),), output=str(out), template="qa", workers=1))
    return out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["{tmp}/missing"], EXIT_IO, "{tmp}/missing: no such file or directory"),
        (["{out}", "-w", "max-length"], EXIT_USAGE,
         "{out} was built without --max-length, so no row can hit it"),
    ],
)  # fmt: skip
def test_errors_are_one_line_with_the_documented_exit_code(built, tmp_path, args, code, message):
    args = [a.format(tmp=tmp_path, out=built) for a in args]
    result = CliRunner().invoke(cli, ["inspect", *args])
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    assert result.stderr == f"sftprep: error: {message.format(tmp=tmp_path, out=built)}\n"


@pytest.mark.parametrize(
    ("args", "error"), [(["{tmp}/missing"], InputError), (["{out}", "-w", "max-length"], ConfigError)]
)
def test_debug_shows_the_traceback(built, tmp_path, args, error):
    args = [a.format(tmp=tmp_path, out=built) for a in args]
    result = CliRunner().invoke(cli, ["--debug", "inspect", *args])
    # CliRunner catches what would print as a traceback: the exception itself, not a message.
    assert isinstance(result.exception, error)
    assert "sftprep: error:" not in result.output


def test_usage_errors_stay_clicks(built):
    result = CliRunner().invoke(cli, ["inspect", str(built), "--tokens", "--stats"])
    assert result.exit_code == EXIT_USAGE
    assert "Error: --tokens and --stats are different views: choose one" in result.stderr


def test_the_command_alone_ends_the_same_way(tmp_path):
    # As a library user or a test runs it, without the group: the same line and code.
    from sftprep.cli.inspect import inspect

    result = CliRunner().invoke(inspect, [str(tmp_path / "missing")])
    assert result.exit_code == EXIT_IO
    assert result.stderr == f"sftprep: error: {tmp_path}/missing: no such file or directory\n"
