"""What a build may replace at its output, racing builds, and inputs that can be read only once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from sftprep import BuildConfig, run_build
from sftprep.cli import cli
from sftprep.errors import EXIT_USAGE, OutputError
from sftprep.writer import StagedOutput

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "qa.jsonl"


def _run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(cli, list(args), input=stdin)


def _rows(out: Path) -> pa.Table:
    """A build's rows, read from its shards (as the manifest lists them)."""
    manifest = json.loads((out / "manifest.json").read_text())
    tables = [pa.ipc.open_stream(out / s["filename"]).read_all() for s in manifest["shards"]]
    return pa.concat_tables(tables)


def _tree(path: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None) for p in path.rglob("*")}


# Item 1: an input a Ray task would read a second time, elsewhere.


def test_stdin_with_ray_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    result = _run("build", "-", "--engine", "ray", "-o", str(out), "-q", stdin=SAMPLE.read_text())
    assert result.exit_code == EXIT_USAGE
    assert result.output.strip().splitlines() == [
        "sftprep: error: --engine ray cannot read stdin ('-'): its workers read the inputs again; "
        "save it to a file, or use --engine local"
    ]
    assert list(tmp_path.iterdir()) == []


def test_stdin_twice_is_refused(tmp_path):
    result = _run("build", "-", "-", "-o", str(tmp_path / "out"), "-q", stdin=SAMPLE.read_text())
    assert result.exit_code == EXIT_USAGE
    assert "'-' (stdin) is given more than once: stdin can be read only once" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_pipe_with_ray_is_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = _run("build", str(fifo), "--engine", "ray", "-o", str(tmp_path / "out"), "-q")
    assert result.exit_code == EXIT_USAGE
    assert f"--engine ray cannot read {fifo}: not a regular file" in result.output
    assert not (tmp_path / "out").exists()


# Item 2: --overwrite replaces only an earlier build or an empty directory.


@pytest.fixture
def project(tmp_path) -> Path:
    """A user's directory: the input, notes and a subfolder."""
    root = tmp_path / "project"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "keep.txt").write_text("keep me")
    (root / "notes.txt").write_text("notes")
    (root / "qa.jsonl").write_bytes(SAMPLE.read_bytes())
    return root


def test_overwrite_refuses_a_directory_that_is_not_a_build(tmp_path, project):
    (project / "qa.jsonl").unlink()  # the input elsewhere: the directory's content alone is the reason
    before = _tree(project)
    result = _run("build", str(SAMPLE), "-o", str(project), "--overwrite", "-q")
    assert result.exit_code == EXIT_USAGE
    assert result.output.strip() == (
        f"sftprep: error: output {project} is not an sftprep build (2 entries: notes.txt, sub/); "
        "--overwrite replaces only an earlier build or an empty directory: choose another -o"
    )
    assert _tree(project) == before
    assert [p.name for p in tmp_path.iterdir()] == ["project"]  # no staging directory either


def test_an_input_inside_the_output_is_refused_always(tmp_path, project):
    before = _tree(project)
    for extra in ([], ["--overwrite"]):
        result = _run("build", str(project / "qa.jsonl"), "-o", str(project), "-q", *extra)
        assert result.exit_code == EXIT_USAGE
        assert f"input {project / 'qa.jsonl'} is inside the output {project}" in result.output
    # ... even when the output is a build (an input copied into an old build's directory).
    build = tmp_path / "build"
    run_build(BuildConfig(inputs=(str(SAMPLE),), output=str(build)))
    (build / "again.jsonl").write_bytes(SAMPLE.read_bytes())
    result = _run("build", str(build / "again.jsonl"), "-o", str(build), "--overwrite", "-q")
    assert result.exit_code == EXIT_USAGE
    assert (build / "again.jsonl").exists()
    assert _tree(project) == before


