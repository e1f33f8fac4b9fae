"""``sftprep merge``: the outputs of ``--num-shards`` slices -> the one build they slice.

Slice ``I`` of ``N`` holds the batches ``k`` with ``k mod N == I`` (batches of
``--batch-size`` records, counted over all inputs in order; see
:mod:`sftprep.build`). Every row says where its record came from
(``source_file``, ``source_line``), and that order is the input order, so the
slices are put back together by merging their rows on the key
``(position of source_file among the inputs, source_line)``: each slice is
already in that order, no two slices share a record, and the rows of one
record stay together and in order. The result has the single build's rows in
the single build's order (its ``content_sha256`` is the same), counts that
are the slices' sums, its rejects merged in input order, and the single
build's configuration. Its shard files may be cut at other rows than a
single build's.

Example::

    sftprep build data.jsonl -o part-0 --num-shards 2 --shard-index 0
    sftprep build data.jsonl -o part-1 --num-shards 2 --shard-index 1
    sftprep merge part-0 part-1 -o merged
"""

from __future__ import annotations

import heapq
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sftprep import storage
from sftprep.arrays import to_numpy
from sftprep.build import BuildResult, check_rejected
from sftprep.digest import RowDigest
from sftprep.errors import ConfigError, DataError, InputError
from sftprep.manifest import NAME as MANIFEST
from sftprep.manifest import REJECTS, parse_manifest, write_manifest
from sftprep.writer import ShardWriter

_LINE_BITS = 40  # key = input position << 40 | source_line


@dataclass
class _Slice:
    """One slice's output: where it is and its manifest."""

    location: str
    manifest: dict[str, Any]

    @property
    def index(self) -> int:
        return int((self.manifest.get("slice") or {}).get("shard_index", -1))

    @property
    def count(self) -> int:
        return int((self.manifest.get("slice") or {}).get("num_shards", 0))

    def shard_paths(self) -> list[str]:
        return [storage.join(self.location, s["filename"]) for s in self.manifest["shards"]]


def _open_slice(location: str) -> _Slice:
    text = storage.read_text(storage.join(location, MANIFEST))
    if text is None and not storage.exists(location):
        raise InputError(f"no such build: {location}")
    if text is None:
        raise InputError(
            f"{location}: no {MANIFEST}: an incomplete build (interrupted?) or not an sftprep build"
        )
    return _Slice(location, parse_manifest(text, f"{location}/{MANIFEST}"))


def _unsliced_config(manifest: dict[str, Any]) -> dict[str, Any]:
    config = dict(manifest.get("config") or {})
    config["num_shards"], config["shard_index"] = 1, 0
    return config


def _check(slices: list[_Slice]) -> list[_Slice]:
    """Every problem with the set of slices at once; the slices sorted by index."""
    problems = []
    for s in slices:
        if s.count < 2:
            problems.append(f"{s.location} is not a slice (it was not built with --num-shards)")
        if (s.manifest.get("packing") or None) is not None:
            problems.append(f"{s.location} is packed; packed builds cannot be merged in input order")
        if (s.manifest.get("output_format") or "arrow") != "arrow":
            problems.append(f"{s.location} is in the {s.manifest['output_format']} format: merge the Arrow "
                            "slices, then export the merged build (sftprep export)")  # fmt: skip
    if problems:
        raise ConfigError("; ".join(problems))
    first = slices[0]
    counts = {s.count for s in slices}
    indexes = sorted(s.index for s in slices)
    if len(counts) > 1:
        problems.append(
            f"the slices come from different --num-shards ({', '.join(map(str, sorted(counts)))})"
        )
    elif indexes != list(range(first.count)):
        missing = sorted(set(range(first.count)) - set(indexes))
        twice = sorted({i for i in indexes if indexes.count(i) > 1})
        problems.append(
            f"need each of the {first.count} slices once: "
            + ", ".join(
                part
                for part in (
                    f"missing --shard-index {', '.join(map(str, missing))}" if missing else "",
                    f"--shard-index {', '.join(map(str, twice))} given twice" if twice else "",
                )
                if part
            )
        )
    for s in slices[1:]:
        for key, what in (
            ("config", "options"),
            ("tokenizer", "tokenizer"),
            ("template", "template"),
            ("label_convention", "label convention"),
            ("columns", "columns"),
        ):
            a, b = first.manifest.get(key), s.manifest.get(key)
            if key == "config":
                a, b = _unsliced_config(first.manifest), _unsliced_config(s.manifest)
            if a != b:
                which = _which(a, b, options=key == "config")
                problems.append(f"{s.location} and {first.location} differ in their {what}{which}")
        if _inputs_key(s.manifest) != _inputs_key(first.manifest):
            problems.append(f"{s.location} and {first.location} read different inputs (names or sha256)")
    if problems:
        raise ConfigError("; ".join(problems))
    return sorted(slices, key=lambda s: s.index)


