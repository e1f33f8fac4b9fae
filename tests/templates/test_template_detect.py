"""Choosing a shipped template from the data (sftprep.templates.detect)."""

from __future__ import annotations

import pytest

from sftprep.errors import TemplateError
from sftprep.templates import detect_template


@pytest.mark.parametrize(
    ("record", "name"),
    [
        ({"question": "q", "answer": "a"}, "qa"),
        ({"problem": "q", "answer": "a", "metadata": "{}"}, "qa"),
        ({"dialogue": "d", "summary": "s", "topic": "t"}, "summarization"),
        ({"instruction": "i", "input": "", "output": "o"}, "alpaca"),
        ({"instruction": "i", "input": "", "response": "r"}, "alpaca"),  # GPTeacher: input kept
        ({"instruction": "i", "response": "r"}, "instruction"),
        ({"prompt": "p", "response": "r"}, "prompt-completion"),
        ({"prompt": "p", "completion": "c"}, "prompt-completion"),
        ({"translation": {"cs": "a", "en": "b"}}, "translation"),
    ],
)
def test_detection(record, name):
    assert detect_template(record, "d.jsonl:1").name == name


def test_no_template_fits_lists_the_fields():
    with pytest.raises(TemplateError, match=r"d.jsonl:1: no shipped template fits .* \(context, aliases\)"):
        detect_template({"context": "c", "aliases": []}, "d.jsonl:1")


def test_ambiguous_record_lists_the_candidates():
    with pytest.raises(TemplateError, match=r"fit several templates equally well \(instruction, qa\)"):
        detect_template({"question": "q", "answer": "a", "instruction": "i", "response": "r"}, "d.jsonl:1")
