"""Issue 19: builds in Parquet (+ card), MosaicML MDS and Megatron, read back by each format's own reader.

Every test compares against the Arrow build of the same data: the real reader
library (datasets, streaming.StreamingDataset, megatron-core's IndexedDataset)
must return the Arrow build's rows, row for row.
"""

from __future__ import annotations

# ruff: noqa: F811 - the s3 fixtures are imported, and tests take them as arguments
import importlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import ROOT, shared_path
from s3server import s3, s3_endpoint  # noqa: F401 - fixtures

from sftprep.build import BuildConfig, run_build
from sftprep.cli import cli
from sftprep.errors import ConfigError
from sftprep.exports import EXPORT_FORMATS, export_build, open_batches, write_splits
from sftprep.exports.base import EXTRAS, read_manifest, read_schema, split_batches
from sftprep.labels import NULLABLE

# Two builds of real data: plain rows with shifted labels, and packed rows with HF labels.
KINDS = {
    "sequence": {"inputs": ("qa/NQ-open.dev.jsonl",), "template": "qa", "fields": {"answer": "answer.0"},
                 "tokenizer": "gpt2"},
    "packed": {"inputs": ("qa/gsm8k_test.jsonl",), "template": "qa", "tokenizer": "smollm-135m",
               "labels": "hf", "pack": True, "max_length": 1024},
}  # fmt: skip


def _needs(fmt: str) -> None:
    """Skip when the format's extra is not installed; under CI=true it must be (``make test`` installs all)."""
    for module in EXTRAS[fmt][1]:
        if os.environ.get("CI") == "true":
            importlib.import_module(module)
        else:
            pytest.importorskip(module, reason=f"the {fmt} format needs sftprep[{EXTRAS[fmt][0]}]")


def _config(kind: str, output: Path, **extra) -> BuildConfig:
    spec = dict(KINDS[kind])
    inputs = tuple(str(shared_path("data", *name.split("/"))) for name in spec.pop("inputs"))
    tokenizer = str(shared_path("tokenizers", spec.pop("tokenizer")))
    return BuildConfig(inputs=inputs, output=str(output), tokenizer=tokenizer, workers=1, **spec, **extra)


@pytest.fixture(scope="module")
def arrow_build(tmp_path_factory):
    """kind -> the Arrow build of that kind (built once per module)."""
    built: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in built:
            out = tmp_path_factory.mktemp("arrow") / kind
            run_build(_config(kind, out))
            built[kind] = out
        return built[kind]

    return get


def _arrow_table(directory: Path) -> pa.Table:
    manifest = read_manifest(directory)
    return pa.Table.from_batches(
        list(split_batches(directory, manifest, "train")), read_schema(directory, manifest)
    )


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_build_in_a_format_is_byte_identical_to_export(arrow_build, tmp_path, fmt, kind):
    _needs(fmt)
    direct = tmp_path / "direct"
    result = run_build(_config(kind, direct, output_format=fmt))
    exported = tmp_path / "exported"
    export_build(arrow_build(kind), exported, fmt)
    assert _files(direct) == _files(exported)
    manifest = json.loads((direct / "manifest.json").read_text())
    arrow_manifest = read_manifest(arrow_build(kind))
    assert manifest["output_format"] == fmt and arrow_manifest["output_format"] == "arrow"
    assert result.manifest == manifest
    # The manifest keeps every key of the Arrow build's; only the format and its files differ.
    assert {k: v for k, v in manifest.items() if k not in ("output_format", "shards")} == {
        k: v for k, v in arrow_manifest.items() if k not in ("output_format", "shards")
    }
    for entry in manifest["shards"]:
        assert (direct / entry["filename"]).stat().st_size == entry["num_bytes"]
    assert not list(direct.glob("*.arrow")) and not (direct / "state.json").exists()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_open_batches_gives_the_arrow_rows_in_every_format(arrow_build, tmp_path, fmt, kind):
    _needs(fmt)
    out = tmp_path / fmt
    export_build(arrow_build(kind), out, fmt)
    schema, batches = open_batches(out)
    expected = _arrow_table(arrow_build(kind))
    table = pa.Table.from_batches(list(batches), schema)
    assert table.num_rows == expected.num_rows > 0
    assert table.equals(expected, check_metadata=True)


