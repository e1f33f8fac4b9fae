"""See what a build trains on, token by token: choose rows, render them, summarise them.

The library behind ``sftprep inspect``. A build's rows are read straight from
its Arrow shards (memory-mapped, one record batch at a time) and turned into
:class:`Row` objects that no longer depend on the label convention: position
``t`` of a row is trained to predict ``row.targets[t]`` (-100 where it is not
trained), whether the build stored shifted ``target_ids``, unshifted Hugging
Face ``labels`` or exploded ``(prefix, target_id)`` rows. Every view is drawn
from that one form, so the three conventions print alike.

Views (all rich ``Text``, plain when ``Look.colour`` is off)::

    text    Question: What is the capital of France? Answer:[[ Paris<|endoftext|>]]
    tokens  pos  id  token  ->  next id  next token  trained   (one line per position)
    stats   rows, length distribution with a histogram, trained fraction, build counts

Columns this module does not know (packed rows' ``position_ids``, a chat
``roles`` column, ...) ride along in ``Row.extra``: per-position lists become
extra columns of the token table, other values are shown in the row header, and
both go into the JSON output as they are.
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.cells import cell_len
from rich.text import Text
from tokenizers import Tokenizer

from sftprep.build import MANIFEST, BuildConfig, bind_transform, resolve_templates
from sftprep.errors import ConfigError, DataError, InputError, SftprepError
from sftprep.labels import IGNORE_INDEX, META_FIELDS
from sftprep.readers import InputFile, Record, expand_inputs
from sftprep.tokenizer import TokenizerInfo, load_tokenizer

WHERE = ("truncated", "boundary-adjusted", "max-length", "no-eos")
VIEWS = ("text", "tokens", "stats")
FORMATS = ("text", "json")
_MODEL_COLUMNS = {"input_ids", "target_ids", "loss_mask", "labels", "attention_mask", "target_id", "position"}
KNOWN_COLUMNS = frozenset(_MODEL_COLUMNS | {f.name for f in META_FIELDS})


# -- where the rows come from ----------------------------------------------------------


@dataclass
class Rows:
    """The rows to inspect: a build output on disk, or rows built in memory (``--preview``).

    Attributes:
        name: the output's path, for messages.
        convention: the label convention (the shards' ``sftprep`` schema metadata).
        manifest: ``manifest.json`` (a preview carries a manifest-like dict), or None.
        shards: shard files in row order (empty for a preview).
        memory: the record batches of a preview.
        directory: the output directory (where a saved ``tokenizer.json`` lives).
    """

    name: str
    convention: dict[str, Any]
    manifest: dict[str, Any] | None = None
    shards: list[Path] = field(default_factory=list)
    memory: list[pa.RecordBatch] | None = None
    directory: Path | None = None

    @property
    def mode(self) -> str:
        return str(self.convention.get("mode", "sequence"))

    @property
    def max_length(self) -> int | None:
        return ((self.manifest or {}).get("config") or {}).get("max_length")

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Every record batch, in row order (shards are memory-mapped, nothing is copied)."""
        if self.memory is not None:
            yield from self.memory
            return
        for path in self.shards:
            yield from _read_shard(path)


def _read_shard(path: Path) -> Iterator[pa.RecordBatch]:
    try:
        source = pa.memory_map(str(path))
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc}") from None
    try:
        reader = pa.ipc.open_stream(source)
    except pa.ArrowInvalid:
        try:  # the IPC *file* format (what some other tools write) reads the same way
            file_reader = pa.ipc.open_file(source)
        except pa.ArrowInvalid as exc:
            raise InputError(f"{path}: not an Arrow shard: {exc}") from None
        for i in range(file_reader.num_record_batches):
            yield file_reader.get_batch(i)
        return
    try:
        yield from reader
    except (OSError, pa.ArrowInvalid) as exc:  # cut short or overwritten while being read
        raise InputError(f"{path}: damaged shard: {exc}") from None


def _read_manifest(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    return data if isinstance(data, dict) else None


def open_rows(path: str | Path) -> Rows:
    """Open a build output: its directory, or one of its ``.arrow`` shards.

    Raises:
        InputError: no such path, no shards, or a shard that is not Arrow.
        ConfigError: the shards do not hold sftprep-style rows.
    """
    p = Path(path)
    if p.is_dir():
        directory, manifest = p, _read_manifest(p / MANIFEST)
        shards = [p / s["filename"] for s in manifest["shards"]] if manifest else sorted(p.glob("*.arrow"))
        if not shards:
            raise InputError(f"{p}: no .arrow shards here (is it the output of sftprep build?)")
    elif p.is_file():
        directory, shards, manifest = p.parent, [p], _read_manifest(p.parent / MANIFEST)
        if manifest and p.name not in {s.get("filename") for s in manifest.get("shards", [])}:
            manifest = None  # a manifest of some other build
    else:
        raise InputError(f"{p}: no such file or directory")
    schema = _schema(shards[0])
    metadata = schema.metadata or {}
    if b"sftprep" in metadata:
        convention = json.loads(metadata[b"sftprep"])
    else:
        convention = (manifest or {}).get("label_convention") or _guess_convention(schema, p)
    return Rows(str(p), convention, manifest, shards, directory=directory)


def _schema(path: Path) -> pa.Schema:
    for batch in _read_shard(path):
        return batch.schema
    try:
        return pa.ipc.open_stream(pa.memory_map(str(path))).schema
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path}: not an Arrow shard: {exc}") from None


def _guess_convention(schema: pa.Schema, where: Path) -> dict[str, Any]:
    """Shards without sftprep's metadata: tell the convention from the columns."""
    names = set(schema.names)
    if "input_ids" in names:
        for column, mode, labels in (
            ("target_ids", "sequence", "shifted"),
            ("labels", "sequence", "hf"),
            ("target_id", "exploded", "shifted"),
        ):
            if column in names:
                return {"mode": mode, "labels": labels, "ignore_index": IGNORE_INDEX}
    raise ConfigError(
        f"{where}: not sftprep rows: expected input_ids with target_ids, labels or target_id, "
        f"found {', '.join(schema.names)}"
    )


