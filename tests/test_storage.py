"""Inputs and outputs on object storage, against a real S3 server (moto) on 127.0.0.1."""

# ruff: noqa: F811 - the s3 fixtures are imported, and tests take them as arguments

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from compare import NQ_CONFIG, NQ_OPTIONS, assert_same_build, manifest
from datasets import load_from_disk
from s3server import s3, s3_endpoint  # noqa: F401 - fixtures

from sftprep import BuildConfig, run_build, storage
from sftprep.cli import cli
from sftprep.errors import EXIT_DATA, EXIT_IO, EXIT_USAGE
from sftprep.merge import merge_builds

SAMPLE = Path("sample_data/qa.jsonl")


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


def _fetch(url: str, tmp_path: Path, name: str) -> Path:
    return storage.fetch_build(url, tmp_path / name)


def test_s3_to_s3_build_equals_the_same_build_on_disk(tmp_path, s3, data_path, tokenizer_path):
    data = Path(data_path("qa", "NQ-open.dev.jsonl")).read_bytes()
    s3.put("in/nq-1.jsonl", data[: len(data) // 2 + data[len(data) // 2 :].index(b"\n") + 1])
    s3.put("in/nq-2.jsonl", data[len(data) // 2 + data[len(data) // 2 :].index(b"\n") + 1 :])
    options = [*NQ_OPTIONS, "--tokenizer", tokenizer_path("gpt2"), "--shard-size", "100KB"]
    result = _run("build", s3.url("in/*.jsonl"), "-o", s3.url("out"), "-q", *options)
    assert result.exit_code == 0, result.output
    result = _run("build", s3.url("in/*.jsonl"), "-o", str(tmp_path / "disk"), "-q", *options)
    assert result.exit_code == 0, result.output
    assert storage.is_complete(s3.url("out"))
    assert_same_build(tmp_path / "disk", _fetch(s3.url("out"), tmp_path, "fetched"))
    # datasets reads it straight from the bucket, with the usual AWS environment
    direct = load_from_disk(s3.url("out"))
    assert direct.to_dict() == load_from_disk(str(tmp_path / "disk")).to_dict()
    m = manifest(tmp_path / "disk")
    assert [i["name"] for i in m["inputs"]] == [s3.url("in/nq-1.jsonl"), s3.url("in/nq-2.jsonl")]
    assert m["counts"]["records_read"] == 3610 and len(m["shards"]) > 1
    # and the rows equal a build of the same data read from disk (but for source_file)
    local = tmp_path / "nq.jsonl"
    local.write_bytes(data)
    run_build(BuildConfig(inputs=(str(local),), output=str(tmp_path / "local"), **NQ_CONFIG,
                          tokenizer=tokenizer_path("gpt2")))  # fmt: skip
    ours, theirs = load_from_disk(str(tmp_path / "local")), direct
    assert (
        ours.remove_columns(["source_file", "source_line"]).to_dict()
        == theirs.remove_columns(["source_file", "source_line"]).to_dict()
    )
    assert manifest(tmp_path / "local")["counts"] == m["counts"]


def test_gzip_and_parquet_inputs_on_s3(tmp_path, s3):
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    gz = s3.put("in/qa.jsonl.gz", gzip.compress(SAMPLE.read_bytes()))
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    parquet = s3.put("in/qa.parquet", sink.getvalue().to_pybytes())
    for url, name in ((gz, "gz"), (parquet, "pq")):
        result = run_build(BuildConfig(inputs=(url,), output=str(tmp_path / name), template="qa"))
        assert result.manifest["counts"]["records_read"] == len(rows)
        assert result.manifest["inputs"][0]["bytes"] == s3.fs.size(url)
    a, b = load_from_disk(str(tmp_path / "gz")), load_from_disk(str(tmp_path / "pq"))
    assert a["input_ids"] == b["input_ids"]


def test_missing_inputs_on_s3(tmp_path, s3):
    result = _run("build", s3.url("nothing.jsonl"), "-o", str(tmp_path / "o"))
    assert result.exit_code == EXIT_IO
    assert f"no such file: {s3.url('nothing.jsonl')}" in result.output
    result = _run("build", s3.url("in/*.jsonl"), "-o", str(tmp_path / "o"))
    assert result.exit_code == EXIT_IO
    assert f"no file matches '{s3.url('in/*.jsonl')}'" in result.output


def test_existing_output_needs_overwrite_and_says_if_it_is_complete(s3):
    out = s3.url("out")
    assert _run("build", str(SAMPLE), "-t", "qa", "-o", out, "-q").exit_code == 0
    result = _run("build", str(SAMPLE), "-t", "qa", "-o", out, "-q")
    assert result.exit_code == EXIT_USAGE
    assert f"output {out} exists (a complete build); pass --overwrite to replace it" in result.output
    s3.fs.rm_file(f"{s3.name}/out/manifest.json")
    result = _run("build", str(SAMPLE), "-t", "qa", "-o", out, "-q")
    assert "exists (an incomplete build (no manifest.json))" in result.output
    s3.put("out/shard-00007.arrow", b"junk")  # what an interrupted build leaves
    result = _run("build", str(SAMPLE), "-t", "qa", "-o", out, "-q", "--labels", "hf", "--overwrite")
    assert result.exit_code == 0, result.output
    assert s3.keys("out") == ["out/data-00000-of-00001.arrow", "out/dataset_info.json", "out/manifest.json",
                              "out/state.json"]  # fmt: skip
    assert "labels" in load_from_disk(out).column_names


def test_overwrite_refuses_a_prefix_that_is_not_a_build(s3):
    out = s3.url("project")
    s3.put("project/notes.txt", b"notes")
    s3.put("project/sub/qa.jsonl", SAMPLE.read_bytes())
    result = _run("build", str(SAMPLE), "-t", "qa", "-o", out, "-q", "--overwrite")
    assert result.exit_code == EXIT_USAGE
    assert result.output.strip() == (
        f"sftprep: error: output {out} is not an sftprep build (2 entries: notes.txt, sub/qa.jsonl); "
        "--overwrite replaces only an earlier build or an empty prefix: choose another -o"
    )
    result = _run("build", f"{out}/sub/qa.jsonl", "-t", "qa", "-o", out, "-q", "--overwrite")
    assert result.exit_code == EXIT_USAGE
    assert f"input {out}/sub/qa.jsonl is inside the output {out}" in result.output
    assert s3.keys("project") == ["project/notes.txt", "project/sub/qa.jsonl"]


def _big_input(path: Path) -> Path:
    with open(path, "w") as f:
        for i in range(30_000):
            f.write(
                json.dumps({"question": f"Question {i}: " + "why " * 40, "answer": "because " * 30}) + "\n"
            )
    return path


def test_interrupted_upload_does_not_look_complete(tmp_path, s3):
    out = s3.url("out")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sftprep", "build", str(_big_input(tmp_path / "big.jsonl")), "-o", out, "-q",
         "--shard-size", "200KB", "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not s3.keys("out") and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # mid-upload: no cleanup runs
    proc.communicate(timeout=30)
    left = s3.keys("out")
    assert left, "the build was killed before it uploaded anything"
    assert "out/manifest.json" not in left
    assert not storage.is_complete(out)
    # every reader of sftprep's treats it as incomplete
    result = _run("inspect", out)
    assert result.exit_code == EXIT_IO
    assert f"{out}: no manifest.json: an incomplete build" in result.output
    with pytest.raises(Exception, match=r"no manifest\.json: an incomplete build"):
        merge_builds([out], str(tmp_path / "m"))
    result = _run("build", str(SAMPLE), "-t", "qa", "-o", out)
    assert "exists (an incomplete build (no manifest.json)); pass --overwrite" in result.output
    # --overwrite replaces it with a complete build, leaving none of the old objects
    assert _run("build", str(SAMPLE), "-t", "qa", "-o", out, "-q", "--overwrite").exit_code == 0
    assert storage.is_complete(out)
    assert not [k for k in s3.keys("out") if "shard-" in k]


def test_a_failed_build_removes_what_it_uploaded(tmp_path, s3):
    data = tmp_path / "d.jsonl"
    lines = [json.dumps({"question": f"q{i}", "answer": "a " * 50}) for i in range(300)] + ["{broken"]
    data.write_text("\n".join(lines) + "\n")
    result = _run("build", str(data), "-t", "qa", "-o", s3.url("out"), "-q", "--shard-size", "2KB",
                  "--batch-size", "16", "--workers", "1")  # fmt: skip
    assert result.exit_code == EXIT_DATA
    assert f"{data}:301: malformed JSON" in result.output
    assert s3.keys("out") == []


def test_inspect_and_merge_on_s3(tmp_path, s3):
    for i in range(2):
        result = _run("build", str(SAMPLE), "-t", "qa", "-o", s3.url(f"part-{i}"), "-q", "--batch-size", "3",
                      "--num-shards", "2", "--shard-index", str(i))  # fmt: skip
        assert result.exit_code == 0, result.output
    result = _run("merge", s3.url("part-0"), s3.url("part-1"), "-o", s3.url("merged"), "-q")
    assert result.exit_code == 0, result.output
    run_build(
        BuildConfig(inputs=(str(SAMPLE),), output=str(tmp_path / "single"), template="qa", batch_size=3)
    )
    assert_same_build(tmp_path / "single", _fetch(s3.url("merged"), tmp_path, "merged"))
    result = _run("inspect", s3.url("merged"), "--limit", "1", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[0])["source_line"] == 1


def test_file_urls_are_local_paths(tmp_path):
    url = f"file://{SAMPLE.resolve()}"
    result = run_build(BuildConfig(inputs=(url,), output=f"file://{tmp_path / 'out'}", template="qa"))
    assert result.output == tmp_path / "out"  # staged locally and renamed into place, as a path
    assert manifest(tmp_path / "out")["inputs"][0]["name"] == url
    assert load_from_disk(str(tmp_path / "out"))["source_file"][0] == url
    assert storage.is_complete(f"file://{tmp_path / 'out'}")
