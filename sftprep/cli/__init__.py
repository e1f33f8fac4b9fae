"""The ``sftprep`` command line (``sftprep.cli.cli`` is the click group, ``main`` the entry point)."""

from sftprep.cli.build import cli, main

__all__ = ["cli", "main"]