def preview(config: BuildConfig, records: int = 100) -> tuple[Rows, Tokenizer, list[str]]:
    """Build the first ``records`` records of ``config.inputs`` in memory, writing nothing.

    The rows come from the build's own pair transform (template + encoder), so
    they are exactly what ``sftprep build`` with the same options would write.

    Returns:
        The rows, the tokenizer they were made with, and one note per rejected record.

    Raises:
        SftprepError: bad options, inputs, template or tokenizer, as for a build.
    """
    config.check()
    info = load_tokenizer(config.tokenizer, eos=config.eos)
    batch: list[Record] = []
    for name in expand_inputs(config.inputs):
        with InputFile(name, max_record_bytes=config.max_record_bytes, format=config.input_format) as f:
            batch.extend(islice(f.records(), records - len(batch)))
        if len(batch) >= records:
            break
    first = next((r for r in batch if r.error is None), None)
    if first is None:
        detail = f"; the first: {batch[0].error}" if batch else ""
        raise DataError(
            f"none of the first {len(batch)} records of {', '.join(config.inputs)} can be read{detail}"
        )
    template, chat_spec = resolve_templates(config)
    bound = bind_transform(config, info, first, template=template, chat_spec=chat_spec)
    template, transform = bound.template, bound.transform
    result = transform(batch)
    convention = {
        "mode": config.mode,
        "labels": config.labels,
        "ignore_index": IGNORE_INDEX,
        "eos_id": info.eos_id,
        "eos_token": info.eos_token,
    }
    manifest = {
        "config": config.recorded(),
        "tokenizer": info.identity(),
        "label_convention": convention,
        "template": {"name": template.name},
        "counts": result.counts.as_dict(),
    }
    notes = [f"{error} (skipped)" for _, error in result.rejects]
    rows = Rows(f"preview of {', '.join(config.inputs)}", convention, manifest, memory=result.batches)
    return rows, info.tokenizer, notes


def view_tokenizer(rows: Rows, spec: str | None = None) -> tuple[Tokenizer | None, list[str]]:
    """The tokenizer to show token strings with, and notes on anything that went wrong.

    ``spec`` (``--tokenizer``) wins; then a ``tokenizer.json`` saved in the output
    (a build that added marker tokens); then the manifest's ``tokenizer.name``.
    A tokenizer that does not load gives ``None`` and a note: ids are still shown.
    """
    identity = (rows.manifest or {}).get("tokenizer") or {}
    saved = rows.directory / "tokenizer.json" if rows.directory else None
    if spec is None and saved is not None and saved.is_file():
        spec, check = str(saved), False
    elif spec is None and identity.get("name"):
        spec, check = identity["name"], True
    elif spec is None:
        return None, [
            f"{rows.name}: no manifest.json names the tokenizer; pass --tokenizer to see token strings"
        ]
    else:
        check = True
    try:
        info = _load_tokenizer(None if spec == "default" else spec, identity.get("eos_token"), _stamp(spec))
    except SftprepError as exc:
        return None, [f"cannot load tokenizer '{spec}' ({exc}); showing ids only (pass --tokenizer)"]
    notes = []
    if check and identity.get("sha256") and info.sha256 != identity["sha256"]:
        notes.append(
            f"tokenizer '{spec}' is not the one this build used (its sha256 differs): token strings may be wrong"
        )
    return info.tokenizer, notes


def _stamp(spec: str) -> tuple[int, int] | None:
    """The tokenizer file's mtime and size, so that a cached load notices a changed file."""
    path = Path(spec).expanduser()
    path = path / "tokenizer.json" if path.is_dir() else path
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=4)
def _load_tokenizer(spec: str | None, eos: str | None, stamp: tuple[int, int] | None) -> TokenizerInfo:
    # Loading takes a few tenths of a second; a process that inspects several
    # outputs of one tokenizer (a notebook, the tests) loads it once. Nothing
    # here changes the tokenizer it returns.
    del stamp  # only part of the cache key
    return load_tokenizer(spec, eos=eos)


# -- choosing rows ----------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which rows to show. Filters combine with AND; ``limit``/``random`` count examples.

    Attributes:
        index: row-number ranges ``(start, stop)``, from :func:`parse_index`.
        random: show this many examples chosen at random (with ``seed``).
        source: rows from this input file (the name as built, or its tail after a ``/``).
        lines: rows from these source lines (or record numbers), inclusive.
        where: conditions from :data:`WHERE`, all of which must hold.
        limit: how many examples to show; None shows all.
    """

    index: tuple[tuple[int, int], ...] = ()
    random: int | None = None
    seed: int = 0
    source: str | None = None
    lines: tuple[int, int] | None = None
    where: tuple[str, ...] = ()
    limit: int | None = 3


_RANGE = re.compile(r"^\s*(\d+)\s*(?:(-)\s*(\d*)\s*)?$")


def parse_index(text: str) -> list[tuple[int, int]]:
    """``"7"`` -> ``[(7, 8)]``; ``"10-12,20"`` -> ``[(10, 13), (20, 21)]``; ``"5-"`` is 5 onwards."""
    ranges = []
    for part in text.split(","):
        match = _RANGE.match(part)
        if not match:
            raise ConfigError(f"--index: '{part.strip()}' is not a row number or range (e.g. 7, 10-20, 5-)")
        start = int(match.group(1))
        stop = start + 1 if not match.group(2) else int(match.group(3)) + 1 if match.group(3) else 2**62
        if stop <= start:
            raise ConfigError(f"--index: the range '{part.strip()}' is empty")
        ranges.append((start, stop))
    return ranges


def parse_source(text: str) -> tuple[str | None, tuple[int, int] | None]:
    """``"qa.jsonl:17"`` -> ``("qa.jsonl", (17, 17))``; ``"qa.jsonl:3-9"``; ``"qa.jsonl"``; ``":17"``."""
    name, sep, tail = text.rpartition(":")
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", tail) if sep else None
    if not match:
        return text, None
    lo = int(match.group(1))
    return name or None, (lo, int(match.group(2) or lo))


def _in_ranges(values: np.ndarray, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    inside = np.zeros(len(values), dtype=bool)
    for start, stop in ranges:
        inside |= (values >= start) & (values < stop)
    return inside


def _lengths(batch: pa.RecordBatch, mode: str) -> np.ndarray:
    """Tokens per example row: the row's length, or prefix + target for exploded rows."""
    if mode == "exploded":
        return batch.column("position").to_numpy(zero_copy_only=False).astype(np.int64) + 1
    return pc.list_value_length(batch.column("input_ids")).to_numpy(zero_copy_only=False).astype(np.int64)


