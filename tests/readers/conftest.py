"""Reader tests work in tmp_path, so inputs have short relative names as a user would type them."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Work in tmp_path (every reader test names its inputs relative to it)."""
    monkeypatch.chdir(tmp_path)
