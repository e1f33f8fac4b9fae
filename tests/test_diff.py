"""`sftprep diff`: real builds of the same data with two tokenizers, two templates, a skipped record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from sftprep import BuildConfig, run_build
from sftprep.cli import cli
from sftprep.diff import diff_builds
from sftprep.errors import EXIT_IO

NQ = ("qa", "NQ-open.dev.jsonl")
QA = {"template": "qa", "fields": {"answer": "answer.0"}}


def _build(out: Path, data: str, tokenizer: str, **options) -> str:
    run_build(BuildConfig(inputs=(data,), output=str(out), tokenizer=tokenizer, **options))
    return str(out)


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module")
def gpt2_build(tmp_path_factory, data_path, tokenizer_path) -> str:
    return _build(tmp_path_factory.mktemp("d") / "gpt2", data_path(*NQ), tokenizer_path("gpt2"), **QA)


def test_two_tokenizers(gpt2_build, tmp_path, data_path, tokenizer_path):
    other = _build(tmp_path / "mistral", data_path(*NQ), tokenizer_path("mistral-7b-v0.1"), **QA)
    result = _run("diff", gpt2_build, other, "--limit", "1")
    assert result.exit_code == 1
    out = result.stdout
    assert "tokenizer: " in out and "gpt2" in out and "mistral-7b-v0.1" in out
    # Every example's ids differ; what is trained reads the same.
    assert (
        "0 same, 0 only in A, 0 only in B, 3,610 with different ids, 0 with a different trained span" in out
    )
    assert "Answer:[[ 14 December 1972" in out and "UTC</s>]]" in out  # B, shown as inspect shows it
    assert "3,609 more differing examples" in out


def test_two_template_versions(gpt2_build, tmp_path, data_path, tokenizer_path):
    template = tmp_path / "qa2.toml"
    template.write_text('name = "qa2"\nprompt = "Q: {question}\\nA:"\ntarget = " {answer}"\n')
    other = _build(tmp_path / "qa2", data_path(*NQ), tokenizer_path("gpt2"), template=str(template),
                   fields={"question": "question", "answer": "answer.0"})  # fmt: skip
    report = diff_builds(gpt2_build, other, limit=2)
    assert not report.same
    assert report.counts["ids"] == 3610 and report.counts["span"] == 0  # the same answers are trained
    assert any(c.startswith("template.prompt: 'Question: {question} Answer:' -> 'Q: {question}\\nA:'")
               for c in report.changes), report.changes  # fmt: skip
    assert report.shown[0].a_text[1].startswith("Question: ") and report.shown[0].b_text[1].startswith("Q: ")


def test_a_wider_trained_span_is_a_span_difference(gpt2_build, tmp_path, data_path, tokenizer_path):
    """The same tokenizer, a target that takes the prompt's last word: the span differs, by text."""
    template = tmp_path / "qa3.toml"
    template.write_text('name = "qa3"\nprompt = "Question: {question}"\ntarget = " Answer: {answer}"\n')
    other = _build(tmp_path / "qa3", data_path(*NQ), tokenizer_path("gpt2"), template=str(template),
                   fields={"question": "question", "answer": "answer.0"})  # fmt: skip
    result = _run("diff", gpt2_build, other, "--json", "--limit", "1")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["counts"]["span"] == 3610
    shown = report["shown"][0]
    assert shown["kind"] == "span" and shown["key"] == "NQ-open.dev.jsonl:1"
    assert "Answer:[[ 14" in shown["a"][1] and "[[ Answer: 14" in shown["b"][1]


def test_a_skipped_record_still_lines_up(gpt2_build, tmp_path, data_path, tokenizer_path):
    data = tmp_path / "NQ-open.dev.jsonl"
    lines = Path(data_path(*NQ)).read_text(encoding="utf-8").splitlines(keepends=True)
    lines[4] = '{"question": "no answer here"}\n'
    data.write_text("".join(lines), encoding="utf-8")
    other = _build(tmp_path / "skip", str(data), tokenizer_path("gpt2"), **QA, on_error="skip")
    report = diff_builds(gpt2_build, other)
    assert report.counts == {"same": 3609, "only_in_a": 1, "only_in_b": 0, "ids": 0, "span": 0, "changed": 0}
    assert [(s.kind, s.key[:2]) for s in report.shown] == [("only_in_a", ("NQ-open.dev.jsonl", 5))]
    assert any(c.startswith("inputs: ") for c in report.changes)


@pytest.mark.parametrize(
    "options",
    [{"pack": True, "max_length": 256}, {"mode": "exploded"}, {"labels": "hf", "pad_to_multiple_of": 16}],
)
def test_the_same_rows_stored_another_way_are_the_same(
    gpt2_build, tmp_path, data_path, tokenizer_path, options
):
    other = _build(tmp_path / "other", data_path(*NQ), tokenizer_path("gpt2"), **QA, **options)
    result = _run("diff", gpt2_build, other)
    assert result.exit_code == 0, result.output
    assert "3,610 same, 0 only in A, 0 only in B" in result.stdout


def test_chat_builds_with_two_templates(tmp_path, data_path, tokenizer_path):
    data = data_path("chat", "toy_chat_fine_tuning.jsonl")
    a = _build(tmp_path / "a", data, tokenizer_path("phi-3-mini"))  # its own template
    b = _build(tmp_path / "b", data, tokenizer_path("phi-3-mini"), chat_template="chatml", train_on="last")
    report = diff_builds(a, b)
    assert not report.same and report.counts["only_in_a"] == report.counts["only_in_b"] == 0
    assert report.counts["ids"] == report.counts["span"] == 5
    assert "option train_on: 'assistant' -> 'last'" in report.changes
    assert any(c.startswith("template.name: ") for c in report.changes), report.changes


def test_identical_builds_and_errors(gpt2_build, tmp_path):
    copy = shutil.copytree(gpt2_build, tmp_path / "copy")
    assert _run("diff", gpt2_build, str(copy)).exit_code == 0
    result = _run("diff", gpt2_build, str(tmp_path / "missing"))
    assert result.exit_code == EXIT_IO and "no such build directory" in result.output