def _label_column(batch: pa.RecordBatch) -> str:
    return next(n for n in ("target_ids", "labels", "target_id") if n in batch.schema.names)


def _eos_trained(batch: pa.RecordBatch, eos_id: int) -> np.ndarray:
    """Per row: is the EOS token one of its trained targets?"""
    column = batch.column(_label_column(batch))
    if not pa.types.is_list(column.type):
        return column.to_numpy(zero_copy_only=False) == eos_id
    hits = pc.list_parent_indices(column).to_numpy()[pc.list_flatten(column).to_numpy() == eos_id]
    return np.bincount(hits, minlength=batch.num_rows)[: batch.num_rows] > 0


def _any_per_row(column: pa.Array, test: Callable[[pa.Array], np.ndarray]) -> np.ndarray:
    """``test`` per row; for list columns (packed rows hold one value per example), any of them."""
    if not pa.types.is_list(column.type):
        return test(column)
    hits = pc.list_parent_indices(column).to_numpy()[test(pc.list_flatten(column))]
    return np.bincount(hits, minlength=len(column))[: len(column)] > 0


def _flags(column: pa.Array) -> np.ndarray:
    return _any_per_row(column, lambda c: c.fill_null(False).to_numpy(zero_copy_only=False))


def _row_filter(batch: pa.RecordBatch, base: int, rows: Rows, sel: Selection) -> np.ndarray:
    keep = np.ones(batch.num_rows, dtype=bool)
    if sel.index:
        keep &= _in_ranges(np.arange(base, base + batch.num_rows), sel.index)
    if sel.source:
        name = sel.source
        keep &= _any_per_row(
            batch.column("source_file"),
            lambda c: _flags(pc.or_(pc.equal(c, name), pc.ends_with(c, "/" + name))),
        )
    if sel.lines:
        lo, hi = sel.lines
        keep &= _any_per_row(
            batch.column("source_line"),
            lambda c: _flags(pc.and_(pc.greater_equal(c, lo), pc.less_equal(c, hi))),
        )
    for flag in ("truncated", "boundary-adjusted"):
        if flag in sel.where:
            keep &= _flags(batch.column(flag.replace("-", "_")))
    if "max-length" in sel.where:
        keep &= _lengths(batch, rows.mode) == rows.max_length
    return keep


def _check_where(rows: Rows, sel: Selection) -> None:
    unknown = sorted(set(sel.where) - set(WHERE))
    if unknown:
        raise ConfigError(f"unknown --where {', '.join(unknown)} (choose from {', '.join(WHERE)})")
    if "max-length" in sel.where and rows.max_length is None:
        raise ConfigError(f"{rows.name} was built without --max-length, so no row can hit it")
    if "no-eos" in sel.where and rows.convention.get("eos_id") is None:
        raise ConfigError(f"{rows.name}: the label convention does not name the EOS id")


def _group_starts(batch: pa.RecordBatch, mode: str, previous: tuple | None) -> np.ndarray:
    """Per row: does it start a new example? Exploded rows of one example are consecutive."""
    n = batch.num_rows
    if mode != "exploded":
        return np.ones(n, dtype=bool)
    files, lines = batch.column("source_file"), batch.column("source_line").to_numpy(zero_copy_only=False)
    position = batch.column("position").to_numpy(zero_copy_only=False)
    starts = np.empty(n, dtype=bool)
    if n > 1:
        other_file = pc.not_equal(files.slice(1), files.slice(0, n - 1)).fill_null(True)
        starts[1:] = other_file.to_numpy(zero_copy_only=False) | (lines[1:] != lines[:-1])
        starts[1:] |= position[1:] <= position[:-1]
    if previous is None:
        starts[0] = True
    else:
        file, line, pos = previous
        starts[0] = files[0].as_py() != file or lines[0] != line or position[0] <= pos
    return starts


def _matching_groups(rows: Rows, sel: Selection) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(firsts, stops)`` row ranges of the examples that match, a batch at a time.

    An example matches when one of its rows passes every row filter and, for
    ``no-eos``, none of its rows trains the EOS token.
    """
    _check_where(rows, sel)
    no_eos = "no-eos" in sel.where
    pending: list[Any] | None = None  # [first, stop, matched, eos] of an example that may go on
    previous: tuple | None = None
    base = 0

    def finished(group: list[Any]) -> bool:
        return bool(group[2] and not (no_eos and group[3]))

    for batch in rows.batches():
        n = batch.num_rows
        if n == 0:
            continue
        starts = _group_starts(batch, rows.mode, previous)
        match = _row_filter(batch, base, rows, sel)
        eos = _eos_trained(batch, rows.convention["eos_id"]) if no_eos else np.zeros(n, dtype=bool)
        cut = np.flatnonzero(starts)
        head = int(cut[0]) if len(cut) else n
        if pending is not None:
            pending[1] += head
            pending[2] |= bool(match[:head].any())
            pending[3] |= bool(eos[:head].any())
            if len(cut):
                if finished(pending):
                    yield np.array([pending[0]]), np.array([pending[1]])
                pending = None
        if len(cut):
            matched = np.logical_or.reduceat(match, cut)
            trains_eos = np.logical_or.reduceat(eos, cut)
            ok = matched & ~trains_eos if no_eos else matched
            stops = np.append(cut[1:], n)
            done = np.flatnonzero(ok[:-1])
            if len(done):
                yield base + cut[done], base + stops[done]
            pending = [base + int(cut[-1]), base + n, bool(matched[-1]), bool(trains_eos[-1])]
        if rows.mode == "exploded":
            last = n - 1
            previous = (
                batch.column("source_file")[last].as_py(),
                int(batch.column("source_line")[last].as_py()),
                int(batch.column("position")[last].as_py()),
            )
        base += n
    if pending is not None and finished(pending):
        yield np.array([pending[0]]), np.array([pending[1]])


def choose(rows: Rows, sel: Selection) -> list[tuple[int, int]]:
    """The ``(first, stop)`` row ranges of the examples to show, in row order."""
    if sel.random is None:
        chosen: list[tuple[int, int]] = []
        for firsts, stops in _matching_groups(rows, sel):
            chosen.extend(zip(firsts.tolist(), stops.tolist(), strict=True))
            if sel.limit is not None and len(chosen) >= sel.limit:
                return chosen[: sel.limit]
        return chosen
    firsts, stops = _all_groups(rows, sel)
    pick = sorted(random.Random(sel.seed).sample(range(len(firsts)), min(sel.random, len(firsts))))
    return [(int(firsts[i]), int(stops[i])) for i in pick]


def _all_groups(rows: Rows, sel: Selection) -> tuple[np.ndarray, np.ndarray]:
    parts = list(_matching_groups(rows, sel))
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# -- rows, independent of the label convention -------------------------------------------


@dataclass
class Row:
    """One stored row, with its labels in one convention-free form.

    Attributes:
        index: the row's number in the build (0-based, over all shards).
        input_ids: the ids the model reads.
        targets: per position ``t``, the id that position is trained to predict,
            or -100 (the shifted convention: ``--labels hf`` rows are shifted here).
        target_id: exploded rows: the one trained token, after ``input_ids``.
        extra: columns sftprep does not know (a later ``position_ids``, ...).
    """

    index: int
    source_file: str
    source_line: int
    input_ids: np.ndarray
    targets: np.ndarray
    truncated: bool = False
    boundary_adjusted: bool = False
    num_trained_tokens: int = 0
    target_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def next_ids(self) -> list[int | None]:
        """Per position, the token that follows it (what the model sees next)."""
        after = [int(i) for i in self.input_ids[1:]]
        return [*after, self.target_id]

    @property
    def trained_tokens(self) -> np.ndarray:
        """Per token ``j``: is it a trained target (predicted, with loss, from ``j - 1``)?"""
        flags = np.zeros(len(self.input_ids), dtype=bool)
        flags[1:] = self.targets[:-1] != IGNORE_INDEX
        return flags


class _Columns:
    """One record batch's columns as numpy, for pulling out single rows cheaply."""

    def __init__(self, batch: pa.RecordBatch):
        self.batch = batch
        self.names = batch.schema.names
        self._lists: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def ids(self, name: str, i: int) -> np.ndarray:
        if name not in self._lists:
            column = self.batch.column(name)
            self._lists[name] = (column.offsets.to_numpy(), column.values.to_numpy(zero_copy_only=False))
        offsets, values = self._lists[name]
        return values[offsets[i] : offsets[i + 1]]

    def value(self, name: str, i: int) -> Any:
        return self.batch.column(name)[i].as_py()


