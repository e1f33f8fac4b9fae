"""Template files (sftprep.templates.template): placeholders, loading shipped and user files, bad ones."""

from __future__ import annotations

import pytest

from sftprep.errors import TemplateError
from sftprep.templates import bind_template, configs_dir, load_template, shipped_templates, template_from_dict
from sftprep.templates.template import Compiled, compile_text


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


def test_compile_text_splits_literals_and_fields():
    assert compile_text("Q: {q} A:", "t") == (("Q: ", " A:"), ("q",))
    literals, names = compile_text("{{x}} {y}{z}", "t")
    assert (literals, names) == (("{x} ", "", ""), ("y", "z"))
    assert Compiled(literals, names).render({"y": "1", "z": "{2}"}) == "{x} 1{2}"


def test_shipped_templates_are_found_and_load():
    shipped = shipped_templates()
    assert {"qa", "alpaca", "summarization", "translation"} <= set(shipped)
    assert all(path.parent == configs_dir() for path in shipped.values())
    assert [load_template(name).name for name in shipped] == list(shipped)
