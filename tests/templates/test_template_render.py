"""Rendering (sftprep.templates.render): field binding, paths, language pairs, bad field values."""

from __future__ import annotations

import pytest

from sftprep.errors import RecordError, TemplateError
from sftprep.templates import bind_template, load_template


def render(name: str, record: dict, **kwargs) -> tuple[str, str]:
    renderer = bind_template(load_template(name), first_record=record, **kwargs)
    return renderer.render(record, "d.jsonl:1")


def test_qa_whitespace_goes_with_the_target():
    assert render("qa", {"question": "Why?", "answer": "Because."}) == ("Question: Why? Answer:", " Because.")


def test_braces_in_data_are_text():
    prompt, target = render("qa", {"question": "What is {name}?", "answer": "{{author}}"})
    assert prompt == "Question: What is {name}? Answer:" and target == " {{author}}"


def test_alpaca_with_and_without_input():
    with_input, _ = render("alpaca", {"instruction": "Add.", "input": "2 and 2", "output": "4"})
    without, target = render("alpaca", {"instruction": "Add.", "input": "", "output": "4"})
    assert "### Input:\n2 and 2\n\n### Response:" in with_input
    assert "### Input" not in without and without.endswith("### Instruction:\nAdd.\n\n### Response:")
    assert target == "\n4"


def test_field_paths_select_inside_objects_and_lists():
    record = {"q": {"text": "Who?"}, "answers": ["Ann", "Bob"]}
    prompt, target = render("qa", record, field_map={"question": "q.text", "answer": "answers.1"})
    assert (prompt, target) == ("Question: Who? Answer:", " Bob")


def test_language_pair_from_the_hf_translation_layout():
    record = {"translation": {"de": "Hallo", "en": "Hello"}}
    assert render("translation", record) == ("<TRANSLATE> German: Hallo English:", " Hello")
    assert render("translation", record, variables={"target_lang": "Englisch"})[0].endswith("Englisch:")


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"question": "q"}, "missing_field"),
        ({"question": "q", "answer": None}, "null_field"),
        ({"question": "q", "answer": ["a"]}, "not_a_string"),
        ({"question": "q", "answer": ""}, "empty_target"),
        ({"question": "a\x00", "answer": "b"}, "nul_byte"),
    ],
)
def test_record_errors(record, reason):
    renderer = bind_template(load_template("qa"))
    with pytest.raises(RecordError) as info:
        renderer.render(record, "d.jsonl:3")
    assert info.value.reason == reason and info.value.where == "d.jsonl:3"


def test_unknown_field_mapping():
    with pytest.raises(TemplateError, match=r"template 'qa' has no field 'answr'"):
        bind_template(load_template("qa"), {"answr": "a"})