def _make_row(cols: _Columns, i: int, index: int, labels: str) -> Row:
    ids = cols.ids("input_ids", i)
    target_id = None
    if "target_id" in cols.names:
        target_id = int(cols.value("target_id", i))
        targets = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
        if len(ids):
            targets[-1] = target_id
    elif "labels" in cols.names and labels == "hf":
        targets = np.append(cols.ids("labels", i)[1:], IGNORE_INDEX)
    else:
        targets = cols.ids("target_ids", i)
    meta = {f.name: cols.value(f.name, i) if f.name in cols.names else None for f in META_FIELDS}
    extra = {n: cols.value(n, i) for n in cols.names if n not in KNOWN_COLUMNS}
    # Packed rows hold one source, line and flag per example: keep those lists as
    # they are (extra), and the first example's source as the row's.
    extra.update({k: v for k, v in meta.items() if isinstance(v, list)})
    first = {k: (v[0] if v else None) if isinstance(v, list) else v for k, v in meta.items()}
    return Row(
        index=index,
        source_file=first["source_file"] or "",
        source_line=int(first["source_line"] or 0),
        input_ids=ids,
        targets=targets,
        truncated=any(meta["truncated"]) if isinstance(meta["truncated"], list) else bool(meta["truncated"]),
        boundary_adjusted=any(meta["boundary_adjusted"])
        if isinstance(meta["boundary_adjusted"], list)
        else bool(meta["boundary_adjusted"]),
        num_trained_tokens=int(first["num_trained_tokens"] or 0),
        target_id=target_id,
        extra=extra,
    )


def fetch(
    rows: Rows, groups: list[tuple[int, int]], index: Sequence[tuple[int, int]] = ()
) -> Iterator[list[Row]]:
    """The rows of each chosen example, in order; with ``index``, only those row numbers.

    Stops reading as soon as the last wanted row is found.
    """
    want = [np.arange(a, b) for a, b in groups]
    flat = np.concatenate(want) if want else np.zeros(0, dtype=np.int64)
    owner = np.repeat(np.arange(len(groups)), [b - a for a, b in groups])
    if index:
        inside = _in_ranges(flat, index)
        flat, owner = flat[inside], owner[inside]
    labels = str(rows.convention.get("labels", "shifted"))
    current: list[Row] = []
    group = 0
    base = 0
    for batch in rows.batches():
        lo, hi = np.searchsorted(flat, [base, base + batch.num_rows])
        cols = _Columns(batch)
        for k in range(lo, hi):
            if owner[k] != group and current:
                yield current
                current = []
            group = owner[k]
            current.append(_make_row(cols, int(flat[k] - base), int(flat[k]), labels))
        base += batch.num_rows
        if hi == len(flat):
            break
    if current:
        yield current


def merge_exploded(group: list[Row]) -> Row:
    """The exploded rows of one example as one sequence row (the full ids, every target).

    Rows whose prefix is not a prefix of the longest one are left out of the
    targets; :func:`token_lines` shows them separately.
    """
    longest = max(group, key=lambda r: len(r.input_ids))
    ids = np.append(longest.input_ids, longest.target_id if longest.target_id is not None else [])
    ids = ids.astype(np.int64)
    targets = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
    for row in group:
        n = len(row.input_ids)
        if n and row.target_id is not None and np.array_equal(ids[:n], row.input_ids):
            targets[n - 1] = row.target_id
    first = group[0]
    return Row(
        first.index,
        first.source_file,
        first.source_line,
        ids,
        targets,
        first.truncated,
        first.boundary_adjusted,
        int((targets != IGNORE_INDEX).sum()),
        None,
        dict(first.extra),
    )


# -- token strings ------------------------------------------------------------------------

# Characters that would be invisible or would break the layout: control characters,
# odd spaces (U+00A0, U+2028, ...), zero-width characters, the BOM.
_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\xa0\xad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u2000-\u200f"
    "\u2028-\u202f\u205f-\u206f\u3000\u3164\ufeff]"
)
_SHOWN = {"\n": "↵", "\t": "⇥", "\r": "␍"}


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