def _which(a: Any, b: Any, options: bool) -> str:
    """What differs between two manifest entries: `` (--max-length 512 vs 1024)``, or ``""``."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return ""
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    names = ["--" + k.replace("_", "-") if options else k for k in keys]
    parts = [
        f"{n} {json.dumps(b.get(k))} vs {json.dumps(a.get(k))}" for n, k in zip(names, keys, strict=True)
    ]
    return f" ({', '.join(parts[:3])}{', ...' if len(parts) > 3 else ''})" if parts else ""


def _inputs_key(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    return [(i.get("name"), i.get("sha256")) for i in manifest.get("inputs") or []]


def _shard_batches(path: str) -> Iterator[pa.RecordBatch]:
    local = storage.local_path(path)
    source = pa.memory_map(local) if local is not None else storage.open_binary(path)
    try:
        yield from pa.ipc.open_stream(source)
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path}: not an Arrow shard: {exc}") from None
    finally:
        source.close()


class _Cursor:
    """Reads one slice's rows batch by batch, with each row's merge key."""

    def __init__(self, part: _Slice, positions: pa.Array):
        self.part = part
        self.positions = positions
        self._batches = (b for path in part.shard_paths() for b in _shard_batches(path))
        self.batch: pa.RecordBatch | None = None
        self.keys = np.empty(0, np.int64)
        self.pos = 0
        self._load()

    def _load(self) -> None:
        last = int(self.keys[-1]) if len(self.keys) else -1
        self.batch = None
        for batch in self._batches:
            if batch.num_rows:
                self.batch, self.keys, self.pos = batch, self._keys(batch), 0
                if self.keys[0] < last or np.any(np.diff(self.keys) < 0):
                    raise DataError(
                        f"{self.part.location}: rows are not in input order; was it merged or edited?"
                    )
                return

    def _keys(self, batch: pa.RecordBatch) -> np.ndarray:
        where = pc.index_in(batch.column("source_file"), value_set=self.positions)
        if where.null_count:
            raise DataError(f"{self.part.location}: a row's source_file is not among the build's inputs")
        lines = to_numpy(batch.column("source_line")).astype(np.int64)
        return (to_numpy(where).astype(np.int64) << _LINE_BITS) | lines

    @property
    def head(self) -> int:
        return int(self.keys[self.pos])

    def take_below(self, bound: int | None) -> pa.RecordBatch:
        """The rows from here whose key is below ``bound`` (all of this batch for None)."""
        assert self.batch is not None
        end = (
            len(self.keys) if bound is None else self.pos + int(np.searchsorted(self.keys[self.pos :], bound))
        )
        piece = self.batch.slice(self.pos, end - self.pos)
        self.pos = end
        if self.pos == len(self.keys):
            self._load()
        return piece


def merged_rows(slices: Sequence[_Slice]) -> Iterator[pa.RecordBatch]:
    """The slices' rows merged into input order (``slices`` checked, sorted by index)."""
    positions = pa.array([i["name"] for i in slices[0].manifest["inputs"]], pa.string())
    cursors = [_Cursor(s, positions) for s in slices]
    live = [c for c in cursors if c.batch is not None]
    while live:
        lowest = min(live, key=lambda c: c.head)
        others = [c.head for c in live if c is not lowest]
        piece = lowest.take_below(min(others) if others else None)
        if piece.num_rows == 0:
            raise DataError(
                f"{lowest.part.location} and another slice both hold the record at key {lowest.head}: "
                "the slices overlap"
            )
        yield piece
        live = [c for c in cursors if c.batch is not None]


def _rejects(slices: Sequence[_Slice], positions: dict[str, int]) -> Iterator[str]:
    """The slices' rejected records, merged into input order (lines of rejects.jsonl)."""

    def entries(part: _Slice) -> Iterator[tuple[tuple[int, int], str]]:
        if not part.manifest.get("rejects_file"):
            return
        text = storage.read_text(storage.join(part.location, REJECTS)) or ""
        for line in text.splitlines():
            entry = json.loads(line)
            yield (positions.get(entry["source"], -1), int(entry["line"])), line

    for _, line in heapq.merge(*(entries(s) for s in slices), key=lambda e: e[0]):
        yield line


