"""The output contract: a build's ``manifest.json``, its name, format, writing and reading.

A build directory (or URL prefix) is complete when it holds ``manifest.json``,
written last (the mosaicml/streaming ``index.json`` idea). The manifest says
what the shards are and how they were made:

* ``format`` (:data:`FORMAT`), ``output_format``, ``sftprep_version``;
* ``config``: the options that decide the output (``BuildConfig.recorded()``);
* ``label_convention`` (:func:`label_convention`, also in every shard's schema
  metadata), ``tokenizer``, ``template``;
* ``inputs`` (name, format, sha256, bytes), ``counts``, ``columns``;
* ``shards`` (filename, num_rows, num_bytes, sha256) and ``content_sha256``
  (:class:`sftprep.digest.RowDigest` over the rows, whatever the shard layout);
* ``slice`` (``--num-shards``), ``rejects_file`` (:data:`REJECTS`), ``packing``,
  ``padding``, ``engine``; a merge adds ``merged_from``, a recipe ``sources``/``splits``.

Every module that writes or reads a manifest (build, merge, recipes, verify,
view) goes through this one. It imports nothing heavy: storage and writer use
it to tell a build from other files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sftprep.errors import InputError, OutputError

if TYPE_CHECKING:
    from sftprep.config import BuildConfig
    from sftprep.tokenizer import TokenizerInfo

__all__ = [
    "FORMAT",
    "NAME",
    "REJECTS",
    "SLICE_RULE",
    "is_build",
    "label_convention",
    "load_manifest",
    "parse_manifest",
    "preview_manifest",
    "write_json",
    "write_manifest",
]

NAME = "manifest.json"
FORMAT = "sftprep-manifest/1"
REJECTS = "rejects.jsonl"  # the records an --on-error skip build left out, with their reasons
SLICE_RULE = "batch k of --batch-size records (from 0, over all inputs in order) is in slice k mod num_shards"


def label_convention(config: BuildConfig, info: TokenizerInfo) -> dict[str, Any]:
    """How to read the rows' labels: the manifest's ``label_convention`` and the shards' metadata."""
    from sftprep.labels import IGNORE_INDEX  # labels imports numpy: only a build needs it

    return {
        "format": FORMAT,
        "mode": config.mode,
        "labels": config.labels,
        "ignore_index": IGNORE_INDEX,
        "shifted": config.labels == "shifted" and config.mode == "sequence",
        "eos_id": info.eos_id,
        "eos_token": info.eos_token,
        "bos_id": info.bos_id,
        "bos_policy": "as the tokenizer's post-processor adds it (ids before the prompt: "
        f"{info.head_ids}); a duplicate BOS from the text is removed",
        "trained": "pairs: the target tokens and EOS, never the prompt; chat: the assistant turns "
        "(content and end-of-turn marker, never their header) chosen by train_on",
        "train_on": config.train_on,
        "packed": config.pack,
        "padded": config.pad_to is not None or config.pad_to_multiple_of is not None,
    }


# The convention keys an in-memory preview states: its rows are never packed or padded.
_PREVIEW_CONVENTION = ("mode", "labels", "ignore_index", "eos_id", "eos_token")


def preview_manifest(
    config: BuildConfig, info: TokenizerInfo, template_name: str, counts: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest-like dict of rows built in memory (``inspect --preview``), and its convention.

    Only what a preview knows: the options, the tokenizer, the template's name and the counts.
    """
    full = label_convention(config, info)
    convention = {key: full[key] for key in _PREVIEW_CONVENTION}
    manifest = {
        "config": config.recorded(),
        "tokenizer": info.identity(),
        "label_convention": convention,
        "template": {"name": template_name},
        "counts": counts,
    }
    return manifest, convention


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as the manifest's JSON: sorted keys, indented, UTF-8, one final newline.

    Raises:
        OutputError: the file cannot be written.
    """
    try:
        path.write_text(
            json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` into ``directory`` (a staging directory: committing it completes the build)."""
    write_json(directory / NAME, manifest)


def parse_manifest(text: str, where: str) -> dict[str, Any]:
    """A manifest's text, checked to be an sftprep manifest of this :data:`FORMAT`.

    Args:
        text: the file's content.
        where: the file, for messages.

    Raises:
        InputError: not JSON, or not an sftprep manifest.
    """
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{where}: not an sftprep manifest ({FORMAT})")
    return manifest


def load_manifest(path: Path) -> dict[str, Any] | None:
    """The JSON object in a local manifest file; None when there is no file or it holds no object.

    Raises:
        InputError: the file cannot be read, or is not JSON.
    """
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    return data if isinstance(data, dict) else None


def is_build(path: str | os.PathLike[str]) -> bool:
    """Whether a local directory holds an sftprep build: its manifest.json says so."""
    try:
        with open(Path(path) / NAME, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and str(manifest.get("format", "")).startswith("sftprep-manifest/")