@pytest.mark.parametrize("kind", KINDS)
def test_parquet_is_read_by_datasets(arrow_build, tmp_path, kind, monkeypatch):
    _needs("parquet")
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "parquet"
    export_build(arrow_build(kind), out, "parquet")
    expected = datasets.load_from_disk(str(arrow_build(kind)))
    files = sorted(str(p) for p in (out / "train").glob("*.parquet"))
    loaded = datasets.load_dataset("parquet", data_files={"train": files}, cache_dir=str(tmp_path / "cache"))
    assert loaded["train"].features == expected.features
    assert loaded["train"].data.table.equals(expected.data.table)
    # The card's YAML header is enough to load the folder by name, splits included.
    by_card = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert list(by_card) == ["train"]
    assert by_card["train"].data.table.equals(expected.data.table)
    # The files keep sftprep's label convention and datasets' features in the schema metadata.
    metadata = pq.read_schema(files[0]).metadata
    arrow_metadata = read_schema(arrow_build(kind), read_manifest(arrow_build(kind))).metadata
    assert metadata[b"sftprep"] == arrow_metadata[b"sftprep"]
    assert metadata[b"huggingface"] == arrow_metadata[b"huggingface"]


def _assert_sample_is_row(sample: dict, row: dict) -> None:
    for name, value in row.items():
        if name in NULLABLE or (isinstance(value, list) and value and isinstance(value[0], str)):
            assert sample[name] == value, name  # json-encoded
        elif isinstance(value, list):
            assert np.array_equal(
                np.asarray(sample[name]), np.asarray(value, dtype=np.asarray(sample[name]).dtype)
            )
            assert sample[name].tolist() == [int(v) for v in value], name
        else:
            got = sample[name]
            assert (got.item() if isinstance(got, np.generic) else got) == (
                int(value) if isinstance(value, bool) else value
            ), name


@pytest.mark.parametrize("kind", KINDS)
def test_mds_is_read_by_streaming_dataset(arrow_build, tmp_path, kind):
    _needs("mds")
    streaming = pytest.importorskip("streaming")
    out = tmp_path / "mds"
    export_build(arrow_build(kind), out, "mds")
    rows = _arrow_table(arrow_build(kind)).to_pylist()
    dataset = streaming.StreamingDataset(local=str(out / "train"), shuffle=False, batch_size=1)
    assert len(dataset) == len(rows)
    samples = list(dataset)
    assert len(samples) == len(rows)
    for sample, row in zip(samples, rows, strict=True):
        _assert_sample_is_row(sample, row)
    assert sample["input_ids"].dtype == np.int32
    card = json.loads((out / "card.json").read_text())
    assert card["splits"]["train"]["rows"] == len(rows)


def test_mds_is_read_by_streaming_dataset_from_object_storage(
    arrow_build, tmp_path, s3, s3_endpoint, monkeypatch
):
    _needs("mds")
    streaming = pytest.importorskip("streaming")
    monkeypatch.setenv(
        "S3_ENDPOINT_URL",
        s3.fs.client_kwargs.get("endpoint_url") or __import__("os").environ["AWS_ENDPOINT_URL"],
    )
    out = tmp_path / "mds"
    export_build(arrow_build("sequence"), out, "mds")
    s3.fs.put(str(out) + "/", s3.url("mds").removeprefix("s3://"), recursive=True)
    rows = _arrow_table(arrow_build("sequence")).to_pylist()
    dataset = streaming.StreamingDataset(
        remote=s3.url("mds/train"), local=str(tmp_path / "cache"), shuffle=False, batch_size=1
    )
    samples = list(dataset)
    assert len(samples) == len(rows)
    for sample, row in zip(samples, rows, strict=True):
        _assert_sample_is_row(sample, row)


@pytest.mark.parametrize("kind", KINDS)
def test_megatron_is_read_by_indexed_dataset(arrow_build, tmp_path, kind):
    _needs("megatron")
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    out = tmp_path / "megatron"
    export_build(arrow_build(kind), out, "megatron")
    table = _arrow_table(arrow_build(kind))
    columns = [
        f.name
        for f in table.schema
        if pa.types.is_list(f.type) and pa.types.is_integer(f.type.value_type) and f.name not in NULLABLE
    ]
    files = {name: "sft_text_document" if name == "input_ids" else name for name in columns}
    for name, stem in files.items():
        dataset = IndexedDataset(str(out / "train" / stem))
        assert len(dataset) == table.num_rows
        assert len(dataset.document_indices) == table.num_rows + 1  # one document per row
        for i, expected in enumerate(table.column(name).to_pylist()):
            assert dataset[i].tolist() == expected, (name, i)
    rest = pq.read_table(out / "train" / "metadata.parquet")
    assert rest.equals(table.select(rest.column_names))


