"""`sftprep verify`: real builds pass; real builds corrupted in the ways that matter are named."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner
from s3server import s3, s3_endpoint  # noqa: F401 - fixtures

from sftprep import BuildConfig, run_build
from sftprep.cli import cli
from sftprep.digest import RowDigest
from sftprep.errors import EXIT_IO
from sftprep.verify import EXIT_PROBLEMS, verify_build

NQ = ("qa", "NQ-open.dev.jsonl")
QA = {"template": "qa", "fields": {"answer": "answer.0"}}


def _build(out: Path, data: str, tokenizer: str | None, **options) -> Path:
    run_build(BuildConfig(inputs=(data,), output=str(out), tokenizer=tokenizer, **options))
    return out


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module")
def qa_build(tmp_path_factory, data_path, tokenizer_path) -> Path:
    """NQ-open with gpt2, shifted labels: the build the corruption tests start from."""
    return _build(tmp_path_factory.mktemp("v") / "qa", data_path(*NQ), tokenizer_path("gpt2"), **QA)


@pytest.fixture
def qa_copy(qa_build, tmp_path) -> Path:
    return Path(shutil.copytree(qa_build, tmp_path / "qa"))


def _shard(build: Path) -> Path:
    return build / json.loads((build / "manifest.json").read_text())["shards"][0]["filename"]


def _rewrite(shard: Path, change) -> None:
    """Rewrite a shard's rows through ``change(rows)``; the result is a valid Arrow stream."""
    reader = pa.ipc.open_stream(pa.memory_map(str(shard)))
    schema, rows = reader.schema, reader.read_all().to_pylist()
    change(rows)
    table = pa.Table.from_pylist(rows, schema=schema)
    with pa.OSFile(str(shard), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(table)


def _reseal(build: Path) -> None:
    """Make the manifest agree with the rows again, as a buggy but self-consistent build would write it."""
    path = build / "manifest.json"
    manifest = json.loads(path.read_text())
    shard = manifest["shards"][0]
    data = _shard(build).read_bytes()
    shard["sha256"], shard["num_bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    digest = RowDigest(table.schema)
    for batch in table.to_batches():
        digest.update(batch)
    manifest["content_sha256"] = digest.hexdigest()
    manifest["counts"]["trained_tokens"] = sum(table.column("num_trained_tokens").to_pylist())
    path.write_text(json.dumps(manifest))


SHAPES = {
    "shifted": ({}, "gpt2"),
    "hf": ({"labels": "hf"}, "gpt2"),
    "exploded": ({"mode": "exploded"}, "gpt2"),
    "packed": ({"pack": True, "max_length": 256}, "gpt2"),
    "packed-hf-padded": (
        {"pack": True, "max_length": 256, "labels": "hf", "pad_to": "max-length"},
        "mistral-7b-v0.1",
    ),
    "padded-multiple": ({"pad_to_multiple_of": 8}, "gpt2"),
    "padded-hf": ({"pad_to_multiple_of": 8, "labels": "hf"}, "gpt2"),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_pair_build_shape_verifies(tmp_path, data_path, tokenizer_path, shape):
    options, tok = SHAPES[shape]
    out = _build(tmp_path / "out", data_path(*NQ), tokenizer_path(tok), **QA, **options)
    report = verify_build(out)
    assert [p.line() for p in report.problems] == []
    assert report.rows == json.loads((out / "manifest.json").read_text())["counts"]["rows_written"]


@pytest.mark.parametrize(
    ("data", "options", "tok"),
    [
        (("chat", "toy_chat_fine_tuning.jsonl"), {}, "phi-3-mini"),
        (("chat", "toy_chat_fine_tuning.jsonl"), {"mode": "exploded", "labels": "hf"}, "phi-3-mini"),
        (
            ("chat", "lima.json"),
            {
                "chat_template": "chatml",
                "pack": True,
                "max_length": 1024,
                "on_error": "skip",
                "pad_to_multiple_of": 64,
            },
            "smollm-135m",
        ),
    ],
)
def test_chat_builds_verify(tmp_path, data_path, tokenizer_path, data, options, tok):
    out = _build(tmp_path / "out", data_path(*data), tokenizer_path(tok), **options)
    assert [p.line() for p in verify_build(out).problems] == []


def test_sources_rebuild_agrees_with_a_good_build(qa_build):
    report = verify_build(qa_build, sources=True)
    assert report.ok, [p.line() for p in report.problems]
    assert "sources" in report.checks


def test_a_label_moved_by_one_position_is_named(qa_copy):
    shard = _shard(qa_copy)

    def move(rows):
        target = rows[7]["target_ids"]
        t = next(i for i, v in enumerate(target) if v != -100)
        target[t - 1], target[t] = target[t], -100  # the first target, one position early
        rows[7]["loss_mask"] = [int(v != -100) for v in target]

    _rewrite(shard, move)
    result = _run("verify", str(qa_copy))
    assert result.exit_code == EXIT_PROBLEMS
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"{shard.name}: row 7 (") and ": target_ids[" in line and "neither input_ids[t+1]" in line
               for line in lines), lines  # fmt: skip
    assert any("sha256 differs" in line for line in lines)
    assert "problem" in result.stderr
    # The rebuild compares against the rows as they are, not as the manifest recorded them.
    sources = _run("verify", str(qa_copy), "--sources").stdout.splitlines()
    assert any(line.startswith(f"{shard.name}: row 7 (") and ": target_ids[" in line and line.endswith("the rebuild -100")
               for line in sources), sources  # fmt: skip


def test_a_self_consistent_mask_off_by_one_needs_sources(qa_copy):
    """The prompt's last token trained too, labels still next tokens: only the rebuild sees it."""
    shard = _shard(qa_copy)

    def widen(rows):
        row = rows[3]
        t = next(i for i, v in enumerate(row["target_ids"]) if v != -100)
        row["target_ids"][t - 1] = row["input_ids"][t]
        row["loss_mask"][t - 1] = 1
        row["num_trained_tokens"] += 1

    _rewrite(shard, widen)
    _reseal(qa_copy)
    assert verify_build(qa_copy).ok  # consistent: the row rules cannot see it
    report = verify_build(qa_copy, sources=True)
    rows = [(p.shard, p.row, p.column) for p in report.problems if p.row is not None]
    assert (shard.name, 3, "target_ids") in rows and (shard.name, 3, "loss_mask") in rows
    first = next(p for p in report.problems if p.column == "target_ids")
    assert first.position is not None and first.message.endswith("the rebuild -100")


def test_a_truncated_shard_is_a_problem_not_a_traceback(qa_copy):
    shard = _shard(qa_copy)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    result = _run("verify", str(qa_copy))
    assert result.exit_code == EXIT_PROBLEMS, result.output
    assert "Traceback" not in result.output
    assert f"{shard.name}: damaged" in result.stdout
    assert f"{shard.name}: " in result.stdout and "bytes, the manifest says" in result.stdout


def test_a_shard_swapped_in_from_another_build(qa_copy, tmp_path, data_path, tokenizer_path):
    other = _build(tmp_path / "other", data_path(*NQ), tokenizer_path("mistral-7b-v0.1"), **QA)
    shutil.copy(_shard(other), _shard(qa_copy))
    report = verify_build(qa_copy)
    messages = [p.line() for p in report.problems]
    assert any(m.startswith(_shard(qa_copy).name) and "bytes, the manifest says" in m for m in messages), (
        messages
    )
    assert any("schema metadata differs" in m for m in messages)  # another tokenizer's EOS and BOS
    assert any("content_sha256 differs" in m for m in messages)


def test_a_changed_input_is_named(tmp_path, data_path, tokenizer_path):
    data = tmp_path / "nq.jsonl"
    shutil.copy(data_path(*NQ), data)
    out = _build(tmp_path / "out", str(data), tokenizer_path("gpt2"), **QA)
    with open(data, "a", encoding="utf-8") as f:
        f.write('{"question": "one more", "answer": ["row"]}\n')
    result = _run("verify", str(out), "--sources")
    assert result.exit_code == EXIT_PROBLEMS
    assert f"input {data} changed since the build" in result.stdout
    assert "rows not rebuilt" in result.stdout


def test_a_wrong_tokenizer_is_named(qa_build, tokenizer_path):
    result = _run("verify", str(qa_build), "--tokenizer", tokenizer_path("mistral-7b-v0.1"))
    assert result.exit_code == EXIT_PROBLEMS
    assert "is not the tokenizer of this build" in result.stdout
    assert _run("verify", str(qa_build), "--tokenizer", tokenizer_path("gpt2")).exit_code == 0


def test_packed_rows_rules(tmp_path, data_path, tokenizer_path):
    out = _build(tmp_path / "out", data_path(*NQ), tokenizer_path("gpt2"), **QA, pack=True, max_length=128)
    shard = _shard(out)

    def break_rows(rows):
        rows[0]["position_ids"][rows[0]["seq_lengths"][0]] = 99  # the second example does not restart
        row = rows[1]
        end = row["seq_lengths"][0] - 1  # the first example's last position predicts the next example
        row["target_ids"][end], row["loss_mask"][end] = row["input_ids"][end + 1], 1
        rows[2]["source_line"] = rows[2]["source_line"][:-1]

    _rewrite(shard, break_rows)
    found = {(p.row, p.column) for p in verify_build(out).problems}
    assert {(0, "position_ids"), (1, "target_ids"), (1, "num_trained_tokens"), (2, "source_line")} <= found


def test_trained_padding_and_rows_without_trained_tokens(tmp_path, data_path, tokenizer_path):
    out = _build(
        tmp_path / "out", data_path(*NQ), tokenizer_path("gpt2"), **QA, labels="hf", pad_to_multiple_of=64
    )

    def break_rows(rows):
        rows[0]["labels"][-1] = rows[0]["input_ids"][-1]  # padding trained
        rows[1]["labels"] = [-100] * len(rows[1]["labels"])  # nothing trained
        rows[1]["num_trained_tokens"] = 0
        rows[2]["input_ids"][0] = 10**6  # not in the vocabulary

    _rewrite(_shard(out), break_rows)
    problems = {(p.row, p.column, p.message) for p in verify_build(out).problems}
    assert any(r == 0 and c == "labels" and "on padding" in m for r, c, m in problems), problems
    assert (1, "input_ids", "no trained token in this row") in problems
    assert any(r == 2 and c == "input_ids" and "outside the vocabulary" in m for r, c, m in problems)


def test_max_problems_caps_the_list_and_json_counts_all(qa_copy):
    def shift_all(rows):
        for row in rows[:30]:
            row["num_trained_tokens"] += 1

    _rewrite(_shard(qa_copy), shift_all)
    result = _run("verify", str(qa_copy), "--max-problems", "5", "--json")
    assert result.exit_code == EXIT_PROBLEMS
    report = json.loads(result.stdout)
    assert len(report["problems"]) == 5 and report["total"] > 30 and not report["ok"]
    assert {p["column"] for p in report["problems"]} >= {"num_trained_tokens"} or report["problems"][0][
        "check"
    ] == "files"


def test_no_manifest_is_an_io_error(tmp_path):
    (tmp_path / "half").mkdir()
    result = _run("verify", str(tmp_path / "half"))
    assert result.exit_code == EXIT_IO
    assert "no manifest.json" in result.output


def test_a_build_in_object_storage(tmp_path, s3):  # noqa: F811 - the s3 fixture
    data = s3.put("in/qa.jsonl", (Path(__file__).parents[1] / "sample_data" / "qa.jsonl").read_bytes())
    result = _run("build", data, "-t", "qa", "-o", s3.url("out"), "-q")
    assert result.exit_code == 0, result.output
    result = _run("verify", s3.url("out"), "--sources")
    assert result.exit_code == 0, result.output
    assert "OK" in result.stderr
    local = _build(tmp_path / "local", data, None, template="qa")
    assert _run("diff", s3.url("out"), str(local)).exit_code == 0
    s3.put("in/qa.jsonl", b'{"question": "changed", "answer": "yes"}\n')
    result = _run("verify", s3.url("out"), "--sources")
    assert result.exit_code == EXIT_PROBLEMS
    assert f"sources: input {data} changed since the build" in result.stdout
