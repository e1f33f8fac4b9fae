"""Byte-identical outputs: refactors must not change a single output byte.

Each case builds real data and compares the manifest's ``content_sha256`` and
every shard's sha256 (the file's bytes, schema metadata included) with the
values in ``tests/golden/identical_outputs.json`` (and every other output file's
sha256: manifest, ``dataset_info.json``, ``state.json``), recorded from main before
issue 17's redesign. Builds run from the repository root with relative input
paths, so the ``source_file`` column is the same in every checkout.

Re-record ONLY when an output change is intended (and say so in the commit):
``SFTPREP_RECORD_GOLDEN=1 pytest tests/test_identical_outputs.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from sftprep import BuildConfig, run_build
from sftprep.merge import merge_builds

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "identical_outputs.json"
RECORD = os.environ.get("SFTPREP_RECORD_GOLDEN") == "1"
CHAT = "../shared/data/chat"
TOKENIZERS = "../shared/tokenizers"

# name -> (inputs, options); one worker keeps the tests light (the output is the same for any count).
CASES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "qa": (("sample_data/qa.jsonl",), {}),
    "summarization": (("sample_data/summarization.jsonl",), {}),
    "translation": (("sample_data/translation.jsonl",), {}),
    "chat-phi3": (
        (f"{CHAT}/toy_chat_fine_tuning.jsonl", f"{CHAT}/dummy_conversation.json"),
        {"tokenizer": f"{TOKENIZERS}/phi-3-mini"},
    ),
    "chat-qwen3-turns-each": (
        (f"{CHAT}/toy_chat_fine_tuning.jsonl",),
        {"tokenizer": f"{TOKENIZERS}/qwen3", "turns": "each"},
    ),
    "qa-gpt2-packed": (
        ("sample_data/qa.jsonl",),
        {"tokenizer": f"{TOKENIZERS}/gpt2", "pack": True, "max_length": 128},
    ),
    "qa-exploded": (("sample_data/qa.jsonl",), {"mode": "exploded", "labels": "hf"}),
}


def _fingerprint(output: Path, tmp_path: Path) -> dict[str, Any]:
    manifest = json.loads((output / "manifest.json").read_text())
    # Every file's bytes too (manifest, dataset_info.json, state.json): the temporary
    # directory, which a merged manifest names, is the only part allowed to differ.
    files = {
        path.name: hashlib.sha256(path.read_bytes().replace(str(tmp_path).encode(), b"TMP")).hexdigest()
        for path in sorted(output.iterdir())
    }
    return {
        "content_sha256": manifest["content_sha256"],
        "shards": [shard["sha256"] for shard in manifest["shards"]],
        "rows": manifest["counts"]["rows_written"],
        "files": files,
    }


def _check(name: str, got: dict[str, Any]) -> None:
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if RECORD:
        golden[name] = got
        GOLDEN.write_text(json.dumps(golden, indent=2, sort_keys=True) + "\n")
        return
    assert name in golden, f"no recorded output for {name}: record it (see the module docstring)"
    assert got == golden[name], f"{name}: the output bytes changed"


@pytest.fixture
def at_root(monkeypatch):
    if not (ROOT.parent / "shared").exists():
        pytest.skip("../shared is missing: the real data is needed")
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("name", list(CASES))
def test_build_output_is_unchanged(name, at_root, tmp_path):
    inputs, options = CASES[name]
    result = run_build(BuildConfig(inputs=inputs, output=str(tmp_path / name), workers=1, **options))
    _check(name, _fingerprint(result.output, tmp_path))


def test_merged_slices_are_unchanged(at_root, tmp_path):
    parts = []
    for index in range(2):
        config = BuildConfig(
            inputs=("sample_data/qa.jsonl",), output=str(tmp_path / f"p{index}"), workers=1,
            batch_size=8, num_shards=2, shard_index=index,
        )  # fmt: skip
        parts.append(str(run_build(config).output))
    merged = merge_builds(parts, str(tmp_path / "merged"))
    _check("qa-merged-slices", _fingerprint(merged.output, tmp_path))