@pytest.mark.parametrize("kind", KINDS)
def test_megatron_loss_mask_document_trains_exactly_the_trained_tokens(arrow_build, tmp_path, kind):
    """SFT loaders weight the loss on text[1:] with mask[1:]: the mask must flag each trained token."""
    _needs("megatron")
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    out = tmp_path / "megatron"
    export_build(arrow_build(kind), out, "megatron")
    text = IndexedDataset(str(out / "train" / "sft_text_document"))
    mask = IndexedDataset(str(out / "train" / "sft_loss_mask_document"))
    assert len(mask) == len(text) and mask[0].dtype == np.uint8
    rows = _arrow_table(arrow_build(kind)).to_pylist()
    for i, row in enumerate(rows):
        ids, flags = text[i], mask[i]
        assert len(flags) == len(ids) and flags[0] == 0
        if "labels" in row:  # HF labels: the trained tokens are the labels that are not -100
            trained = [t for t in row["labels"] if t != -100]
        else:  # shifted: the trained targets
            trained = [t for t, m in zip(row["target_ids"], row["loss_mask"], strict=True) if m]
        assert ids[flags == 1].tolist() == trained, i
        assert int(flags.sum()) == row["num_trained_tokens"] > 0


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_splits_are_folders_read_by_the_format_reader(arrow_build, tmp_path, fmt, monkeypatch):
    """A build with splits (recipes, issue 14) is one write_split call per split folder."""
    _needs(fmt)
    source = arrow_build("sequence")
    manifest = read_manifest(source)
    schema = read_schema(source, manifest)
    table = _arrow_table(source)
    parts = {"train": table.slice(0, 3000), "validation": table.slice(3000)}
    out = tmp_path / fmt
    out.mkdir()
    new = write_splits(
        out, manifest, schema, {k: v.to_batches(max_chunksize=512) for k, v in parts.items()}, fmt
    )
    (out / "manifest.json").write_text(json.dumps(new))
    schema_read, batches = open_batches(out)
    assert pa.Table.from_batches(list(batches), schema_read).equals(table)
    card = json.loads((out / "card.json").read_text())
    assert {k: v["rows"] for k, v in card["splits"].items()} == {"train": 3000, "validation": 610}
    if fmt == "parquet":
        datasets = pytest.importorskip("datasets")
        monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
        loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
        assert {k: v.num_rows for k, v in loaded.items()} == {"train": 3000, "validation": 610}
    elif fmt == "mds":
        from streaming import LocalDataset

        assert len(LocalDataset(str(out), split="validation")) == 610
    else:
        from megatron.core.datasets.indexed_dataset import IndexedDataset

        assert len(IndexedDataset(str(out / "validation" / "sft_text_document"))) == 610


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_inspect_reads_every_format(arrow_build, tmp_path, fmt):
    _needs(fmt)
    out = tmp_path / fmt
    export_build(arrow_build("packed"), out, fmt)
    runner = CliRunner()
    for args in (["--stats"], ["-n", "2"]):
        want = runner.invoke(cli, ["inspect", str(arrow_build("packed")), *args])
        got = runner.invoke(cli, ["inspect", str(out), *args])
        assert want.exit_code == got.exit_code == 0, got.output
        assert got.stdout.splitlines()[1:] == want.stdout.splitlines()[1:]  # the first line names the path


