"""engines/stream.py: the batch stream every engine shares (inputs, batches, slices)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sftprep import BuildConfig
from sftprep.engines.stream import Inputs, Located, Progress, batched, in_slice, untransformed
from sftprep.errors import RecordError, TransformError
from sftprep.readers import Record, expand_inputs, settle
from sftprep.transform import BatchResult, Counts

ROOT = Path(__file__).resolve().parents[2]
QA = str(ROOT / "sample_data" / "qa.jsonl")


def _record(number: int, answer: str = "a") -> Record:
    return Record("d.jsonl", number, "line", {"question": "q", "answer": answer})


def test_batched_cuts_records_into_batches_of_size():
    records = [_record(i) for i in range(1, 8)]
    assert [[r.number for r in batch] for batch in batched(records, 3)] == [[1, 2, 3], [4, 5, 6], [7]]
    assert list(batched([], 3)) == []


def test_batches_are_dealt_to_slices_round_robin():
    config = BuildConfig(inputs=("x",), output="", num_shards=3, shard_index=1)
    assert [k for k in range(9) if in_slice(k, config)] == [1, 4, 7]
    assert all(in_slice(k, BuildConfig(inputs=("x",), output="")) for k in range(5))


def test_untransformed_rejects_the_bad_and_counts_all():
    bad = Record("d.jsonl", 2, "line", None, error=RecordError("d.jsonl:2", "malformed_json", "not JSON"))
    result = untransformed([_record(1), bad])
    assert result.batches == [] and [r.number for r, _ in result.rejects] == [2]
    assert result.counts.records_read == 2


def _crashes_on_boom(records: list[Record]) -> BatchResult:
    if any(r.data["answer"] == "boom" for r in records):
        raise KeyError("boom")
    return BatchResult([], [], Counts(records_read=len(records)))


def test_located_names_the_record_a_crash_comes_from():
    transform = Located(_crashes_on_boom)
    assert transform([_record(1)]).counts.records_read == 1
    with pytest.raises(TransformError) as caught:
        transform([_record(1), _record(2, "boom"), _record(3)])
    assert str(caught.value) == "d.jsonl:2: the transform failed on this record: KeyError: 'boom'"


def test_located_lets_sftprep_errors_through():
    def bad(records):
        raise RecordError("d.jsonl:1", "missing_field", "no answer")

    with pytest.raises(RecordError, match="no answer"):
        Located(bad)([_record(1)])


def test_inputs_read_in_order_and_describe_what_was_read(tmp_path):
    second = tmp_path / "b.jsonl"
    second.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    advanced: list[int] = []
    config = BuildConfig(inputs=(QA, str(second)), output="")
    inputs = Inputs(expand_inputs(config.inputs), config, Progress(advance=advanced.append))
    assert inputs.total_bytes() == Path(QA).stat().st_size + second.stat().st_size
    records = settle(list(inputs.records()))
    assert len(records) == 43 and records[-1].source == str(second)
    assert sum(advanced) == inputs.total_bytes()
    described = inputs.describe()
    assert [d["name"] for d in described] == [QA, str(second)]
    assert described[1]["bytes"] == second.stat().st_size and len(described[1]["sha256"]) == 64


def test_stdin_has_no_known_size():
    config = BuildConfig(inputs=("-",), output="")
    assert Inputs(["-"], config, Progress()).total_bytes() is None