def visible(text: str, newlines: bool = True) -> list[tuple[str, bool]]:
    """Split text into (piece, is_escape) parts with whitespace made visible.

    ``"a\\tb\\n"`` -> ``[("a", False), ("⇥", True), ("b", False), ("↵", True), ("\\n", False)]``:
    a newline shows as ``↵`` and, with ``newlines``, still breaks the line.
    """
    parts: list[tuple[str, bool]] = []
    pos = 0
    for match in _INVISIBLE.finditer(text):
        if match.start() > pos:
            parts.append((text[pos : match.start()], False))
        ch = match.group(0)
        parts.append((_SHOWN.get(ch) or _escape(ch), True))
        if ch == "\n" and newlines:
            parts.append(("\n", False))
        pos = match.end()
    if pos < len(text):
        parts.append((text[pos:], False))
    return parts


def escape_piece(piece: str) -> str:
    """A vocabulary piece on one line: ``"Ġworld"``, ``"▁the"``, ``"<0x0A>"`` stay; ``"\\n"`` -> ``\\n``."""
    out = piece.replace(" ", "␣")
    return _INVISIBLE.sub(
        lambda m: {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(m.group(0)) or _escape(m.group(0)), out
    )


class Pieces:
    """Token strings: vocabulary pieces and decoded text, per token.

    Args:
        tokenizer: the build's tokenizer, or None to show bare ids.
    """

    def __init__(self, tokenizer: Tokenizer | None):
        self.tok = tokenizer
        decoder = tokenizer.get_added_tokens_decoder() if tokenizer else {}
        self.special = {i for i, t in decoder.items() if t.special}

    def vocab(self, ids: Sequence[int] | np.ndarray) -> list[str | None]:
        """The vocabulary piece of each id (None for ids the tokenizer does not have)."""
        if self.tok is None:
            return [None] * len(ids)
        return [self.tok.id_to_token(int(i)) for i in ids]

    def texts(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """The text each token adds when the row is decoded; ``"".join(...)`` is the decoded row.

        Decoding token by token would cut multi-byte characters in half (byte-level
        BPE splits "世" over two tokens); a decode stream gives the character to the
        token that completes it, and "" to the ones before.
        """
        if self.tok is None:
            return [f" {int(i)}" if k else str(int(i)) for k, i in enumerate(ids)]
        try:
            from tokenizers.decoders import DecodeStream
        except ImportError:  # tokenizers < 0.21: close, but cuts characters split over tokens
            return [self.tok.decode([int(i)], skip_special_tokens=False) for i in ids]
        stream = DecodeStream(skip_special_tokens=False)
        out = []
        for i in ids:
            try:
                out.append(stream.step(self.tok, int(i)) or "")
            except Exception:  # an id outside the vocabulary: show it, start afresh
                out.append(f"<id {int(i)}?>")
                stream = DecodeStream(skip_special_tokens=False)
        return out


# -- drawing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Look:
    """How to draw: colour (a terminal) or plain text with ``[[`` ``]]`` markers, and the width."""

    colour: bool = False
    width: int = 80

    def style(self, name: str, trained: bool = False) -> str:
        """A rich style for a part of the view ("" when plain); trained text gets a green background."""
        if not self.colour:
            return ""
        fg = {
            "prompt": "dim",
            "text": "black",
            "special": "bold magenta",
            "escape": "cyan",
            "header": "bold blue",
            "warn": "bold red",
            "bar": "green",
            "trained": "bold green",
        }[name]
        if trained:
            fg = {"escape": "blue", "prompt": "black"}.get(name, fg)
            return f"{fg} on {_TRAINED_BACKGROUND}"
        return fg


# A light green that keeps black text and a leading or trailing space visible.
_TRAINED_BACKGROUND = "dark_sea_green2"

OPEN, CLOSE = "[[", "]]"


def _breaks(plain: str, width: int) -> list[int]:
    """Where to break a line of text so no piece is wider than ``width`` cells.

    Breaks go after a space when there is one in reach, else anywhere; no
    character is dropped, so joining the pieces gives back the line exactly.
    """
    cuts: list[int] = []
    start, used, after_space = 0, 0, -1
    for pos, ch in enumerate(plain):
        w = cell_len(ch)
        if used + w > width and pos > start:
            cut = after_space if after_space > start else pos
            cuts.append(cut)
            used = cell_len(plain[cut:pos])
            start, after_space = cut, -1
        used += w
        if ch == " ":
            after_space = pos + 1
    return cuts


def wrap(text: Text, width: int) -> list[Text]:
    """Split on newlines, then fold each line to ``width`` cells (styles kept)."""
    lines = text.split("\n", allow_blank=True)
    if len(lines) > 1 and not lines[-1].plain:
        lines.pop()  # the text ended with a newline: no empty line after it
    out: list[Text] = []
    for line in lines:
        out.extend(line.divide(_breaks(line.plain, width)) if line.plain else [line])
    return out


def _rule(title: str, look: Look) -> list[Text]:
    """``── title ─────``, the title folded onto more lines when it is too long."""
    style = look.style("header")
    lines = wrap(Text("── " + title + " ", style=style), look.width)
    lines[-1].append("─" * max(0, look.width - lines[-1].cell_len), style=style)
    return lines


def _where(row: Row) -> str:
    lines = row.extra.get("source_line")
    if isinstance(lines, list):  # a packed row: one line per example
        return f"{row.source_file}:{','.join(map(str, lines))}"
    return f"{row.source_file}:{row.source_line}"


def _header(row: Row, look: Look, rows: str | None = None) -> list[Text]:
    n = len(row.input_ids)
    trained = int((row.targets != IGNORE_INDEX).sum())
    parts = [rows or f"row {row.index}", _where(row), f"{n:,} tokens, {trained:,} trained"]
    parts += [
        name
        for name, on in (("truncated", row.truncated), ("boundary adjusted", row.boundary_adjusted))
        if on
    ]
    meta = {f.name for f in META_FIELDS}  # packed rows' per-example lists: shown above
    parts += [f"{k}={_short(v)}" for k, v in row.extra.items() if k not in meta and not _per_position(v, n)]
    bad = _label_mismatches(row)
    if bad:
        parts.append(f"{bad} label{'s' * (bad != 1)} ≠ next token!")
    return _rule(" · ".join(parts), look)


def _per_position(value: Any, n: int) -> bool:
    return isinstance(value, list) and len(value) == n


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label_mismatches(row: Row) -> int:
    """Trained positions whose stored label is not the next token: a broken build."""
    nxt = np.array([-1 if i is None else i for i in row.next_ids], dtype=np.int64)
    trained = row.targets != IGNORE_INDEX
    return int((trained & (row.targets != nxt)).sum())


def _segments(row: Row, pieces: Pieces) -> list[tuple[str, bool, bool]]:
    """The decoded row as (text, trained, special) runs."""
    texts = pieces.texts(row.input_ids)
    trained = row.trained_tokens
    special = [int(i) in pieces.special for i in row.input_ids]
    runs: list[tuple[str, bool, bool]] = []
    for j, piece in enumerate(texts):
        key = (bool(trained[j]), special[j])
        if runs and runs[-1][1:] == key:
            runs[-1] = (runs[-1][0] + piece, *key)
        else:
            runs.append((piece, *key))
    return runs


def text_view(row: Row, pieces: Pieces, look: Look) -> list[Text]:
    """A row as decoded text: trained spans in colour, or between ``[[`` and ``]]``."""
    body = Text()
    was_trained = False
    for text, trained, special in _segments(row, pieces):
        if not look.colour and trained != was_trained:
            body.append(OPEN if trained else CLOSE)
        was_trained = trained
        base = look.style("special" if special else "text" if trained else "prompt", trained)
        escape = look.style("escape", trained)
        for part, escaped in visible(text):
            body.append(part, style=(escape if escaped and not special else base))
    if was_trained and not look.colour:
        body.append(CLOSE)
    return [*_header(row, look), *wrap(body, look.width)]


def _fit(text: str, width: int) -> str:
    """Pad or cut to ``width`` cells: ``"ĠInternational"`` at 8 -> ``"ĠInter…"``."""
    if cell_len(text) <= width:
        return text + " " * (width - cell_len(text))
    out, used = "", 0
    for ch in text:
        if used + cell_len(ch) > width - 1:
            break
        out += ch
        used += cell_len(ch)
    return out + "…" + " " * (width - 1 - used)


_PIECE = 16  # cells for a token string in the token table


def token_lines(row: Row, pieces: Pieces, look: Look, title: str | None = None) -> Iterator[Text]:
    """One line per position: what the model reads, what it must predict, whether that is trained.

    ``pos  id  token  →  next_id  next_token  trained``; "trained" says ``yes``,
    or ``yes (label N)`` when the stored label is not the next token.
    """
    ids = [int(i) for i in row.input_ids]
    vocab = pieces.vocab([*ids, *([row.target_id] if row.target_id is not None else [])])
    extra = {k: v for k, v in row.extra.items() if _per_position(v, len(ids))}
    pw = max(3, len(str(len(ids))))
    iw = max(5, *(len(str(i)) for i in ids)) if ids else 5
    yield from _header(row, look, title)
    head = f"{'pos':>{pw}}  {'id':>{iw}}  {'token':<{_PIECE}}    {'next':>{iw}}  {'next token':<{_PIECE}}  trained"
    yield Text(head + "".join(f"  {k}" for k in extra), style=look.style("header"))
    for t, nxt in enumerate(row.next_ids):
        trained = row.targets[t] != IGNORE_INDEX
        line = Text(f"{t:>{pw}}  {ids[t]:>{iw}}  ")
        line.append(
            _fit(_piece(vocab[t], ids[t]), _PIECE),
            style=look.style("special") if ids[t] in pieces.special else None,
        )
        if nxt is None:
            line.append(" " * (8 + iw + _PIECE) + "-")
        else:
            style = look.style("trained" if trained else "prompt")
            line.append(f"  → {nxt:>{iw}}  {_fit(_piece(vocab[t + 1], nxt), _PIECE)}  ", style=style)
            flag = "-" if not trained else "yes" if row.targets[t] == nxt else f"yes (label {row.targets[t]})"
            line.append(flag, style=(look.style("warn") if flag.startswith("yes (") else style))
        for values in extra.values():
            line.append(f"  {values[t]}")
        yield line


def _piece(piece: str | None, token_id: int) -> str:
    return escape_piece(piece) if piece is not None else f"#{token_id}"


def _span_title(group: list[Row]) -> str:
    first, last = group[0].index, group[-1].index
    contiguous = last - first + 1 == len(group)
    if len(group) == 1:
        return f"row {first}"
    if contiguous:
        return f"rows {first}–{last}"
    return "rows " + ", ".join(str(r.index) for r in group)


def exploded_view(group: list[Row], pieces: Pieces, look: Look) -> list[Text]:
    """The exploded rows of one example: ``position  prefix → target``, prefixes elided in the middle."""
    whole = merge_exploded(group)
    texts = pieces.texts(whole.input_ids)
    cells = _cumulative_cells(texts)
    first = group[0]
    title = f"{_span_title(group)} · {_where(first)} · {len(group)} trained token{'s' * (len(group) != 1)}"
    flags = [
        name
        for name, on in (("truncated", first.truncated), ("boundary adjusted", first.boundary_adjusted))
        if on
    ]
    lines = _rule(" · ".join([title, *flags]), look)
    shown = []
    for row in group:
        n = len(row.input_ids)
        if n < len(texts) and np.array_equal(whole.input_ids[:n], row.input_ids):
            shown.append((row, texts, cells))
        else:  # not a prefix of the example's longest row: decode it on its own
            own = pieces.texts([*row.input_ids, row.target_id or 0])
            shown.append((row, own, _cumulative_cells(own)))
    targets = []
    for row, row_texts, _ in shown:
        target = Text("" if look.colour else OPEN)
        _append_visible(target, row_texts[len(row.input_ids)], look, trained=True)
        targets.append(target.append("" if look.colour else CLOSE))
    room = min(24, max(t.cell_len for t in targets))  # one budget for all, so the prefixes line up
    pw = max(3, len(str(len(whole.input_ids))))
    for (row, row_texts, row_cells), target in zip(shown, targets, strict=True):
        n = len(row.input_ids)
        line = Text(f"{n:>{pw}}  ")
        line.append_text(
            _elide(row_texts, row_cells, n, look.width - pw - 5 - max(room, target.cell_len), look)
        )
        lines.append(line.append(" → ").append_text(target))
    return lines


def _cumulative_cells(texts: list[str]) -> np.ndarray:
    """``cells[k]``: the width of ``texts[:k]`` on one line (escapes included)."""
    widths = [sum(cell_len(p) for p, _ in visible(t, newlines=False)) for t in texts]
    return np.concatenate([[0], np.cumsum(widths, dtype=np.int64)])


def _append_visible(text: Text, piece: str, look: Look, trained: bool = False) -> None:
    style, escape = look.style("text" if trained else "prompt", trained), look.style("escape", trained)
    for part, escaped in visible(piece, newlines=False):
        text.append(part, style=(escape if escaped else style))


def _elide(texts: list[str], cells: np.ndarray, n: int, budget: int, look: Look) -> Text:
    """The prefix ``texts[:n]`` on one line: whole if it fits in ``budget`` cells, else head…⟨N tokens⟩…tail.

    ``cells`` (from :func:`_cumulative_cells`) makes this cheap for every row of a long example.
    """
    budget = max(budget, 24)
    out = Text()
    if cells[n] <= budget:
        _append_visible(out, "".join(texts[:n]), look)
        return out
    half = (budget - len(f"…⟨{n} tokens⟩…")) // 2
    head = int(np.searchsorted(cells[: n + 1], half, side="right")) - 1  # longest head within half
    tail = max(head, int(np.searchsorted(cells[: n + 1], cells[n] - half, side="left")))
    _append_visible(out, "".join(texts[:head]), look)
    out.append(f"…⟨{tail - head} tokens⟩…", style=look.style("escape"))
    _append_visible(out, "".join(texts[tail:n]), look)
    return out


def row_json(row: Row, pieces: Pieces) -> dict[str, Any]:
    """One stored row for scripts: ids, token strings, decoded pieces and the trained mask.

    ``trained[j]`` is 1 when token ``j`` is a trained target (predicted, with loss,
    from position ``j - 1``); the same in every label convention.
    """
    ids = [int(i) for i in row.input_ids]
    out: dict[str, Any] = {
        "row": row.index,
        "source_file": row.source_file,
        "source_line": row.source_line,
        "truncated": row.truncated,
        "boundary_adjusted": row.boundary_adjusted,
        "num_trained_tokens": row.num_trained_tokens,
        "input_ids": ids,
        "tokens": pieces.vocab(ids) if pieces.tok else None,
    }
    if row.target_id is None:
        out["text"] = pieces.texts(ids) if pieces.tok else None
        out["trained"] = row.trained_tokens.astype(int).tolist()
    else:
        texts = pieces.texts([*ids, row.target_id]) if pieces.tok else None
        out["text"] = texts[:-1] if texts else None
        out["position"] = len(ids)
        out["target_id"] = row.target_id
        out["target_token"] = pieces.vocab([row.target_id])[0] if pieces.tok else None
        out["target_text"] = texts[-1] if texts else None
    out.update(row.extra)
    return out


# -- statistics ---------------------------------------------------------------------------


def _nearest_rank(sorted_values: np.ndarray, q: float) -> int:
    """The q-quantile as a value that occurs: ``sorted[ceil(q * n) - 1]``."""
    return int(sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)])