def test_output_dot_gets_a_clear_answer(project, monkeypatch):
    monkeypatch.chdir(project)
    before = _tree(project)
    result = _run("build", "qa.jsonl", "-o", ".", "--overwrite", "-q")
    assert result.exit_code == EXIT_USAGE
    assert "input qa.jsonl is inside the output ." in result.output
    result = _run("build", str(SAMPLE), "-o", ".", "--overwrite", "-q")
    assert result.exit_code == EXIT_USAGE
    assert f"output {project} is not an sftprep build (3 entries: notes.txt, qa.jsonl, sub/)" in result.output
    assert "internal error" not in result.output
    assert _tree(project) == before


def test_overwrite_replaces_a_build_or_an_empty_directory(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run("build", str(SAMPLE), "-o", str(empty), "--overwrite", "-q").exit_code == 0
    assert _rows(empty).num_rows == 42
    assert _run("build", str(SAMPLE), "-o", str(empty), "--overwrite", "-q", "--labels", "hf").exit_code == 0
    assert "labels" in _rows(empty).column_names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


# Item 3: two builds racing for one output.


def test_an_output_that_appears_during_the_build_is_never_replaced(tmp_path):
    out = tmp_path / "out"
    for appeared in ("an empty directory", "another build"):
        staged = StagedOutput(out)
        (staged.path / "manifest.json").write_text("{}")
        out.mkdir()
        if appeared == "another build":
            (out / "manifest.json").write_text('{"format": "sftprep-manifest/1"}')
        before = _tree(out)
        with pytest.raises(OutputError, match="appeared while this build ran"), staged:
            staged.commit()
        assert _tree(out) == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # staging removed
        out.rename(tmp_path / "gone")
        (tmp_path / "gone" / "manifest.json").unlink(missing_ok=True)
        (tmp_path / "gone").rmdir()


def test_overwrite_swaps_in_the_new_build_in_one_step(tmp_path):
    out = tmp_path / "out"
    run_build(BuildConfig(inputs=(str(SAMPLE),), output=str(out)))
    staged = StagedOutput(out, overwrite=True)
    (staged.path / "new").write_text("new")
    inode = out.stat().st_ino
    with staged:
        staged.commit()
    assert [p.name for p in out.iterdir()] == ["new"]
    assert out.stat().st_ino != inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old build is gone


def _input(path: Path, records: int, tag: str) -> Path:
    with open(path, "w") as f:
        for i in range(records):
            f.write(json.dumps({"question": f"{tag} {i}: " + "why " * 30, "answer": "because " * 20}) + "\n")
    return path


def _start(data: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "sftprep", "build", str(data), "-o", str(out), "-q", "--workers", "1", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("overwrite", [False, True])
def test_two_builds_racing_for_one_output(tmp_path, overwrite):
    data = tmp_path / "data"
    data.mkdir()
    inputs = [_input(data / "a.jsonl", 8000, "A"), _input(data / "b.jsonl", 6000, "B")]
    out = tmp_path / "out"
    extra = ["--overwrite"] if overwrite else []
    procs = [_start(path, out, *extra) for path in inputs]
    # Both are past their output check once both have a staging directory.
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob(".sftprep-tmp-out-*"))) < 2 and all(p.poll() is None for p in procs):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    both_staged = len(list(tmp_path.glob(".sftprep-tmp-out-*"))) == 2
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    assert both_staged, results
    winners = [i for i, (code, _) in enumerate(results) if code == 0]
    if overwrite:
        assert len(winners) == 2
    else:
        assert len(winners) == 1, results
        code, stderr = results[1 - winners[0]]
        assert code != 0
        assert stderr.strip() == (
            f"sftprep: error: output {out} appeared while this build ran (another build?); "
            "it was not replaced and this build was discarded"
        )
    # One complete build, of one input, and no staging directory left.
    manifest = json.loads((out / "manifest.json").read_text())
    name = manifest["inputs"][0]["name"]
    assert name in {str(p) for p in inputs}
    assert _rows(out).num_rows == (8000 if name.endswith("a.jsonl") else 6000)
    if not overwrite:
        assert name == str(inputs[winners[0]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out"]
