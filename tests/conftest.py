"""Shared fixtures: the real tokenizers and datasets in ../shared.

Tests that need ../shared skip with a reason when it is missing, except under
CI (CI=true), where a missing ../shared is a failure: CI must test real data.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TOKENIZERS = ("gpt2", "mistral-7b-v0.1", "phi-3-mini", "smollm-135m")


def shared_path(*parts: str) -> Path:
    """A path inside ../shared; skip (or fail under CI) when it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = f"{path} is missing: the real data in ../shared is needed"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: not skipping)")
        pytest.skip(message)
    return path


@pytest.fixture
def shared_dir() -> Path:
    return shared_path()


@pytest.fixture(scope="session")
def tokenizer_path():
    """tokenizer_path("gpt2") -> the folder of a real tokenizer."""
    return lambda name: str(shared_path("tokenizers", name))


@pytest.fixture(scope="session")
def data_path():
    """data_path("qa", "NQ-open.dev.jsonl") -> a real dataset file."""
    return lambda *parts: str(shared_path("data", *parts))


# The inspect tests' shared builds and helpers (tests/test_inspect_*.py).
pytest_plugins = ["inspect_fixtures"]


@pytest.fixture(autouse=True)
def _reader_tests_work_in_tmp(request, monkeypatch):
    """tests/readers/: work in tmp_path, so inputs have short relative names as a user would type them.

    (Here rather than in tests/readers/conftest.py: a second ``conftest`` module would shadow
    this one for the tests that import ``from conftest import ...``.)
    """
    if "readers" in request.path.parent.parts[-1:]:
        monkeypatch.chdir(request.getfixturevalue("tmp_path"))
