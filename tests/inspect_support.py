"""Shared by the ``sftprep inspect`` tests (tests/test_inspect_*.py): builds and helpers.

Builds are made once per session with ``run_build`` and the real tokenizers in
../shared, from sample_data/ (named relative to the repository root, as a user
in the checkout would, so that golden files hold no machine paths) and from
real datasets. Expected values are computed from the shards (``datasets``) and
the tokenizer directly, never from the view's own code.

tests/conftest.py registers this module as a plugin, so its fixtures (``repo_root``,
``tok``, ``built``) are available to every test; the inspect tests use ``repo_root``
for the whole module (``pytestmark``).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from datasets import load_from_disk
from tokenizers import Tokenizer

from sftprep import view
from sftprep.build import BuildConfig, run_build
from sftprep.cli_inspect import inspect

ROOT = Path(__file__).resolve().parents[1]
QA = "sample_data/qa.jsonl"
REAL_TOKENIZERS = ("gpt2", "mistral-7b-v0.1", "phi-3-mini")
# Builds by their arguments, shared by every test module that uses ``built`` in the session.
_BUILDS: dict[str, Path] = {}


@pytest.fixture
def repo_root(monkeypatch):
    """Builds name their inputs and tokenizers relative to the checkout: run from there."""
    monkeypatch.chdir(ROOT)


@pytest.fixture(scope="session")
def tok(tokenizer_path):
    """tok("gpt2") -> "../shared/tokenizers/gpt2" (skips when ../shared is missing)."""
    return lambda name: os.path.relpath(tokenizer_path(name), ROOT)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """built(tokenizer, data=QA, **options) -> the output directory of that build, made once."""
    cache = _BUILDS

    def build(tokenizer: str | None, data: str = QA, **options) -> Path:
        key = repr((tokenizer, data, sorted(options.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp("build") / "out"
            with contextlib.chdir(ROOT):
                config = BuildConfig(inputs=(data,), output=str(out), tokenizer=tokenizer, **options)
                run_build(config)
            cache[key] = out
        return cache[key]

    return build


def run(*args, ok: bool = True, env: dict | None = None):
    result = CliRunner(env=env).invoke(inspect, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def load_tok(name: str) -> Tokenizer:
    return Tokenizer.from_file(str(ROOT / name / "tokenizer.json"))


def rows_of(out: Path):
    return load_from_disk(str(out))


def split_rows(stdout: str) -> list[tuple[list[str], list[str]]]:
    """The text view as (header lines, body lines) per row."""
    return split_parts(stdout.splitlines(), "── row", "─")


def split_parts(lines: list[str], start: str, rule_end: str) -> list[tuple[list[str], list[str]]]:
    """Lines as (rule lines, lines under it) per part; a part starts at a line starting with ``start``."""
    parts: list[tuple[list[str], list[str]]] = []
    i = 0
    while i < len(lines):
        assert lines[i].startswith(start), lines[i]
        rule = [lines[i]]
        while not rule[-1].endswith(rule_end):
            i += 1
            rule.append(lines[i])
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(start):
            body.append(lines[i])
            i += 1
        parts.append((rule, body))
    return parts


def shown(text: str) -> str:
    """Text as the view writes it on one line (``\\n`` as ↵, tabs as ⇥, ...)."""
    return "".join(part for part, _ in view.visible(text, newlines=False))


def trained_tokens(mask: list[int]) -> np.ndarray:
    """Token j is trained when the shifted loss_mask says position j - 1 predicts it."""
    flags = np.zeros(len(mask), dtype=bool)
    flags[1:] = np.asarray(mask[:-1], dtype=bool)
    return flags


def token_table(stdout: str) -> list[list[str]]:
    """The data lines of --tokens output, split into columns (token strings hold no spaces)."""
    return [line.split() for line in stdout.splitlines() if re.match(r"^\s*\d+\s", line)]


def headers(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("── row")]


def split_examples(body: list[str]) -> list[tuple[list[str], list[str]]]:
    """A packed row's text as (sub-rule lines, body lines) per example."""
    return split_parts(body, "┄┄ example", "┄")
