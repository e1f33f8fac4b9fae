"""engines/__init__.py: the build runs any engine named in ENGINES without knowing which."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from sftprep import BuildConfig, engines, run_build
from sftprep.engines import engine_for
from sftprep.engines.local import LocalEngine
from sftprep.engines.ray import RayEngine
from sftprep.engines.stream import Inputs, Progress, Transform, in_slice
from sftprep.errors import ConfigError
from sftprep.readers import Record
from sftprep.transform import BatchResult

ROOT = Path(__file__).resolve().parents[2]
QA = str(ROOT / "sample_data" / "qa.jsonl")


class SerialEngine:
    """A third engine, as small as one can be: this process, one batch at a time."""

    calls: ClassVar[list[str]] = []

    def __init__(self, config: BuildConfig, progress: Progress):
        self.config = config

    def check(self, names: Sequence[str]) -> None:
        SerialEngine.calls.append(f"check {len(names)}")

    def results(
        self,
        inputs: Inputs,
        transform: Transform,
        batches: Iterator[tuple[int, list[Record]]],
        sample: BatchResult | None,
    ) -> Iterator[BatchResult]:
        for index, batch in batches:
            if in_slice(index, self.config):
                SerialEngine.calls.append(f"batch {index}")
                yield transform(batch)

    def described(self, inputs: Inputs) -> list[dict[str, Any]]:
        return inputs.describe()


def test_a_third_engine_needs_no_change_to_the_build(tmp_path, monkeypatch):
    config = BuildConfig(inputs=(QA,), output=str(tmp_path / "local"), batch_size=10, workers=1)
    local = run_build(config)
    # BuildConfig knows the names local and ray; the build itself asks engines.ENGINES only.
    monkeypatch.setitem(engines.ENGINES, "local", f"{__name__}:SerialEngine")
    SerialEngine.calls = []
    serial = run_build(BuildConfig(inputs=(QA,), output=str(tmp_path / "serial"), batch_size=10, workers=1))
    assert SerialEngine.calls == ["check 0", "check 1"] + [f"batch {k}" for k in range(5)]
    assert serial.manifest["content_sha256"] == local.manifest["content_sha256"]
    assert serial.manifest["shards"] == local.manifest["shards"]
    assert serial.manifest["inputs"] == local.manifest["inputs"]


def test_engine_for_builds_the_named_engine():
    progress = Progress()
    assert isinstance(engine_for(BuildConfig(inputs=("x",), output=""), progress), LocalEngine)
    assert isinstance(engine_for(BuildConfig(inputs=("x",), output="", engine="ray"), progress), RayEngine)


def test_ray_refuses_inputs_it_cannot_read_again(tmp_path):
    engine = RayEngine(BuildConfig(inputs=("x",), output="", engine="ray"), Progress())
    engine.check([QA, "s3://bucket/data.jsonl"])  # files and URLs: a Ray task reads them again
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        engine.check([QA, str(fifo)])
    with pytest.raises(ConfigError, match="cannot read stdin"):
        engine.check(["-"])
    LocalEngine(BuildConfig(inputs=("-",), output=""), Progress()).check(["-"])  # local reads stdin
