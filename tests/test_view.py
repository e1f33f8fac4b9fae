"""The pieces of ``sftprep.view``: index and source parsing, visible text, histograms, wrapping."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from inspect_support import (
    shown,
)
from rich.text import Text

from sftprep import view

# -- the pieces ---------------------------------------------------------------------------


def test_parse_index_and_source():
    assert view.parse_index("7") == [(7, 8)]
    assert view.parse_index("10-12, 20") == [(10, 13), (20, 21)]
    assert view.parse_index("5-")[0][0] == 5
    assert view.parse_source("qa.jsonl:17") == ("qa.jsonl", (17, 17))
    assert view.parse_source("data/qa.jsonl:3-9") == ("data/qa.jsonl", (3, 9))
    assert view.parse_source("qa.jsonl") == ("qa.jsonl", None)
    assert view.parse_source(":4") == (None, (4, 4))


def test_visible_and_escaped_pieces():
    assert view.visible("a\tb\n") == [("a", False), ("⇥", True), ("b", False), ("↵", True), ("\n", False)]
    assert shown("x\u00a0y\u200bz\r\x1b") == "x\\u00a0y\\u200bz␍\\x1b"
    assert view.escape_piece("Ġworld") == "Ġworld"
    assert view.escape_piece("▁the") == "▁the"
    assert view.escape_piece("<0x0A>") == "<0x0A>"
    assert view.escape_piece("<|end|>\n") == "<|end|>\\n"
    assert view.escape_piece("a b") == "a␣b"


def test_histogram():
    assert view.histogram(np.array([3, 5, 12, 18]), bins=4) == [
        (0, 4, 1),
        (5, 9, 1),
        (10, 14, 1),
        (15, 19, 1),
    ]
    assert view.histogram(np.array([7])) == [(7, 7, 1)]
    bins = view.histogram(np.arange(1000, 9000))
    assert len(bins) <= 11 and sum(c for _, _, c in bins) == 8000


@given(
    st.text(alphabet=st.sampled_from("ab 世\u00a0\n"), max_size=300), st.integers(min_value=4, max_value=90)
)
def test_wrap_keeps_every_character(text, width):
    """Folded lines rejoin to the text exactly (newlines aside) and none is wider than the width."""
    lines = view.wrap(Text(text), width)
    assert "".join(line.plain for line in lines) == text.replace("\n", "")
    assert all(line.cell_len <= width for line in lines)


@pytest.mark.parametrize("width", [40, 80])
def test_a_rule_always_ends_in_its_line_whatever_the_title_length(width):
    """A folded title that fills its last line still ends the rule with ``──`` (readers split rows there)."""
    from sftprep.view.draw import Look, rule

    for n in range(1, 3 * width):
        title = " ".join(["x" * 7] * (n // 8)) + "y" * (n % 8)
        lines = [line.plain for line in rule(title, Look(width=width))]
        assert all(len(line) <= width for line in lines), (n, lines)
        assert lines[-1].endswith("──") and not any(line.endswith("──") for line in lines[:-1]), (n, lines)