@pytest.mark.parametrize(
    ("fmt", "module", "extra"),
    [
        ("mds", "streaming", "mds"),
        ("megatron", "megatron.core", "megatron"),
        ("parquet", "matplotlib", "parquet"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(arrow_build, tmp_path, monkeypatch, fmt, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # what Python does for a module that cannot be imported
    runner = CliRunner()
    result = runner.invoke(
        cli, ["export", str(arrow_build("sequence")), "--to", fmt, "-o", str(tmp_path / "x")]
    )
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert f"pip install 'sftprep[{extra}]'" in result.output
    built = runner.invoke(cli, ["build", str(shared_path("data", "qa", "gsm8k_test.jsonl")), "-t", "qa",
                                "-o", str(tmp_path / "b"), "--output-format", fmt, "-q"])  # fmt: skip
    assert built.exit_code == 2 and f"sftprep[{extra}]" in built.output
    assert not (tmp_path / "b").exists()


def test_export_cli(arrow_build, tmp_path):
    runner = CliRunner()
    out = tmp_path / "p"
    result = runner.invoke(
        cli, ["export", str(arrow_build("sequence")), "--to", "parquet", "-o", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "output": str(out),
        "output_format": "parquet",
        "rows": {"train": 3610},
        "files": 1,
    }
    again = runner.invoke(cli, ["export", str(arrow_build("sequence")), "--to", "parquet", "-o", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    missing = runner.invoke(
        cli, ["export", str(tmp_path / "nothing"), "--to", "mds", "-o", str(tmp_path / "m")]
    )
    assert missing.exit_code == 4 and "no manifest.json" in missing.output


EXAMPLE = ROOT / "docs" / "exports-example"


def test_card_example_in_docs_is_current(tmp_path, monkeypatch):
    """docs/exports-example/ is the card of sample_data/qa.jsonl; rebuild it with the command in docs/exports.md."""
    _needs("parquet")
    shared_path("tokenizers", "gpt2")
    monkeypatch.chdir(ROOT)
    out = tmp_path / "qa"
    config = BuildConfig(inputs=("sample_data/qa.jsonl",), output=str(out), tokenizer="../shared/tokenizers/gpt2",
                         output_format="parquet", workers=1)  # fmt: skip
    run_build(config)
    for name in ("README.md", "length_histogram.png", "card.json"):
        assert (out / name).read_bytes() == (EXAMPLE / name).read_bytes(), name


def test_merge_refuses_slices_in_another_format(tmp_path):
    _needs("parquet")
    from sftprep.merge import merge_builds

    parts = []
    for index in range(2):
        out = tmp_path / f"part-{index}"
        run_build(_config("sequence", out, num_shards=2, shard_index=index, output_format="parquet"))
        parts.append(str(out))
    with pytest.raises(ConfigError, match="export the merged build"):
        merge_builds(parts, str(tmp_path / "merged"))
    assert not (tmp_path / "merged").exists()


@pytest.mark.parametrize(
    "options",
    [{"mode": "exploded", "max_length": 64}, {"labels": "hf", "max_length": 256, "pad_to": "max-length"},
     {"pack": True, "max_length": 512, "pad_to": "max-length"}],
    ids=["exploded", "padded-hf", "packed-padded"],
)  # fmt: skip
@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_every_kind_of_row_round_trips(tmp_path, fmt, options, monkeypatch):
    _needs(fmt)
    monkeypatch.chdir(ROOT)
    arrow = tmp_path / "arrow"
    tokenizer = str(shared_path("tokenizers", "gpt2"))
    run_build(
        BuildConfig(inputs=("sample_data/qa.jsonl",), output=str(arrow), tokenizer=tokenizer, **options)
    )
    export_build(arrow, tmp_path / fmt, fmt)
    schema, batches = open_batches(tmp_path / fmt)
    assert pa.Table.from_batches(list(batches), schema).equals(_arrow_table(arrow), check_metadata=True)


def test_export_reads_a_build_on_object_storage(arrow_build, tmp_path, s3):
    _needs("parquet")
    s3.fs.put(str(arrow_build("sequence")) + "/", s3.url("arrow").removeprefix("s3://"), recursive=True)
    export_build(s3.url("arrow"), tmp_path / "p", "parquet")
    export_build(arrow_build("sequence"), tmp_path / "q", "parquet")
    assert _files(tmp_path / "p") == _files(tmp_path / "q")
    with pytest.raises(ConfigError, match="export writes to a local directory"):
        export_build(arrow_build("sequence"), s3.url("p"), "parquet")


@pytest.mark.parametrize(("fmt", "pattern"), [("parquet", "*.parquet"), ("mds", "*.mds")])
def test_shard_size_cuts_several_files_read_in_order(tmp_path, fmt, pattern):
    _needs(fmt)
    arrow = tmp_path / "arrow"
    run_build(_config("sequence", arrow, shard_size=64 * 1024))
    export_build(arrow, tmp_path / fmt, fmt)
    assert len(list((tmp_path / fmt / "train").glob(pattern))) > 1
    schema, batches = open_batches(tmp_path / fmt)
    assert pa.Table.from_batches(list(batches), schema).equals(_arrow_table(arrow))
