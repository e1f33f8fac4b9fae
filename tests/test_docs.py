"""Meta-tests: every command and build option is documented; every shipped template loads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from sftprep.chat import load_chat_template, shipped_chat_templates
from sftprep.cli import cli
from sftprep.templates import load_template, shipped_templates

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PAGES = sorted((ROOT / "docs").glob("*.md"))
DOCS = README + "".join(page.read_text(encoding="utf-8") for page in PAGES)


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_help_and_is_in_the_docs(name):
    command = cli.commands[name]
    assert command.help and len(command.help) > 20
    assert f"sftprep {name}" in README
    manual = DOCS.replace((ROOT / "docs" / "cli.md").read_text(encoding="utf-8"), "")
    assert f"sftprep {name}" in manual, "documented beyond the generated CLI reference"


@pytest.mark.parametrize("option", [p for p in cli.commands["build"].params if isinstance(p, click.Option)],
                         ids=lambda p: p.name)  # fmt: skip
def test_every_build_option_has_help(option):
    assert option.help, option.name


def test_readme_opens_with_the_two_commands():
    first_block = re.search(r"```\n(.*?)```", README, re.S).group(1)
    assert first_block.splitlines()[0].startswith("make demo")
    assert first_block.splitlines()[1].startswith("make test")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


@pytest.mark.parametrize("name", sorted(shipped_templates()))
def test_every_shipped_template_loads(name):
    template = load_template(name)
    assert template.name == name and template.required


@pytest.mark.parametrize("name", sorted(shipped_chat_templates()))
def test_every_shipped_chat_template_loads(name):
    variables = {"bos_token": "<s>", "eos_token": "</s>"}
    rendered = load_chat_template(name).render(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, variables=variables
    )
    assert "hi" in rendered


def test_the_cli_reference_is_up_to_date():
    """docs/cli.md is what scripts/gen_cli_docs.py writes from the current ``--help``."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
