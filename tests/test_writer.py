"""The shard writer: datasets-compatible files, bounded shards, atomic output."""

from __future__ import annotations

import pyarrow as pa
import pytest
from datasets import Features, load_from_disk

from sftprep.labels import schema_for
from sftprep.packing import packed_schema_for, padded_schema
from sftprep.writer import ShardWriter, StagedOutput, _features_dict, with_metadata

SCHEMAS = [schema_for(m, lab) for m in ("sequence", "exploded") for lab in ("shifted", "hf")]
SCHEMAS += [
    packed_schema_for("shifted"),
    padded_schema(packed_schema_for("hf")),
    padded_schema(schema_for("sequence", "shifted")),
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: "-".join(s.names[:3]))
def test_features_match_what_datasets_derives(schema):
    assert _features_dict(schema) == Features.from_arrow_schema(schema).to_dict()


def test_shards_split_by_size_and_load(tmp_path):
    schema = with_metadata(pa.schema([pa.field("input_ids", pa.list_(pa.int32()))]), {"test": True})
    with StagedOutput(tmp_path / "out") as staged:
        writer = ShardWriter(staged.path, schema, shard_bytes=4000)
        for start in range(0, 1000, 100):
            rows = [[i] * 10 for i in range(start, start + 100)]
            writer.write(pa.RecordBatch.from_arrays([pa.array(rows, pa.list_(pa.int32()))], schema=schema))
        shards = writer.finish()
        staged.commit()
    assert len(shards) > 5
    assert sum(s["num_rows"] for s in shards) == 1000
    ds = load_from_disk(str(tmp_path / "out"))
    assert ds["input_ids"] == [[i] * 10 for i in range(1000)]
    assert not list(tmp_path.glob(".sftprep-tmp-*"))


def test_staging_removed_on_error(tmp_path):
    with pytest.raises(RuntimeError), StagedOutput(tmp_path / "out"):
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
