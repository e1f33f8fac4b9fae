"""``sftprep templates``: list the shipped templates."""

from __future__ import annotations

import click

from sftprep.cli.errors import Command


@click.command(cls=Command)
def templates() -> None:
    """List the shipped templates.

    \b
    sftprep templates
    """
    from sftprep.templates import load_template, shipped_templates

    for name in shipped_templates():
        template = load_template(name)
        click.echo(f"{name:<18} {template.description}")
