"""Meta-tests: every command and build option is documented; every shipped template loads."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from sftprep.chat import load_chat_template, shipped_chat_templates
from sftprep.cli import cli
from sftprep.templates import load_template, shipped_templates

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_help_and_is_in_the_readme(name):
    command = cli.commands[name]
    assert command.help and len(command.help) > 20
    assert f"sftprep {name}" in README


@pytest.mark.parametrize("option", [p for p in cli.commands["build"].params if isinstance(p, click.Option)],
                         ids=lambda p: p.name)  # fmt: skip
def test_every_build_option_has_help(option):
    assert option.help, option.name


def test_readme_opens_with_the_two_commands():
    first_block = re.search(r"```\n(.*?)```", README, re.S).group(1)
    assert first_block.splitlines()[0].startswith("make demo")
    assert first_block.splitlines()[1].startswith("make test")


def test_ci_runs_the_readme_test_command():
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
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
