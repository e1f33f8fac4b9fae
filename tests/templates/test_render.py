"""Templates: rendering, field paths, detection from the data, template files."""

from __future__ import annotations

import pytest

from sftprep.errors import RecordError, TemplateError
from sftprep.templates import bind_template, detect_template, load_template, template_from_dict


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


def test_user_template_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('prompt = "Q: {q}\\nA:"\ntarget = " {a}"\n')
    template = load_template(str(path))
    assert template.name == "mine"
    assert bind_template(template).render({"q": "x", "a": "y"}, "w") == ("Q: x\nA:", " y")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"prompt": "Q: {q", "target": " {a}"}, "unmatched '{'"),
        ({"prompt": "Q:", "target": " fixed"}, "the target has no field"),
        ({"prompt": "Q:", "target": " {a}", "colour": "red"}, "unknown key 'colour'"),
        ({"target": " {a}"}, "'prompt' must be a string"),
    ],
)
def test_bad_template_files(data, message):
    with pytest.raises(TemplateError, match=message):
        template_from_dict(data, where="t.toml")


def test_unknown_field_mapping():
    with pytest.raises(TemplateError, match=r"template 'qa' has no field 'answr'"):
        bind_template(load_template("qa"), {"answr": "a"})
