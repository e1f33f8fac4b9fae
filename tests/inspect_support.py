"""Helpers shared by the ``sftprep inspect`` tests (tests/test_inspect_*.py).

Expected values are computed from the shards (``datasets``) and the tokenizer
directly, never from the view's own code. The builds themselves come from the
fixtures in inspect_fixtures.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from datasets import load_from_disk
from inspect_fixtures import QA, REAL_TOKENIZERS, ROOT
from tokenizers import Tokenizer

from sftprep import view
from sftprep.cli.inspect import inspect

__all__ = [
    "QA",
    "REAL_TOKENIZERS",
    "ROOT",
    "headers",
    "load_tok",
    "rows_of",
    "run",
    "shown",
    "split_examples",
    "split_parts",
    "split_rows",
    "token_table",
    "trained_tokens",
]


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
