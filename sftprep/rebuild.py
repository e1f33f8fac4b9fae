"""``sftprep verify --sources``: rebuild a build from its inputs and compare, row by row.

The row rules (:mod:`sftprep.rowcheck`) cannot see rows that are wrong but
consistent, such as a prompt mask off by one position in every row. The
rebuild can: the inputs named in the manifest are hashed (they must be
unchanged), built again with the recorded tokenizer, template and options
into a temporary directory (:func:`sftprep.build.run_build`), and the
rebuild's ``content_sha256`` compared with that of the rows as they are now.
Only when they differ are the rows read side by side to name the first
differing position of each row and column.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sftprep.arrays import ranges, to_numpy
from sftprep.build import run_build
from sftprep.config import BuildConfig
from sftprep.errors import SftprepError
from sftprep.shards import Build, Problem, open_shard, row_source, sha256_of, shard_batches

__all__ = ["compare_rebuild", "rebuild_config"]


def rebuild_config(manifest: dict[str, Any], output: str, tokenizer: str | None = None) -> BuildConfig:
    """The recorded build options, writing to ``output`` (and with ``tokenizer``, if given)."""
    recorded = dict(manifest.get("config") or {})
    known = {f.name for f in dataclasses.fields(BuildConfig)}
    options = {k: v for k, v in recorded.items() if k in known}
    options["inputs"] = tuple(options.get("inputs") or ())
    options["output"] = output
    if tokenizer is not None:
        options["tokenizer"] = None if tokenizer == "default" else tokenizer
    return BuildConfig(**options)


def _inputs_problems(manifest: dict[str, Any]) -> list[Problem]:
    problems = []
    for entry in manifest.get("inputs") or []:
        name = entry.get("name", "?")
        if name == "-":
            problems.append(Problem("sources", "the build read stdin: it cannot be read again"))
            continue
        try:
            found = sha256_of(name)
        except (SftprepError, OSError) as exc:
            problems.append(Problem("sources", f"input {name}: cannot read it: {exc}"))
            continue
        if entry.get("sha256") and found != entry["sha256"]:
            problems.append(Problem("sources", f"input {name} changed since the build (its sha256 differs)"))
    return problems


def compare_rebuild(
    build: Build, rows_sha256: str | None, tokenizer: str | None, log: Callable[[str], None]
) -> Iterator[tuple[Problem, int]]:
    """Rebuild ``build`` from its inputs and yield ``(problem, count)`` for what differs.

    Args:
        build: the build.
        rows_sha256: the content_sha256 of its rows as they are now (None: some are unreadable);
            the rows are compared one by one only when the rebuild's differs.
        tokenizer: rebuild with this tokenizer instead of the recorded one.
        log: progress notes.
    """
    manifest = build.manifest
    changed = _inputs_problems(manifest)
    if changed:
        yield from ((p, 1) for p in changed)
        yield Problem("sources", "rows not rebuilt: the inputs are not the ones the build read"), 1
        return
    scratch = tempfile.mkdtemp(prefix="sftprep-rebuild-")
    try:
        config = rebuild_config(manifest, str(Path(scratch) / "rebuild"), tokenizer)
        log(f"rebuilding from {len(config.inputs)} input(s) to compare")
        try:
            again = run_build(config).manifest
        except SftprepError as exc:
            yield Problem("sources", f"the rebuild failed: {exc}"), 1
            return
        yield from _manifest_problems(manifest, again)
        if rows_sha256 is None or again.get("content_sha256") != rows_sha256:
            yield from _row_problems(build.directory, manifest, Path(scratch) / "rebuild", again)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _manifest_problems(old: dict[str, Any], new: dict[str, Any]) -> Iterator[tuple[Problem, int]]:
    def names(m):
        return [(i.get("name"), i.get("sha256")) for i in m.get("inputs") or []]

    if names(old) != names(new):
        yield Problem("sources", f"the rebuild read other inputs: {names(new)} (the build: {names(old)})"), 1
    for key, value in sorted((old.get("counts") or {}).items()):
        if (new.get("counts") or {}).get(key) != value:
            yield (
                Problem(
                    "sources", f"counts.{key}: the build says {value}, the rebuild {new['counts'].get(key)}"
                ),
                1,
            )


def _rows(directory: Path, manifest: dict[str, Any]) -> Iterator[tuple[str, pa.RecordBatch]]:
    for shard in manifest["shards"]:
        path = directory / shard["filename"]
        for batch in shard_batches(open_shard(path)):
            yield shard["filename"], batch


def aligned(
    a: Iterator[tuple[str, pa.RecordBatch]], b: Iterator[tuple[str, pa.RecordBatch]]
) -> Iterator[tuple[str, pa.RecordBatch | None, pa.RecordBatch | None]]:
    """Two row streams cut into pieces of equal length: ``(a's shard, a_rows, b_rows)``.

    When one stream ends first, the other's remaining rows come with None.
    """
    name_a, cur_a = next(a, ("", None))
    _, cur_b = next(b, ("", None))
    while cur_a is not None or cur_b is not None:
        if cur_a is None or cur_b is None:
            yield name_a, cur_a, cur_b
            if cur_a is not None:
                name_a, cur_a = next(a, ("", None))
            else:
                _, cur_b = next(b, ("", None))
            continue
        n = min(cur_a.num_rows, cur_b.num_rows)
        yield name_a, cur_a.slice(0, n), cur_b.slice(0, n)
        cur_a = cur_a.slice(n) if n < cur_a.num_rows else None
        cur_b = cur_b.slice(n) if n < cur_b.num_rows else None
        if cur_a is None:
            name_a, cur_a = next(a, (name_a, None))
        if cur_b is None:
            _, cur_b = next(b, ("", None))


def _row_problems(directory, manifest, rebuilt, again) -> Iterator[tuple[Problem, int]]:
    start = 0
    pieces = aligned(_rows(directory, manifest), _rows(rebuilt, again))
    try:
        for shard, mine, theirs in pieces:
            if mine is None or theirs is None:
                extra = (mine or theirs).num_rows  # type: ignore[union-attr]
                where = "the build has" if theirs is None else "the rebuild has"
                yield (
                    Problem("sources", f"{where} {extra:,} more rows here", shard=shard or None, row=start),
                    extra,
                )
                start += mine.num_rows if mine is not None else 0
                continue
            for row, column, position, message in differences(mine, theirs):
                yield (
                    Problem(
                        "sources",
                        message,
                        shard=shard,
                        row=start + row,
                        column=column,
                        position=position,
                        source=row_source(mine, row),
                    ),
                    1,
                )
            start += mine.num_rows
    except SftprepError as exc:
        yield Problem("sources", f"cannot compare rows: {exc}", row=start), 1


def _flat_values(column: pa.Array) -> np.ndarray:
    flat = column.flatten()
    if pa.types.is_string(flat.type) or pa.types.is_large_string(flat.type):
        return np.asarray(flat.to_pylist(), dtype=object)
    return to_numpy(flat)


def differences(a: pa.RecordBatch, b: pa.RecordBatch) -> Iterator[tuple[int, str, int | None, str]]:
    """``(row, column, position, message)`` for the first difference of each row and column.

    ``a`` and ``b`` have the same number of rows; a column only one of them has
    is one difference at row 0.
    """
    for name in a.schema.names:
        if name not in b.schema.names:
            yield 0, name, None, "the rebuild has no such column"
            continue
        ca, cb = a.column(name), b.column(name)
        if pa.types.is_list(ca.type) and pa.types.is_list(cb.type):
            yield from _list_differences(name, ca, cb)
        else:
            bad = (
                to_numpy(pc.fill_null(pc.not_equal(ca, cb), True))
                if ca.type == cb.type
                else np.ones(len(ca), bool)
            )
            for row in np.flatnonzero(bad).tolist():
                yield row, name, None, f"the build has {ca[row].as_py()!r}, the rebuild {cb[row].as_py()!r}"


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _list_differences(name: str, ca: pa.Array, cb: pa.Array) -> Iterator[tuple[int, str, int | None, str]]:
    la = np.diff(to_numpy(ca.offsets).astype(np.int64))
    lb = np.diff(to_numpy(cb.offsets).astype(np.int64))
    same_len = la == lb
    bad_rows: dict[int, tuple[int | None, str]] = {}
    for row in np.flatnonzero(~same_len).tolist():
        bad_rows[row] = (None, f"{la[row]} values in the build, {lb[row]} in the rebuild")
    rows = np.flatnonzero(same_len)
    if len(rows):
        oa = to_numpy(ca.offsets).astype(np.int64) - int(ca.offsets[0].as_py())
        ob = to_numpy(cb.offsets).astype(np.int64) - int(cb.offsets[0].as_py())
        va, vb = _flat_values(ca), _flat_values(cb)
        ia, ib = ranges(oa[rows], la[rows]), ranges(ob[rows], la[rows])
        differ = va[ia] != vb[ib]
        where = np.flatnonzero(differ)
        owner = np.repeat(rows, la[rows])[where]
        seen, first = np.unique(owner, return_index=True)
        for row, k in zip(seen.tolist(), where[first].tolist(), strict=True):
            pos = int(ia[k] - oa[row])
            bad_rows[row] = (pos, f"the build has {_py(va[ia[k]])!r}, the rebuild {_py(vb[ib[k]])!r}")
    for row in sorted(bad_rows):
        at, message = bad_rows[row]
        yield row, name, at, message