def histogram(values: np.ndarray, bins: int = 10) -> list[tuple[int, int, int]]:
    """Counts of integer values in about ``bins`` bins of a round width: ``(low, high, count)``.

    ``[3, 5, 12, 18]`` in 4 bins -> ``[(0, 4, 1), (5, 9, 1), (10, 14, 1), (15, 19, 1)]``.
    """
    if len(values) == 0:
        return []
    lo, hi = int(values.min()), int(values.max())
    raw = max(1, math.ceil((hi - lo + 1) / bins))
    step = next(m * 10**e for e in range(20) for m in (1, 2, 5) if m * 10**e >= raw)
    start = lo // step * step
    counts = np.bincount((values - start) // step)
    return [(start + k * step, start + (k + 1) * step - 1, int(c)) for k, c in enumerate(counts)]


def compute_stats(rows: Rows, sel: Selection) -> dict[str, Any]:
    """Figures over the selected rows (all rows when nothing is filtered), JSON-ready.

    Lengths are per example (a sequence row; an exploded example's prefix + target).
    Build-wide counts (skips, drops) come from the manifest.
    """
    firsts, stops = _all_groups(rows, sel)
    lengths, trained, truncated, adjusted, owners = [], [], [], [], []
    n_rows, base = 0, 0
    for batch in rows.batches():
        idx = np.arange(base, base + batch.num_rows)
        owner = np.searchsorted(firsts, idx, side="right") - 1
        keep = (owner >= 0) & (idx < stops[np.maximum(owner, 0)]) if len(firsts) else np.zeros(len(idx), bool)
        if sel.index:
            keep &= _in_ranges(idx, sel.index)
        base += batch.num_rows
        if not keep.any():
            continue
        n_rows += int(keep.sum())
        lengths.append(_lengths(batch, rows.mode)[keep])
        trained.append(batch.column("num_trained_tokens").to_numpy(zero_copy_only=False)[keep])
        truncated.append(_flags(batch.column("truncated"))[keep])
        adjusted.append(_flags(batch.column("boundary_adjusted"))[keep])
        owners.append(owner[keep])
    cat = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype)  # noqa: E731
    owner_all = cat(owners, np.int64)
    groups, first_of = np.unique(owner_all, return_index=True)
    per_example = np.zeros(len(groups), dtype=np.int64)
    np.maximum.at(per_example, np.searchsorted(groups, owner_all), cat(lengths, np.int64))
    tokens = int(per_example.sum())
    trained_tokens = int(cat(trained, np.int64).sum())
    ordered = np.sort(per_example)
    max_length = rows.max_length
    return {
        "output": rows.name,
        "selection": bool(sel.index or sel.source or sel.lines or sel.where),
        "rows": n_rows,
        "examples": len(groups),
        "tokens": tokens,
        "trained_tokens": trained_tokens,
        "trained_fraction": trained_tokens / tokens if tokens else 0.0,
        "length": None
        if not len(ordered)
        else {
            "min": int(ordered[0]),
            "median": float(np.median(ordered)),
            "p95": _nearest_rank(ordered, 0.95),
            "max": int(ordered[-1]),
        },
        "histogram": [{"from": a, "to": b, "count": c} for a, b, c in histogram(per_example)],
        "max_length": max_length,
        "at_max_length": int((per_example == max_length).sum()) if max_length else 0,
        "truncated": int(cat(truncated, bool)[first_of].sum()),
        "boundary_adjusted": int(cat(adjusted, bool)[first_of].sum()),
        "build_counts": (rows.manifest or {}).get("counts"),
        "label_convention": rows.convention,
        "tokenizer": (rows.manifest or {}).get("tokenizer"),
    }


