"""Builds for the ``sftprep inspect`` tests (tests/test_inspect_*.py), made once per session.

Builds use ``run_build`` and the real tokenizers in ../shared, from sample_data/
(named relative to the repository root, as a user in the checkout would, so that
golden files hold no machine paths) and from real datasets.

tests/conftest.py registers this module as a plugin, so ``repo_root``, ``tok`` and
``built`` are fixtures for every test module (one session cache for all of them);
the inspect tests use ``repo_root`` for the whole module (``pytestmark``). It imports
little, so that registering it costs other tests nothing.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QA = "sample_data/qa.jsonl"
REAL_TOKENIZERS = ("gpt2", "mistral-7b-v0.1", "phi-3-mini")


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
    cache: dict[str, Path] = {}

    def build(tokenizer: str | None, data: str = QA, **options) -> Path:
        key = repr((tokenizer, data, sorted(options.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp("build") / "out"
            from sftprep.build import BuildConfig, run_build  # here: a plugin imports little

            with contextlib.chdir(ROOT):
                config = BuildConfig(inputs=(data,), output=str(out), tokenizer=tokenizer, **options)
                run_build(config)
            cache[key] = out
        return cache[key]

    return build
