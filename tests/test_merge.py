"""--num-shards/--shard-index slices, and `sftprep merge` putting them back together."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from compare import assert_same_build, manifest
from datasets import load_from_disk

from sftprep import BuildConfig, run_build
from sftprep.cli import cli
from sftprep.errors import EXIT_IO, EXIT_USAGE, DataError
from sftprep.merge import merge_builds

SAMPLE = "sample_data/qa.jsonl"


def _slices(tmp_path, config: BuildConfig, n: int) -> list[str]:
    outs = []
    for i in range(n):
        out = str(tmp_path / f"part-{i}")
        run_build(replace(config, output=out, num_shards=n, shard_index=i))
        outs.append(out)
    return outs


REAL = [
    # (data, options): a JSON array with two rejected records, JSONL with a list field, CSV
    (("instruction", "alpaca_5000.json"), {"on_error": "skip"}),
    (("qa", "NQ-open.dev.jsonl"), {"template": "qa", "fields": {"answer": "answer.0"}}),
    (("qa", "simple_qa_test_set.csv"), {"template": "qa", "fields": {"question": "problem"}, "labels": "hf"}),
    (("chat", "dummy_conversation.json"), {"tokenizer": "phi-3-mini"}),  # the tokenizer's own chat template
]


@pytest.mark.slow
@pytest.mark.parametrize(("parts", "options"), REAL, ids=["alpaca", "nq-open", "simple-qa-csv", "chat-phi3"])
def test_slices_merge_into_the_single_build(tmp_path, data_path, tokenizer_path, parts, options):
    options = {**options, "tokenizer": tokenizer_path(options.get("tokenizer", "gpt2"))}
    config = BuildConfig(inputs=(data_path(*parts),), output=str(tmp_path / "single"), batch_size=256,
                         shard_size=400_000, workers=1, **options)  # fmt: skip
    run_build(config)
    parts_out = _slices(tmp_path, config, 3)
    # the slices are disjoint and cover every record
    lines = [set(load_from_disk(p)["source_line"]) for p in parts_out]
    assert not (lines[0] & lines[1] or lines[0] & lines[2] or lines[1] & lines[2])
    assert (
        sum(manifest(p)["counts"]["records_read"] for p in parts_out)
        == manifest(config.output)["counts"]["records_read"]
    )
    result = merge_builds(list(reversed(parts_out)), str(tmp_path / "merged"))  # any order
    assert_same_build(config.output, result.output)
    merged = manifest(result.output)
    assert [m["shard_index"] for m in merged["merged_from"]] == [0, 1, 2]
    assert merged["slice"] is None and merged["config"]["num_shards"] == 1


def test_slice_rule_deals_batches_round_robin(tmp_path):
    config = BuildConfig(inputs=(SAMPLE,), output="", template="qa", batch_size=2, workers=1)
    outs = _slices(tmp_path, config, 3)
    lines = [load_from_disk(p)["source_line"] for p in outs]
    # qa.jsonl: one record per line; batches of 2 records dealt to slices 0, 1, 2, 0, ...
    assert lines[0][:4] == [1, 2, 7, 8]
    assert lines[1][:4] == [3, 4, 9, 10]
    assert lines[2][:4] == [5, 6, 11, 12]
    assert manifest(outs[1])["slice"]["num_shards"] == 3


def test_exploded_and_rejects_merge_in_order(tmp_path):
    data = tmp_path / "d.jsonl"
    good = [json.dumps({"question": f"q{i}?", "answer": f"answer number {i}"}) for i in range(40)]
    good[5], good[22] = "{not json", json.dumps({"question": "no answer"})
    data.write_text("\n".join(good) + "\n")
    config = BuildConfig(
        inputs=(str(data),), output=str(tmp_path / "single"), template="qa", mode="exploded",
        on_error="skip", batch_size=3, workers=1,
    )  # fmt: skip
    run_build(config)
    merged = merge_builds(_slices(tmp_path, config, 4), str(tmp_path / "merged"))
    assert_same_build(config.output, merged.output)
    assert manifest(merged.output)["counts"]["skipped"] == {"malformed_json": 1, "missing_field": 1}


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_merge_command(tmp_path):
    for i in range(2):
        result = _run("build", SAMPLE, "-t", "qa", "-o", str(tmp_path / f"p{i}"), "-q",
                      "--batch-size", "4", "--num-shards", "2", "--shard-index", str(i))  # fmt: skip
        assert result.exit_code == 0, result.output
    result = _run("merge", str(tmp_path / "p0"), str(tmp_path / "p1"), "-o", str(tmp_path / "m"), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["records_read"] == sum(
        1 for line in Path(SAMPLE).read_text().splitlines() if line.strip()
    )
    assert "merging 2 slices" in result.stderr


@pytest.fixture
def two_slices(tmp_path):
    config = BuildConfig(inputs=(SAMPLE,), output="", template="qa", batch_size=4, workers=1)
    return _slices(tmp_path, config, 2)


def test_merge_refuses_a_missing_or_repeated_slice(tmp_path, two_slices):
    result = _run("merge", two_slices[0], two_slices[0], "-o", str(tmp_path / "m"))
    assert result.exit_code == EXIT_USAGE
    assert (
        "need each of the 2 slices once: missing --shard-index 1, --shard-index 0 given twice"
        in result.output
    )
    assert not (tmp_path / "m").exists()


def test_merge_refuses_slices_of_different_builds(tmp_path, two_slices):
    other = str(tmp_path / "other")
    run_build(BuildConfig(inputs=(SAMPLE,), output=other, template="qa", batch_size=4, workers=1,
                          labels="hf", num_shards=2, shard_index=1))  # fmt: skip
    result = _run("merge", two_slices[0], other, "-o", str(tmp_path / "m"))
    assert result.exit_code == EXIT_USAGE
    assert (
        f'{other} and {two_slices[0]} differ in their options (--labels "hf" vs "shifted")' in result.output
    )


def test_merge_refuses_an_incomplete_slice(tmp_path, two_slices):
    (tmp_path / "part-1" / "manifest.json").unlink()  # what an interrupted upload leaves
    result = _run("merge", *two_slices, "-o", str(tmp_path / "m"))
    assert result.exit_code == EXIT_IO
    assert f"{two_slices[1]}: no manifest.json: an incomplete build" in result.output


def test_merge_names_a_path_that_does_not_exist(tmp_path, two_slices):
    missing = str(tmp_path / "part-9")
    result = _run("merge", two_slices[0], missing, "-o", str(tmp_path / "m"))
    assert result.exit_code == EXIT_IO
    assert result.output.strip() == f"sftprep: error: no such build: {missing}"


def test_merge_output_never_holds_a_slice(tmp_path, two_slices):
    result = _run("merge", *two_slices, "-o", two_slices[0], "--overwrite")
    assert result.exit_code == EXIT_USAGE
    assert f"input {two_slices[0]} is inside the output {two_slices[0]}" in result.output
    assert (Path(two_slices[0]) / "manifest.json").exists()


def test_merge_refuses_a_whole_build(tmp_path, two_slices):
    whole = str(tmp_path / "whole")
    run_build(BuildConfig(inputs=(SAMPLE,), output=whole, template="qa", workers=1))
    shutil.rmtree(two_slices[1])
    result = _run("merge", two_slices[0], whole, "-o", str(tmp_path / "m"))
    assert result.exit_code == EXIT_USAGE
    assert f"{whole} is not a slice (it was not built with --num-shards)" in result.output


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--num-shards", "2", "--shard-index", "2"],
            "--shard-index must be from 0 to --num-shards - 1 (got 2 of 2)",
        ),
        (["--num-shards", "2", "--pack", "--max-length", "64"], "--pack cannot be used with --num-shards"),
        (["--ray-address", "ray://h:10001"], "--ray-address needs --engine ray"),
    ],
)
def test_bad_slice_and_engine_options(tmp_path, flags, message):
    result = _run("build", SAMPLE, "-t", "qa", "-o", str(tmp_path / "o"), *flags)
    assert result.exit_code == EXIT_USAGE
    assert message in result.output


def _data_with_bad_first_batch(tmp_path) -> Path:
    """Batch 0 (of 2 records) all bad, the rest good: slice 0 of 2 rejects all it reads but batch 2's."""
    data = tmp_path / "d.jsonl"
    lines = ["{not json", json.dumps({"question": "no answer"})]
    lines += [json.dumps({"question": f"q{i}?", "answer": f"a{i}"}) for i in range(2)]  # batch 1: slice 1
    lines += [json.dumps({"question": "again no answer"})] * 2  # batch 2: slice 0, bad again
    lines += [json.dumps({"question": f"q{i}?", "answer": f"a{i}"}) for i in range(2, 4)]  # batch 3: slice 1
    data.write_text("\n".join(lines) + "\n")
    return data