_CONVENTIONS = {
    ("sequence", "shifted"): "shifted (input_ids, target_ids, loss_mask): no shift in the loss",
    ("sequence", "hf"): "hf (input_ids, attention_mask, labels): the model shifts in its loss",
    ("exploded", "shifted"): "exploded (input_ids = prefix, target_id): a row per trained token",
}


def stats_view(stats: dict[str, Any], look: Look) -> list[Text]:
    """:func:`compute_stats` figures as aligned lines, with a length histogram."""
    lines = _rule(f"{stats['output']}{' (selected rows)' if stats['selection'] else ''}", look)

    def add(label: str, *values: str) -> None:
        pieces = [p for v in values for p in wrap(Text(v), max(20, look.width - _LABEL))]
        for k, piece in enumerate(pieces):
            line = Text(f"{label if k == 0 else '':<{_LABEL}}", style=look.style("header"))
            lines.append(line.append_text(piece))

    rows, examples, limit, at = stats["rows"], stats["examples"], stats["max_length"], stats["at_max_length"]
    add("rows", f"{rows:,}" + (f" from {examples:,} examples" if rows != examples else ""))
    fraction = stats["trained_fraction"]
    add("tokens", f"{stats['tokens']:,}, of which {stats['trained_tokens']:,} trained ({fraction:.1%})")
    length = stats["length"]
    if length:
        add(
            "length",
            f"min {length['min']:,} · median {length['median']:,g} · p95 {length['p95']:,} · "
            f"max {length['max']:,} tokens",
        )
        lines += _histogram_lines(stats["histogram"], look)
    share = f" ({at / examples:.1%})" if examples else ""
    add(
        "max length",
        f"{limit:,}: {at:,} example{'s' * (at != 1)} at the limit{share}" if limit else "not set",
    )
    add("flagged", f"truncated {stats['truncated']:,} · boundary adjusted {stats['boundary_adjusted']:,}")
    counts = stats["build_counts"]
    if counts:
        skipped = ", ".join(f"{k} {v:,}" for k, v in (counts.get("skipped") or {}).items())
        add(
            "records",
            f"{counts['records_read']:,} read · skipped {counts.get('skipped_total', 0):,}"
            f"{f' ({skipped})' if skipped else ''} · dropped as too long {counts['dropped_too_long']:,}",
        )
        add(
            "build",
            f"truncated {counts['truncated']:,} · boundary adjusted {counts['boundary_adjusted']:,} · "
            f"EOS in text {counts.get('eos_in_text', 0):,} · double BOS {counts.get('double_bos_removed', 0):,}",
        )
    conv = stats["label_convention"]
    key = (conv.get("mode", "sequence"), "shifted" if conv.get("mode") == "exploded" else conv.get("labels"))
    add("labels", _CONVENTIONS.get(key, json.dumps(conv)))
    add("eos", f"{conv.get('eos_token')} ({conv.get('eos_id')}) · ignore index {conv.get('ignore_index')}")
    tok = stats["tokenizer"]
    if tok:
        added = f" · added {', '.join(tok['added_tokens'])}" if tok.get("added_tokens") else ""
        add("tokenizer", tok["name"], f"vocab {tok['vocab_size']:,} · sha256 {tok['sha256'][:12]}{added}")
    return lines


