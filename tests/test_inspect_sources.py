"""``sftprep inspect``'s sources (shards, previews, tokenizers), rows from other tools, and errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner
from inspect_support import (
    QA,
    headers,
    rows_of,
    run,
    split_rows,
    token_table,
)

from sftprep.build import BuildConfig, run_build
from sftprep.cli import cli

pytestmark = pytest.mark.usefixtures("repo_root")


# -- sources: shards, previews, tokenizers --------------------------------------------------


def test_a_single_shard_and_several_shards(built, tok):
    out = built(tok("gpt2"), shard_size=3000)
    shards = sorted(out.glob("data-*.arrow"))
    assert len(shards) > 2
    whole = [json.loads(x) for x in run(out, "--format", "json", "-a").stdout.splitlines()]
    assert [o["input_ids"] for o in whole] == rows_of(out)["input_ids"]
    second = [json.loads(x) for x in run(shards[1], "--format", "json", "-a").stdout.splitlines()]
    first_count = len(pa.ipc.open_stream(str(shards[0])).read_all())
    assert [o["input_ids"] for o in second] == [o["input_ids"] for o in whole[first_count:][: len(second)]]
    assert (
        run(shards[1], "-n", 1).stdout.split("\n", 1)[1]
        == run(out, "-i", first_count).stdout.split("\n", 1)[1]
    )


@pytest.mark.parametrize(
    "options",
    [[], ["--tokens"], ["--labels", "hf", "--tokens"], ["--mode", "exploded"], ["--format", "json"]],
    ids=lambda o: " ".join(o) or "text",
)
def test_preview_shows_what_the_build_writes(built, tok, options):
    build_options = {}
    if "--labels" in options:
        build_options["labels"] = "hf"
    if "--mode" in options:
        build_options["mode"] = "exploded"
    out = built(tok("mistral-7b-v0.1"), **build_options)
    shown_options = [o for o in options if o in ("--tokens", "--format", "json")]
    from_build = run(out, "-n", 4, *shown_options).stdout
    preview = run("--preview", QA, "--tokenizer", tok("mistral-7b-v0.1"), "-n", 4, *options).stdout
    assert preview == from_build


def test_preview_reports_rejected_records(tmp_path, tok):
    data = tmp_path / "mixed.jsonl"
    data.write_text(
        '{"question": "2+2?", "answer": "4"}\n{"question": "no answer"}\n{"question": "3+3?", "answer": "6"}\n'
    )
    result = run("--preview", data, "--tokenizer", tok("gpt2"), "-t", "qa", "-a")
    assert len(headers(result.stdout)) == 2
    assert "mixed.jsonl:2: field 'answer': missing 'answer' (found: question) (skipped)" in result.stderr
    assert "[[ 6<|endoftext|>]]" in result.stdout


def test_preview_options_need_preview(built, tok):
    result = run(built(tok("gpt2")), "--template", "qa", "--max-length", 9, ok=False)
    assert result.exit_code == 2
    assert "--template, --max-length only work with --preview" in result.output


def test_ids_only_when_the_tokenizer_is_gone(built, tmp_path, tokenizer_path):
    copy = tmp_path / "gpt2"
    shutil.copytree(tokenizer_path("gpt2"), copy)
    out = tmp_path / "out"
    run_build(BuildConfig(inputs=(QA,), output=str(out), tokenizer=str(copy)))
    shutil.rmtree(copy)
    result = run(out, "-n", 1)
    assert result.stderr.count("cannot load tokenizer") == 1 and "showing ids only" in result.stderr
    body = split_rows(result.stdout)[0][1]
    assert "".join(body) == "24361 25 1867 318 262 3139 286 4881 30 23998 25[[ 6342 50256]]"
    table = token_table(run(out, "--tokens", "-n", 1).stdout)
    assert table[0][:3] == ["0", "24361", "#24361"]


def test_a_different_tokenizer_is_flagged(built, tok):
    result = run(built(tok("gpt2")), "--tokenizer", tok("mistral-7b-v0.1"), "-n", 1)
    assert "is not the one this build used" in result.stderr


def test_marker_tokens_saved_in_the_output_are_used(built, tok):
    out = built(tok("gpt2"), "sample_data/summarization.jsonl", markers="special")
    assert (out / "tokenizer.json").is_file()
    table = token_table(run(out, "--tokens", "-n", 1).stdout)
    assert table[0][2] == "<ARTICLE>"
    assert run(out, "-n", 1).stderr == ""


# -- rows from other tools, and columns to come ------------------------------------------------


def _rewrite_shard(out: Path, dest: Path, change) -> Path:
    """A copy of the build's one shard with ``change(table) -> table`` applied, metadata kept."""
    shard = next(out.glob("data-*.arrow"))
    table = pa.ipc.open_stream(str(shard)).read_all()
    new = change(table).replace_schema_metadata(table.schema.metadata)
    path = dest / "data-00000-of-00001.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, new.schema) as writer:
        writer.write_table(new)
    return path