def _sum_counts(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """The slices' counts added up: numbers summed, per-reason dicts summed per key."""
    total: dict[str, Any] = {}
    for manifest in manifests:
        for key, value in manifest["counts"].items():
            if isinstance(value, dict):
                into = total.setdefault(key, {})
                for name, n in value.items():
                    into[name] = into.get(name, 0) + n
            elif isinstance(value, int | float):
                total[key] = total.get(key, 0) + value
    return {k: dict(sorted(v.items())) if isinstance(v, dict) else v for k, v in total.items()}


def merge_builds(
    parts: Sequence[str], output: str, overwrite: bool = False, log: Callable[[str], None] | None = None
) -> BuildResult:
    """Merge the outputs of all ``--num-shards`` slices of one build into ``output``.

    Args:
        parts: the slices' output directories or URLs, in any order.
        output: where the merged build goes (directory or URL).
        overwrite: replace ``output`` if it exists.
        log: called with one-line notes for the user.

    Returns:
        Where the merged build went and its manifest.

    Raises:
        ConfigError: the parts are not all the slices of one build.
        InputError: a part is incomplete (no manifest) or unreadable.
    """
    say = log or (lambda message: None)
    if not parts:
        raise ConfigError("give the outputs of the slices to merge")
    storage.check_output(output, overwrite, list(parts))
    slices = _check([_open_slice(p) for p in parts])
    first = slices[0].manifest
    schema = _schema(slices[0])
    config = _unsliced_config(first)
    positions = {entry["name"]: i for i, entry in enumerate(first["inputs"])}
    say(f"merging {len(slices)} slices into {output}")
    with storage.staged_output(output, overwrite=overwrite) as staged:
        writer = ShardWriter(staged.path, schema, int(config["shard_size"]), store=staged.store)
        digest = RowDigest(schema)
        for piece in merged_rows(slices):
            digest.update(piece)
            writer.write(piece)
        rejected = 0
        with open(staged.path / REJECTS, "w", encoding="utf-8") as f:
            for line in _rejects(slices, positions):
                f.write(line + "\n")
                rejected += 1
        if not rejected:
            (staged.path / REJECTS).unlink()
        _copy_tokenizer(slices[0], staged.path)
        shards = writer.finish(fingerprint_extra=json.dumps(config, sort_keys=True))
        counts = _sum_counts([s.manifest for s in slices])
        # Slices leave --max-errors to the merge: one slice's records may all be bad, the build's not.
        check_rejected(counts.get("records_read", 0), counts.get("skipped") or {}, config.get("max_errors"))
        manifest = dict(first)
        manifest.update(
            config=config,
            counts=counts,
            shards=shards,
            content_sha256=digest.hexdigest(),
            rejects_file=REJECTS if rejected else None,
            slice=None,
            merged_from=[_provenance(s) for s in slices],
        )
        write_manifest(staged.path, manifest)
        staged.commit()
    local = storage.local_path(output)
    return BuildResult(Path(local) if local is not None else output, manifest)


def _provenance(part: _Slice) -> dict[str, Any]:
    manifest = part.manifest
    return {"output": part.location, "shard_index": part.index, "engine": manifest.get("engine"),
            "content_sha256": manifest.get("content_sha256")}  # fmt: skip


def _schema(part: _Slice) -> pa.Schema:
    """The slices' schema, metadata included, from the first shard."""
    path = part.shard_paths()[0]
    local = storage.local_path(path)
    source = pa.memory_map(local) if local is not None else storage.open_binary(path)
    try:
        return pa.ipc.open_stream(source).schema
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path}: not an Arrow shard: {exc}") from None
    finally:
        source.close()


def _copy_tokenizer(part: _Slice, directory: Path) -> None:
    """A build that added marker tokens carries its tokenizer.json: carry it over."""
    if not (part.manifest.get("tokenizer") or {}).get("added_tokens"):
        return
    source = storage.join(part.location, "tokenizer.json")
    with storage.open_binary(source) as src, tempfile.NamedTemporaryFile(dir=directory, delete=False) as dst:
        shutil.copyfileobj(src, dst)
    Path(dst.name).rename(directory / "tokenizer.json")