_LABEL = 12  # cells for the labels of the stats view


def _histogram_lines(bins: list[dict[str, int]], look: Look) -> list[Text]:
    labels = [f"{b['from']:,}–{b['to']:,}" for b in bins]
    lw = max(len(s) for s in labels)
    cw = max(len(f"{b['count']:,}") for b in bins)
    room = max(10, look.width - _LABEL - lw - cw - 4)
    top = max(b["count"] for b in bins) or 1
    out = []
    for label, b in zip(labels, bins, strict=True):
        eighths = round(b["count"] / top * room * 8)
        bar = "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]
        line = Text(" " * _LABEL + f"{label:>{lw}} │")
        line.append(f"{bar:<{room}}", style=look.style("bar"))
        out.append(line.append(f" {b['count']:>{cw},}"))
    return out


# -- the whole command --------------------------------------------------------------------


@dataclass(frozen=True)
class InspectOptions:
    """What ``sftprep inspect`` shows.

    Attributes:
        selection: which rows.
        view: ``text`` (decoded rows), ``tokens`` (one line per position) or ``stats``.
        format: ``text`` or ``json`` (one object per row, or one for the stats).
        look: colour and width.
    """

    selection: Selection = field(default_factory=Selection)
    view: str = "text"
    format: str = "text"
    look: Look = field(default_factory=Look)


def inspect(
    rows: Rows, options: InspectOptions, tokenizer: Tokenizer | None, log: Callable[[str], None] | None = None
) -> Iterator[Text | str]:
    """Everything ``sftprep inspect`` prints: rich ``Text`` lines, or JSON strings (one a line).

    Raises:
        ConfigError: a condition the build cannot meet (``max-length`` without a limit).
    """
    say = log or (lambda message: None)
    look, sel = options.look, options.selection
    if options.view not in VIEWS or options.format not in FORMATS:
        raise ConfigError(f"unknown view '{options.view}' or format '{options.format}'")
    if options.view == "stats":
        stats = compute_stats(rows, sel)
        if options.format == "json":
            yield json.dumps(stats, ensure_ascii=False, sort_keys=True)
        else:
            yield from stats_view(stats, look)
        return
    pieces = Pieces(tokenizer)
    shown = 0
    for group in fetch(rows, choose(rows, sel), sel.index):
        shown += 1
        if options.format == "json":
            for row in group:
                yield json.dumps(row_json(row, pieces), ensure_ascii=False)
        elif rows.mode == "exploded":
            if options.view == "tokens":
                yield from token_lines(merge_exploded(group), pieces, look, _span_title(group))
            else:
                yield from exploded_view(group, pieces, look)
        elif options.view == "tokens":
            yield from token_lines(group[0], pieces, look)
        else:
            yield from text_view(group[0], pieces, look)
    if not shown:
        say(f"{rows.name}: no rows match")
