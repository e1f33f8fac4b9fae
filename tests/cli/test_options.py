"""One options layer (issue 17 item 2): choices in sftprep.options, defaults in BuildConfig, flags in cli.flags."""

from __future__ import annotations

import dataclasses

import click
import pytest
from click.testing import CliRunner

from sftprep import options
from sftprep.cli import cli
from sftprep.cli.flags import option_names, parse_size, row_options, size_text
from sftprep.cli.inspect import inspect
from sftprep.config import BuildConfig


def _params(name: str) -> dict[str, click.Parameter]:
    return {p.name: p for p in cli.commands[name].params if p.name}


def test_every_build_flag_defaults_to_the_build_config():
    """``sftprep build`` with no options builds exactly ``BuildConfig``'s defaults."""
    ctx = cli.commands["build"].make_context("build", ["in.jsonl", "-o", "out"])
    for f in dataclasses.fields(BuildConfig):
        if f.name in ("inputs", "output", "system", "fields", "variables", "roles"):
            continue  # arguments, recipe-only, or NAME=VALUE lists that fill dicts
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        assert ctx.params[f.name] == default, f.name
    assert ctx.params["fields"] == ctx.params["variables"] == ctx.params["roles"] == ()


def test_every_build_config_field_is_a_build_flag():
    """Adding a BuildConfig field without a flag (or the reverse) is caught here."""
    fields = {f.name for f in dataclasses.fields(BuildConfig)} - {"inputs", "output", "system"}
    flags = set(_params("build")) - {"inputs", "output", "tokenizer", "recipe", "allow_changed_inputs",
                                     "as_json", "quiet"}  # fmt: skip
    assert fields - {"tokenizer"} == flags


@pytest.mark.parametrize(
    ("module", "name", "ours"),
    [
        ("sftprep.labels", "MODES", options.MODES),
        ("sftprep.labels", "LABEL_STYLES", options.LABEL_STYLES),
        ("sftprep.encode", "TRUNCATION_POLICIES", options.TRUNCATION_POLICIES),
        ("sftprep.chat", "TRAIN_ON", options.TRAIN_ON),
        ("sftprep.chat", "TURNS", options.TURNS),
        ("sftprep.readers", "FORMATS", options.INPUT_FORMATS),
        ("sftprep.padding", "PAD_TO_CHOICES", options.PAD_TO_CHOICES),
        ("sftprep.packing", "DEFAULT_BUFFER_EXAMPLES", options.DEFAULT_BUFFER_EXAMPLES),
        ("sftprep.exports", "FORMATS", options.OUTPUT_FORMATS),
        ("sftprep.exports", "EXPORT_FORMATS", options.EXPORT_FORMATS),
        ("sftprep.view", "WHERE", options.WHERE),
        ("sftprep.view", "FORMATS", options.VIEW_FORMATS),
    ],
)
def test_the_library_accepts_what_the_options_offer(module, name, ours):
    """Where a library module still declares its own list, it is the options layer's."""
    import importlib

    assert getattr(importlib.import_module(module), name) == ours


def test_template_roles_are_the_chat_formats_roles():
    from sftprep.chat.formats import DEFAULT_ROLES

    assert tuple(sorted(set(DEFAULT_ROLES.values()))) == options.TEMPLATE_ROLES


def test_build_and_inspect_preview_share_the_row_options():
    """The same flags, choices and defaults: inspect --preview cannot drift from build."""
    build, preview = _params("build"), {p.name: p for p in inspect.params if p.name}
    for name in option_names(row_options(preview=True)):
        a, b = build[name], preview[name]
        assert getattr(a.type, "choices", None) == getattr(b.type, "choices", None), name
        assert a.default == b.default, name
    assert preview["input_format"].opts == ["--input-format"]
    assert build["input_format"].opts == ["--format"]


@pytest.mark.parametrize(
    ("args", "flags"),
    [
        (["--mode", "sequence"], "--mode"),
        (["-f", "question=q", "--records", "5"], "--field, --records"),
        (["--input-format", "csv"], "--input-format"),
    ],
)
def test_inspect_refuses_preview_options_without_preview(tmp_path, args, flags):
    """Given on the command line, even with their default value, they do nothing without --preview."""
    result = CliRunner().invoke(inspect, [str(tmp_path), *args])
    assert result.exit_code == 2
    assert f"{flags} only work with --preview" in result.output


@pytest.mark.parametrize(("text", "n"), [("256MiB", 256 * 2**20), ("16MiB", 16 * 2**20), ("10GiB", 10 * 2**30),
                                         ("4KiB", 4096), ("1KiB", 1024), ("1000", 1000)])  # fmt: skip
def test_size_text_reads_back(text, n):
    assert size_text(n) == text
    assert parse_size(size_text(n)) == n


def test_options_imports_only_the_standard_library():
    import ast
    from pathlib import Path

    for module in (options, __import__("sftprep.config", fromlist=["x"])):
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in top if isinstance(n, ast.ImportFrom) and n.module}
        assert names <= {"__future__", "os", "dataclasses", "typing", "sftprep.errors", "sftprep.options"}, (
            names
        )
