"""--engine ray: a local Ray with 2 CPUs gives exactly the local engine's build."""

# ruff: noqa: F811 - the s3 fixtures are imported, and tests take them as arguments
from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from compare import NQ_CONFIG, NQ_OPTIONS, assert_same_build, manifest
from s3server import s3, s3_endpoint  # noqa: F401 - fixtures

from sftprep import BuildConfig, run_build, storage
from sftprep.cli import cli
from sftprep.engines.stream import Located, Progress, untransformed
from sftprep.errors import EXIT_DATA, EXIT_IO, EXIT_USAGE, TransformError
from sftprep.merge import merge_builds
from sftprep.readers import settle

pytestmark = pytest.mark.slow  # starting Ray takes seconds
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def ray_local(s3_endpoint):
    """One local Ray for the module (2 CPUs); builds join it instead of starting their own.

    Started after the S3 server, so its workers inherit the AWS environment that
    points at it, and with tests/ on their path, to unpickle test classes.
    """
    ray = pytest.importorskip("ray", reason="Ray is in the test extra")
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})  # fmt: skip
    yield ray
    ray.shutdown()


def _both(tmp_path, config: BuildConfig) -> tuple[Path, Path]:
    local = run_build(replace(config, output=str(tmp_path / "local"), workers=2)).output
    on_ray = run_build(replace(config, output=str(tmp_path / "ray"), engine="ray")).output
    return Path(local), Path(on_ray)


REAL = [
    (("instruction", "alpaca_5000.json"), {"on_error": "skip"}),
    (("qa", "NQ-open.dev.jsonl"), {"template": "qa", "fields": {"answer": "answer.0"}, "labels": "hf"}),
    (
        ("qa", "simple_qa_test_set.csv"),
        {"template": "qa", "fields": {"question": "problem"}, "max_length": 64, "on_error": "skip"},
    ),
    (
        ("qa", "gsm8k_test.jsonl"),
        {"template": "qa", "mode": "exploded", "max_length": 128, "truncation": "target", "on_error": "skip"},
    ),
    (("chat", "dummy_conversation.json"), {"tokenizer": "phi-3-mini"}),  # the tokenizer's own chat template
]


@pytest.mark.parametrize(
    ("parts", "options"), REAL, ids=["alpaca", "nq-open-hf", "simple-qa-csv", "gsm8k-exploded", "chat-phi3"]
)
def test_ray_build_equals_local_build(ray_local, tmp_path, data_path, tokenizer_path, parts, options):
    options = {**options, "tokenizer": tokenizer_path(options.get("tokenizer", "gpt2"))}
    config = BuildConfig(
        inputs=(data_path(*parts),), output="", batch_size=256, shard_size=2_000_000, **options
    )
    local, on_ray = _both(tmp_path, config)
    assert_same_build(local, on_ray)
    assert manifest(local)["engine"] == "local" and manifest(on_ray)["engine"] == "ray"
    # the driver writes the shards as the local engine does: even the files are the same
    assert [s["sha256"] for s in manifest(local)["shards"]] == [
        s["sha256"] for s in manifest(on_ray)["shards"]
    ]


