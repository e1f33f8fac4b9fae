"""An interrupted build leaves nothing that looks complete; same inputs, same bytes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datasets import load_from_disk

from sftprep import BuildConfig, run_build
from sftprep.errors import EXIT_INTERRUPTED, EXIT_TERMINATED

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def big_input(tmp_path_factory) -> Path:
    """An input that takes a few seconds to build, so it can be interrupted mid-way."""
    path = tmp_path_factory.mktemp("data") / "big.jsonl"
    with open(path, "w") as f:
        for i in range(60_000):
            f.write(
                json.dumps({"question": f"Question {i}: " + "why " * 40, "answer": "because " * 30}) + "\n"
            )
    return path


def _default_sigint() -> None:
    # A test run started in the background (`make test &`, some CI runners) inherits SIGINT
    # ignored, and so would the build; Python then never raises KeyboardInterrupt. Give the
    # build the disposition of a command typed at a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(data: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sftprep", "build", str(data), "-o", str(out), "-q", "--shard-size", "1MB", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint,
    )  # fmt: skip


def _looks_complete(out: Path) -> bool:
    try:
        load_from_disk(str(out))
    except Exception:
        return False
    return True


def _wait_until_mid_build(proc: subprocess.Popen, parent: Path, shards: int) -> None:
    """Return once the build has its staging directory and has opened ``shards + 1`` shard files
    (0: staging exists, no shard yet): certainly under way and far from done, however fast the
    machine. The input makes dozens of 1 MB shards."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        staging = list(parent.glob(".sftprep-tmp-*"))
        opened = [p for d in staging for p in d.glob("shard-*.arrow")]
        if staging and len(opened) >= shards + (shards > 0):
            return
        if proc.poll() is not None:
            pytest.fail(f"the build ended (exit {proc.returncode}) before it wrote {shards} shards")
        time.sleep(0.01)
    pytest.fail(f"the build did not reach {shards} shards in 60 s")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("shards", [0, 1, 5])
def test_interrupted_build_leaves_nothing_complete(tmp_path, big_input, sig, shards):
    out = tmp_path / "out"
    proc = _start(big_input, out, "--workers", "2")
    _wait_until_mid_build(proc, tmp_path, shards)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert not out.exists() or not _looks_complete(out)
    assert "Traceback" not in stderr
    if sig == signal.SIGINT:
        assert proc.returncode == EXIT_INTERRUPTED
        assert stderr.strip().endswith("interrupted; nothing was written")
    if sig == signal.SIGTERM:
        assert proc.returncode == EXIT_TERMINATED
    if sig != signal.SIGKILL:  # cleaned up on the way out
        assert not list(tmp_path.glob(".sftprep-tmp-*"))
    # A killed build's staging directory is removed by the next build of the same output.
    done = _start(ROOT / "sample_data" / "qa.jsonl", out)
    assert done.wait(timeout=60) == 0
    assert not list(tmp_path.glob(".sftprep-tmp-*"))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_overwrite_keeps_old_output_until_new_one_is_done(tmp_path, big_input, sig):
    out = tmp_path / "out"
    run_build(BuildConfig(inputs=(str(ROOT / "sample_data" / "qa.jsonl"),), output=str(out)))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = _start(big_input, out, "--overwrite")
    _wait_until_mid_build(proc, tmp_path, 2)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert len(load_from_disk(str(out))) == 42


def test_exception_mid_build_removes_staging(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "a", "answer": "b"}\n' * 3000 + '{"question": "a"}\n')
    out = tmp_path / "out"
    with pytest.raises(Exception, match="missing 'answer'"):
        run_build(BuildConfig(inputs=(str(data),), output=str(out), batch_size=100, shard_size=1000))
    assert not out.exists()
    assert not list(tmp_path.glob(".sftprep-tmp-*"))


@pytest.mark.parametrize("mode", ["sequence", "exploded"])
def test_same_bytes_for_any_worker_count(tmp_path, mode, tokenizer_path, data_path):
    inputs = (data_path("instruction", "alpaca_5000.json"),)
    outputs = []
    for workers in (1, 2, 3):
        config = BuildConfig(
            inputs=inputs, output=str(tmp_path / f"w{workers}"), tokenizer=tokenizer_path("gpt2"),
            workers=workers, batch_size=256, shard_size=4 * 2**20, mode=mode, on_error="skip",
        )  # fmt: skip
        if mode == "exploded":
            config = BuildConfig(**{**config.__dict__, "inputs": (str(ROOT / "sample_data" / "qa.jsonl"),)})
        outputs.append(run_build(config).output)
    names = sorted(p.name for p in outputs[0].iterdir())
    assert any(n.startswith("data-") for n in names)
    for other in outputs[1:]:
        assert sorted(p.name for p in other.iterdir()) == names
        for name in names:
            assert (other / name).read_bytes() == (outputs[0] / name).read_bytes(), name


@pytest.mark.parametrize("setting", ["true", "1"])
def test_workers_finish_when_the_user_asks_for_tokenizer_threads(tmp_path, setting):
    """TOKENIZERS_PARALLELISM=true in the user's environment once hung every --workers build:
    the tokenizer's thread pool, started before the fork, is gone in the workers."""
    out = tmp_path / "out"
    env = {**os.environ, "TOKENIZERS_PARALLELISM": setting}
    done = subprocess.run(
        [sys.executable, "-m", "sftprep", "build", "sample_data/qa.jsonl", "-o", str(out), "-q",
         "--workers", "2", "--batch-size", "8"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "manifest.json").read_text())["counts"]["rows_written"] > 0