def test_columns_the_view_does_not_know_are_shown(built, tok, tmp_path):
    """Columns another tool adds appear without changes to the view: per token in the table, else in the header."""
    out = built(tok("gpt2"))

    def add(table: pa.Table) -> pa.Table:
        lengths = [len(ids) for ids in table.column("input_ids").to_pylist()]
        table = table.append_column(
            "weight", pa.array([[k % 3 for k in range(n)] for n in lengths], pa.list_(pa.int32()))
        )
        return table.append_column("domain", pa.array(["geo"] * len(lengths)))

    shard = _rewrite_shard(out, tmp_path, add)
    stdout = run(shard, "--tokens", "-i", 0, "--tokenizer", tok("gpt2")).stdout.splitlines()
    assert 'domain="geo"' in stdout[0]
    assert stdout[1].endswith("trained  weight")
    assert [line.split()[-1] for line in stdout[2:]] == [str(k % 3) for k in range(13)]
    obj = json.loads(run(shard, "--format", "json", "-n", 1, "--tokenizer", tok("gpt2")).stdout)
    assert obj["weight"] == [k % 3 for k in range(13)] and obj["domain"] == "geo"


def test_a_label_that_is_not_the_next_token_is_flagged(built, tok, tmp_path):
    out = built(tok("gpt2"))

    def corrupt(table: pa.Table) -> pa.Table:
        targets = table.column("target_ids").to_pylist()
        targets[0][10] = 123
        index = table.schema.get_field_index("target_ids")
        return table.set_column(index, "target_ids", pa.array(targets, pa.list_(pa.int32())))

    shard = _rewrite_shard(out, tmp_path, corrupt)
    stdout = run(shard, "--tokens", "-i", 0, "--tokenizer", tok("gpt2")).stdout
    assert "1 label ≠ next token!" in "".join(stdout.splitlines()[:2])
    assert token_table(stdout)[10][-3:] == ["yes", "(label", "123)"]


def test_not_an_sftprep_build(tmp_path):
    path = tmp_path / "other.arrow"
    table = pa.table({"text": ["a", "b"]})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    result = run(path, ok=False)
    assert result.exit_code == 2
    assert (
        "not sftprep rows: expected input_ids with target_ids, labels or target_id, found text"
        in result.output
    )


# -- errors and usage --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["missing-dir"], 4, "missing-dir: no such file or directory"),
        (["sample_data"], 4, "sample_data: no .arrow shards here (is it the output of sftprep build?)"),
        (["OUT", "-w", "max-length"], 2, "was built without --max-length, so no row can hit it"),
        (["OUT", "--tokens", "--stats"], 2, "--tokens and --stats are different views: choose one"),
        (["OUT", "-a", "--random", "3"], 2, "choose one of --limit, --all and --random"),
        (["OUT", "-i", "x"], 2, "'x' is not a row number or range (e.g. 7, 10-20, 5-)"),
        (["OUT", "-i", "5-3"], 2, "the range '5-3' is empty"),
        (["OUT", "--unpack"], 2, "--unpack: OUT is not packed (its rows have no seq_lengths)"),
        (["OUT", "--unpack", "--stats"], 2, "--unpack shows rows and --stats counts them"),
    ],
)
def test_errors(built, tok, args, code, message):
    out = built(tok("gpt2"))
    result = run(*[str(out) if a == "OUT" else a for a in args], ok=False)
    assert result.exit_code == code, result.output
    assert message.replace("OUT", str(out)) in result.output


def test_a_damaged_shard(built, tok, tmp_path):
    shard = next(built(tok("gpt2"), shard_size=3000).glob("data-*.arrow"))
    cut = tmp_path / "cut.arrow"
    cut.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    result = run(cut, "-a", "--tokenizer", tok("gpt2"), ok=False)
    assert result.exit_code == 4
    assert f"{cut}: damaged shard: " in result.output


def test_registered_with_help_and_examples():
    result = CliRunner().invoke(cli, ["inspect", "--help"])
    assert result.exit_code == 0
    assert "sftprep inspect out/ --tokens -i 7" in result.output
    assert "--preview" in result.output and "--where" in result.output