def _cli(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_bad_records_fail_and_skip_as_locally(ray_local, tmp_path, data_path, tokenizer_path):
    data = data_path("instruction", "alpaca_5000.json")
    common = ["--tokenizer", tokenizer_path("gpt2"), "-q"]
    results = [_cli("build", data, "-o", str(tmp_path / e), "--engine", e, *common) for e in ("local", "ray")]
    assert [r.exit_code for r in results] == [EXIT_DATA, EXIT_DATA]
    assert results[0].output == results[1].output
    assert "alpaca_5000.json: record 2336: field 'output': the target is empty" in results[1].output
    assert not (tmp_path / "ray").exists()
    results = [
        _cli(
            "build",
            data,
            "-o",
            str(tmp_path / e),
            "--engine",
            e,
            "--on-error",
            "skip",
            "--max-errors",
            "1",
            *common,
        )
        for e in ("local", "ray")
    ]
    assert [r.exit_code for r in results] == [EXIT_DATA, EXIT_DATA]
    assert results[0].output == results[1].output
    assert "2 records rejected, more than --max-errors 1" in results[1].output


def test_ray_slices_merge_into_the_local_single_build(ray_local, tmp_path, data_path, tokenizer_path):
    config = BuildConfig(inputs=(data_path("qa", "NQ-open.dev.jsonl"),), output=str(tmp_path / "single"),
                         **NQ_CONFIG, tokenizer=tokenizer_path("gpt2"), batch_size=200)  # fmt: skip
    run_build(config)
    parts = []
    for i in range(2):
        parts.append(str(tmp_path / f"part-{i}"))
        run_build(replace(config, output=parts[-1], engine="ray", num_shards=2, shard_index=i))
    assert_same_build(config.output, merge_builds(parts, str(tmp_path / "merged")).output)


def test_an_unreadable_input_fails_as_locally(ray_local, tmp_path):
    data = tmp_path / "cut.jsonl.gz"
    lines = "".join(json.dumps({"question": f"q{i} " * 20, "answer": "a"}) + "\n" for i in range(2000))
    whole = gzip.compress(lines.encode())
    data.write_bytes(whole[: len(whole) * 2 // 3])  # a download cut short
    results = [
        _cli(
            "build", str(data), "-t", "qa", "-o", str(tmp_path / e), "--engine", e, "--batch-size", "10", "-q"
        )
        for e in ("local", "ray")
    ]
    assert [r.exit_code for r in results] == [EXIT_IO, EXIT_IO]
    assert results[0].output == results[1].output
    assert f"{data}: not a valid gzip file" in results[1].output


def test_ray_reads_the_inputs_the_build_expanded(ray_local, tmp_path):
    """The glob is expanded once, when the build starts: a file that appears later is not read by Ray."""
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text(json.dumps({"question": name, "answer": name}) + "\n")
    late = tmp_path / "c.jsonl"

    def advance(n: int) -> None:  # the build has read a.jsonl: Ray has not started yet
        late.write_text(json.dumps({"question": "c", "answer": "c"}) + "\n")

    config = BuildConfig(inputs=(str(tmp_path / "*.jsonl"),), output=str(tmp_path / "out"), template="qa",
                         engine="ray")  # fmt: skip
    result = run_build(config, advance=advance)
    assert [entry["name"] for entry in result.manifest["inputs"]] == [
        str(tmp_path / n) for n in ("a.jsonl", "b.jsonl")
    ]
    assert result.manifest["counts"]["records_read"] == 2


class _Crashing:
    """A transform that crashes (not a bad record: a bug) on answers that say "boom".

    Like every transform, it settles the records it gets (JSON Lines arrive unparsed)."""

    def __call__(self, records):
        records = settle(records)
        if any(r.data and r.data.get("answer") == "boom" for r in records):
            raise ZeroDivisionError("division by zero")
        return untransformed(records)


def test_a_failed_task_names_the_record_not_ray(ray_local, tmp_path):
    from sftprep.engines.ray import RayEngine

    data = tmp_path / "d.jsonl"
    answers = ["a", "b", "boom", "c", "d"]
    data.write_text("".join(json.dumps({"question": "q", "answer": a}) + "\n" for a in answers))
    config = BuildConfig(inputs=(str(data),), output="", batch_size=4, engine="ray")
    engine = RayEngine(config, Progress())
    with pytest.raises(TransformError) as caught:
        list(engine.run([str(data)], Located(_Crashing()), 0))
    message = str(caught.value)
    assert message == f"{data}:3: the transform failed on this record: ZeroDivisionError: division by zero"
    assert type(caught.value) is TransformError  # not Ray's wrapper, whose str() is a traceback


def test_ray_reads_and_writes_s3(ray_local, tmp_path, s3, data_path, tokenizer_path):
    url = s3.put("in/nq.jsonl", Path(data_path("qa", "NQ-open.dev.jsonl")).read_bytes())
    config = BuildConfig(inputs=(url,), output="", **NQ_CONFIG, tokenizer=tokenizer_path("gpt2"), batch_size=500,
                         shard_size=300_000)  # fmt: skip
    run_build(replace(config, output=str(tmp_path / "local")))
    run_build(replace(config, output=s3.url("out"), engine="ray"))
    assert storage.is_complete(s3.url("out"))
    assert_same_build(tmp_path / "local", storage.fetch_build(s3.url("out"), tmp_path / "fetched"))


def test_without_ray_the_message_says_how_to_install(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray gives
    result = _cli("build", "sample_data/qa.jsonl", "-t", "qa", "-o", str(tmp_path / "o"), "--engine", "ray")
    assert result.exit_code == EXIT_USAGE
    assert "--engine ray needs Ray, which is not installed: pip install 'sftprep[ray]'" in result.output
    assert not (tmp_path / "o").exists()


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture
def ray_head():
    """A separate Ray 'cluster' (a head node on 127.0.0.1) that a build joins with --ray-address.

    Started with `ray start --head --block` in its own session and stopped by its
    process group, so that no other Ray on the machine is touched. Ray's token
    authentication is off for it (RAY_AUTH_MODE, Ray's own setting): it listens
    on loopback only, for this test.
    """
    ray_cli = Path(sys.executable).parent / "ray"
    if not ray_cli.exists():
        pytest.skip("the ray command is not installed")
    gcs, agent, grpc, metrics, runtime = _free_ports(5)
    temp = tempfile.mkdtemp(prefix="sftprep-ray-", dir="/tmp")  # Ray's socket paths must stay short
    proc = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
         "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
         f"--dashboard-agent-listen-port={agent}",
         f"--dashboard-agent-grpc-port={grpc}", f"--metrics-export-port={metrics}",
         f"--runtime-env-agent-port={runtime}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )  # fmt: skip
    address = f"127.0.0.1:{gcs}"
    try:
        _wait_for_head(ray_cli, address)
        yield address
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        time.sleep(3)  # some of Ray's processes linger after SIGTERM: end the whole group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_head(ray_cli: Path, address: str) -> None:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status = subprocess.run(
            [str(ray_cli), "status", f"--address={address}"], capture_output=True, env=env
        )
        if status.returncode == 0:
            return
        time.sleep(1)
    pytest.fail(f"the Ray head at {address} did not come up")


def test_a_build_joins_an_existing_cluster(ray_head, tmp_path, data_path, tokenizer_path):
    data = data_path("qa", "NQ-open.dev.jsonl")
    options = [*NQ_OPTIONS, "--tokenizer", tokenizer_path("gpt2"), "--batch-size", "500"]
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_AUTH_MODE": "disabled"}
    command = [sys.executable, "-m", "sftprep", "build", data, "-o", str(tmp_path / "cluster"), *options,
               "--engine", "ray", "--ray-address", ray_head]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    assert f"connecting to the Ray cluster at {ray_head}" in done.stderr
    assert "is a local path: the Ray node that reads the inputs must see it" in done.stderr
    run_build(BuildConfig(inputs=(data,), output=str(tmp_path / "local"), **NQ_CONFIG,
                          tokenizer=tokenizer_path("gpt2"), batch_size=500))  # fmt: skip
    assert_same_build(tmp_path / "local", tmp_path / "cluster")