def test_a_slice_whose_records_are_all_rejected_merges(tmp_path):
    """Every record rejected is a property of the whole build, not of one slice of it."""
    data = _data_with_bad_first_batch(tmp_path)
    config = BuildConfig(inputs=(str(data),), output=str(tmp_path / "single"), template="qa",
                         on_error="skip", batch_size=2, workers=1)  # fmt: skip
    run_build(config)
    parts = _slices(tmp_path, config, 2)
    assert manifest(parts[0])["counts"]["rows_written"] == 0
    merged = merge_builds(parts, str(tmp_path / "merged"))
    assert_same_build(config.output, merged.output)
    assert manifest(merged.output)["counts"]["skipped"] == {"malformed_json": 1, "missing_field": 3}


def test_a_merge_of_slices_that_rejected_everything_fails(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"question": f"q{i}"}) + "\n" for i in range(4)))
    config = BuildConfig(
        inputs=(str(data),), output="", template="qa", on_error="skip", batch_size=2, workers=1
    )
    with pytest.raises(DataError, match="all 4 records rejected"):
        run_build(replace(config, output=str(tmp_path / "single")))
    parts = _slices(tmp_path, config, 2)  # each slice alone is only part of the build
    with pytest.raises(DataError, match=r"all 4 records rejected \(missing_field 4\); nothing written"):
        merge_builds(parts, str(tmp_path / "merged"))
    assert not (tmp_path / "merged").exists()


def test_max_errors_holds_for_the_whole_build_not_each_slice(tmp_path):
    data = _data_with_bad_first_batch(tmp_path)  # 4 of 8 records rejected, all 4 of slice 0's
    config = BuildConfig(inputs=(str(data),), output="", template="qa", on_error="skip", batch_size=2,
                         workers=1, max_errors="50%")  # fmt: skip
    merge_builds(_slices(tmp_path / "a", config, 2), str(tmp_path / "merged"))  # slice 0 alone: 100%
    assert manifest(tmp_path / "merged")["counts"]["skipped_total"] == 4
    # 40%, or more than 3 records (batches of 1: each slice rejects 2): the merge fails, as the build does
    for options in ({"max_errors": "40%"}, {"max_errors": "3", "batch_size": 1}):
        strict = replace(config, **options)
        with pytest.raises(DataError) as single:
            run_build(replace(strict, output=str(tmp_path / "single")))
        parts = _slices(tmp_path / options["max_errors"].strip("%"), strict, 2)
        with pytest.raises(DataError) as merged:
            merge_builds(parts, str(tmp_path / "merged-strict"))
        assert str(merged.value).startswith(str(single.value).split(";")[0])
