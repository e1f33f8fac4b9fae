"""manifest.py: the output contract's name, format, writing, reading and checking."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from sftprep import BuildConfig, run_build
from sftprep.errors import InputError
from sftprep.manifest import (
    FORMAT,
    NAME,
    is_build,
    label_convention,
    load_manifest,
    parse_manifest,
    preview_manifest,
    write_manifest,
)
from sftprep.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
QA = str(ROOT / "sample_data" / "qa.jsonl")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return run_build(BuildConfig(inputs=(QA,), output=str(tmp_path_factory.mktemp("m") / "out"), workers=1))


def test_a_build_writes_the_manifest_this_module_reads(built):
    text = (built.output / NAME).read_text(encoding="utf-8")
    assert parse_manifest(text, "x") == load_manifest(built.output / NAME) == built.manifest
    assert built.manifest["format"] == FORMAT and is_build(built.output)
    # sorted keys, two-space indent, one final newline: the bytes the byte-identity test records
    assert text == json.dumps(built.manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_the_shards_carry_the_manifests_label_convention(built):
    config = BuildConfig(inputs=(QA,), output="")
    convention = label_convention(config, load_tokenizer(None))
    assert built.manifest["label_convention"] == convention
    shard = built.output / built.manifest["shards"][0]["filename"]
    with pa.ipc.open_stream(shard) as reader:
        assert json.loads(reader.schema.metadata[b"sftprep"]) == convention


def test_write_then_load(tmp_path):
    write_manifest(tmp_path, {"format": FORMAT, "é": [1]})
    assert (tmp_path / NAME).read_text(
        encoding="utf-8"
    ) == '{\n  "format": "sftprep-manifest/1",\n  "é": [\n    1\n  ]\n}\n'
    assert load_manifest(tmp_path / NAME) == {"format": FORMAT, "é": [1]} and is_build(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{nope", "out/manifest.json: not valid JSON: "),
        ("[1, 2]", "out/manifest.json: not an sftprep manifest (sftprep-manifest/1)"),
        ('{"format": "other/1"}', "out/manifest.json: not an sftprep manifest (sftprep-manifest/1)"),
    ],
)
def test_parse_refuses_what_is_not_a_manifest(text, message):
    with pytest.raises(InputError) as caught:
        parse_manifest(text, "out/manifest.json")
    assert str(caught.value).startswith(message)


def test_load_tells_missing_from_unreadable(tmp_path):
    assert load_manifest(tmp_path / NAME) is None and not is_build(tmp_path)
    (tmp_path / NAME).write_text("[]")
    assert load_manifest(tmp_path / NAME) is None and not is_build(tmp_path)
    (tmp_path / NAME).write_text("{")
    with pytest.raises(InputError, match=r"manifest\.json: cannot read: "):
        load_manifest(tmp_path / NAME)


def test_a_preview_states_only_what_it_knows():
    config = BuildConfig(inputs=(QA,), output="", pack=True, max_length=64)
    info = load_tokenizer(None)
    manifest, convention = preview_manifest(config, info, "qa", {"records_read": 3})
    assert convention == {"mode": "sequence", "labels": "shifted", "ignore_index": -100,
                          "eos_id": info.eos_id, "eos_token": info.eos_token}  # fmt: skip
    assert "packed" not in convention  # preview rows are never packed
    assert manifest == {"config": config.recorded(), "tokenizer": info.identity(), "label_convention": convention,
                        "template": {"name": "qa"}, "counts": {"records_read": 3}}  # fmt: skip
