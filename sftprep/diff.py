"""Compare two builds example by example: ``sftprep diff A B``.

Rows are matched by where they came from, not by their position, so a build
that skipped a record still lines up with one that did not:

* the key of an example is ``(source_file, source_line, turn)`` (``turn`` only
  when the build has that column), plus an occurrence number for the rare
  input that yields two examples with one key;
* packed rows are taken apart first: each example in a packed row is keyed by
  its own entry in the row's ``source_file`` / ``source_line`` lists, so a
  packed build lines up with an unpacked one, whatever the packing order;
* exploded rows (one row per trained token) are put back together into their
  example first.

Each example is compared in a form that does not depend on how it is stored
(shifted, hf or exploded labels; padding dropped): its token ids, and the text
of its trained tokens, decoded with each build's own tokenizer. That is what
makes two tokenizers comparable: every example's ids differ, but its trained
text should not. :func:`diff_builds` reads each build once to hash every
example, and once more only to fetch the few examples it shows in full.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from sftprep.arrays import to_numpy
from sftprep.labels import IGNORE_INDEX
from sftprep.shards import Build, open_shard, read_build, shard_batches

__all__ = ["DiffReport", "Example", "diff_builds", "examples", "manifest_changes"]

Key = tuple[str, int, Any, int]


@dataclass
class Example:
    """One example of a build, convention-free.

    Attributes:
        key: ``(source_file, source_line, turn, occurrence)``.
        row: the build's row it is in (its first row, for exploded rows).
        ids: its token ids, without padding.
        trained: per token, whether it is a trained target (predicted, with loss, from the token before).
    """

    key: Key
    row: int
    ids: np.ndarray
    trained: np.ndarray


def _lengths(column: pa.Array) -> np.ndarray:
    return np.diff(to_numpy(column.offsets).astype(np.int64))


def _column(batch: pa.RecordBatch, name: str) -> list[Any] | None:
    return batch.column(name).to_pylist() if name in batch.schema.names else None


def _sequence_examples(
    batch: pa.RecordBatch, labels: str, first_row: int
) -> Iterator[tuple[Any, Any, Any, int, np.ndarray, np.ndarray]]:
    """``(file, line, turn, row, ids, trained)`` for every example of a batch of sequence rows."""
    ids_col = batch.column("input_ids")
    lengths = _lengths(ids_col)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = to_numpy(ids_col.flatten())
    trained = np.zeros(len(ids), dtype=bool)
    if labels == "hf":
        trained = to_numpy(batch.column("labels").flatten()) != IGNORE_INDEX
    else:
        on = to_numpy(batch.column("target_ids").flatten()) != IGNORE_INDEX
        trained[1:] = on[:-1]
        trained[offsets[:-1][lengths > 0]] = False  # a row's first token follows the row before
    files, lines, turns = _column(batch, "source_file"), _column(batch, "source_line"), _column(batch, "turn")
    assert files is not None and lines is not None
    if "seq_lengths" in batch.schema.names:
        seq = batch.column("seq_lengths").to_pylist()
    elif "attention_mask" in batch.schema.names:
        mask = to_numpy(batch.column("attention_mask").flatten()).astype(np.int64)
        real = np.add.reduceat(mask, offsets[:-1]) if len(mask) else np.zeros(0, np.int64)
        seq = [[int(n)] if length else [0] for n, length in zip(real, lengths, strict=True)]
    else:
        seq = [[int(n)] for n in lengths]
    for r, parts in enumerate(seq):
        start = int(offsets[r])
        for k, n in enumerate(parts):
            file, line = files[r], lines[r]
            turn = turns[r] if turns is not None else None
            if isinstance(file, list):
                file, line = file[k], line[k]
                turn = turn[k] if isinstance(turn, list) else turn
            part_trained = trained[start : start + n].copy()
            if len(part_trained):
                part_trained[0] = False
            yield file, line, turn, first_row + r, ids[start : start + n], part_trained
            start += n


class _Exploded:
    """Puts exploded rows (prefix -> one target) back together into examples, across batches."""

    def __init__(self) -> None:
        self.pending: list[Any] | None = None  # [file, line, turn, row, prefix ids, target, positions]

    def add(
        self, batch: pa.RecordBatch, first_row: int
    ) -> Iterator[tuple[Any, Any, Any, int, np.ndarray, np.ndarray]]:
        ids_col = batch.column("input_ids")
        lengths = _lengths(ids_col)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        ids = to_numpy(ids_col.flatten())
        targets = to_numpy(batch.column("target_id"))
        files, lines, turns = (
            _column(batch, "source_file"),
            _column(batch, "source_line"),
            _column(batch, "turn"),
        )
        assert files is not None and lines is not None
        for r in range(batch.num_rows):
            turn = turns[r] if turns is not None else None
            p = self.pending
            if p is not None and (p[0], p[1], p[2]) == (files[r], lines[r], turn) and lengths[r] > p[6][-1]:
                p[4], p[5] = ids[offsets[r] : offsets[r + 1]], int(targets[r])
                p[6].append(int(lengths[r]))
                continue
            if p is not None:
                yield self._example(p)
            self.pending = [
                files[r],
                lines[r],
                turn,
                first_row + r,
                ids[offsets[r] : offsets[r + 1]],
                int(targets[r]),
                [int(lengths[r])],
            ]

    def flush(self) -> Iterator[tuple[Any, Any, Any, int, np.ndarray, np.ndarray]]:
        if self.pending is not None:
            yield self._example(self.pending)
            self.pending = None

    @staticmethod
    def _example(p: list[Any]) -> tuple[Any, Any, Any, int, np.ndarray, np.ndarray]:
        ids = np.append(p[4], p[5]).astype(np.int64)
        trained = np.zeros(len(ids), dtype=bool)
        trained[p[6]] = True
        return p[0], p[1], p[2], p[3], ids, trained


def examples(build: Build) -> Iterator[Example]:
    """Every example of a build, in row order (see the module docstring for keys)."""
    convention = build.manifest.get("label_convention") or {}
    labels, exploded = convention.get("labels", "shifted"), convention.get("mode") == "exploded"
    seen: dict[tuple[Any, Any, Any], int] = {}
    rows = 0
    joiner = _Exploded()
    for shard in build.manifest["shards"]:
        for batch in shard_batches(open_shard(build.directory / shard["filename"])):
            parts = joiner.add(batch, rows) if exploded else _sequence_examples(batch, labels, rows)
            for file, line, turn, row, ids, trained in parts:
                n = seen.get((file, line, turn), 0)
                seen[(file, line, turn)] = n + 1
                yield Example((file, line, turn, n), row, ids, trained)
            rows += batch.num_rows
    for file, line, turn, row, ids, trained in joiner.flush():
        n = seen.get((file, line, turn), 0)
        seen[(file, line, turn)] = n + 1
        yield Example((file, line, turn, n), row, ids, trained)


@dataclass
class Shown:
    """An example shown in full: how it differs, and both versions (None where it is missing)."""

    key: Key
    kind: str  # only_in_a, only_in_b, ids, span
    a: Example | None = None
    b: Example | None = None
    a_text: list[str] = field(default_factory=list)
    b_text: list[str] = field(default_factory=list)


@dataclass
class DiffReport:
    """What :func:`diff_builds` found.

    Attributes:
        counts: examples ``same``, ``only_in_a``, ``only_in_b``, with different
            ``ids``, with a different trained ``span`` (its text).
        changes: manifest differences that explain them (tokenizer, template, options, inputs).
        shown: the first ``limit`` differing examples, in full.
    """

    a: str
    b: str
    counts: dict[str, int] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    shown: list[Shown] = field(default_factory=list)

    @property
    def differing(self) -> int:
        """Examples that are not the same on both sides."""
        return (
            self.counts.get("only_in_a", 0) + self.counts.get("only_in_b", 0) + self.counts.get("changed", 0)
        )

    @property
    def same(self) -> bool:
        return not any(self.counts.get(k) for k in ("only_in_a", "only_in_b", "ids", "span"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": self.a, "b": self.b, "same": self.same, "differing": self.differing, "counts": self.counts, "changes": self.changes,
            "shown": [{"key": _key_text(s.key), "kind": s.kind,
                       "a_row": s.a.row if s.a else None, "b_row": s.b.row if s.b else None,
                       "a": s.a_text, "b": s.b_text} for s in self.shown],
        }  # fmt: skip


def _key_text(key: Key) -> str:
    file, line, turn, n = key
    return f"{file}:{line}" + (f" turn {turn}" if turn is not None else "") + (f" (#{n + 1})" if n else "")


def _file_names(build: Build) -> Any:
    """How a build's source_file values are matched: by base name when those are unique among its inputs.

    Two builds of the same file given by different paths (``data/x.jsonl``,
    ``/abs/data/x.jsonl``) still line up; inputs sharing a base name keep their path.
    """
    names = [str(i.get("name", "")) for i in build.manifest.get("inputs") or []]
    bases = [n.replace("\\", "/").rsplit("/", 1)[-1] for n in names]
    if len(set(bases)) != len(bases):
        return lambda name: name
    return lambda name: str(name).replace("\\", "/").rsplit("/", 1)[-1]


class _Side:
    """One build, read as hashed examples."""

    def __init__(self, build: Build):
        self.build = build
        self.tokenizer = _tokenizer(build)
        self.name_of = _file_names(build)

    def keyed(self) -> Iterator[tuple[Key, Example]]:
        for ex in examples(self.build):
            file, line, turn, n = ex.key
            key = (self.name_of(file), line, turn, n)
            ex.key = key
            yield key, ex

    def span(self, ex: Example, exact: bool) -> bytes:
        """What the example trains on, for comparing.

        With one tokenizer on both sides (``exact``): the trained ids, span by
        span (where the prompt before them grew or shrank does not matter, a
        span one token longer does). With two: the trained tokens' text,
        special tokens left out and white space normalised, since each
        tokenizer spells EOS and a leading space its own way (the manifest
        change explains those).
        """
        if exact or self.tokenizer is None:
            ids = np.where(ex.trained, ex.ids.astype(np.int64), -1)  # -1 between spans
            keep = ex.trained | np.append(ex.trained[1:], False)
            return ids[keep].tobytes()
        text = self.tokenizer.decode(ex.ids[ex.trained].tolist(), skip_special_tokens=True)
        return " ".join(text.split()).encode()

    def fingerprint(self, ex: Example, exact: bool) -> tuple[bytes, bytes]:
        ids = hashlib.blake2b(ex.ids.astype(np.int64).tobytes(), digest_size=12).digest()
        return ids, hashlib.blake2b(self.span(ex, exact), digest_size=12).digest()


def _tokenizer(build: Build) -> Any:
    from sftprep.view.source import open_rows, view_tokenizer

    tokenizer, _notes = view_tokenizer(open_rows(build.directory))
    return tokenizer


def diff_builds(a: str, b: str, limit: int = 5) -> DiffReport:
    """Compare builds ``a`` and ``b`` example by example (see the module docstring).

    Args:
        a / b: the builds' directories or URLs.
        limit: show this many differing examples in full; the rest are counted.

    Raises:
        InputError: a build that cannot be read.
    """
    side_a, side_b = _Side(read_build(a)), _Side(read_build(b))
    report = DiffReport(a, b, changes=manifest_changes(side_a.build.manifest, side_b.build.manifest))
    counts = dict.fromkeys(("same", "only_in_a", "only_in_b", "ids", "span", "changed"), 0)
    ta, tb = (s.build.manifest.get("tokenizer") or {} for s in (side_a, side_b))
    exact = (ta.get("sha256"), ta.get("added_tokens")) == (tb.get("sha256"), tb.get("added_tokens"))
    left = {key: side_a.fingerprint(ex, exact) for key, ex in side_a.keyed()}
    wanted: dict[Key, Shown] = {}
    for key, ex in side_b.keyed():
        mine = left.pop(key, None)
        if mine is None:
            counts["only_in_b"] += 1
            kind = "only_in_b"
        else:
            ids_b, span_b = side_b.fingerprint(ex, exact)
            kind = "span" if span_b != mine[1] else "ids" if ids_b != mine[0] else "same"
            counts["ids"] += ids_b != mine[0]
            counts["span"] += span_b != mine[1]
            counts["same"] += kind == "same"
            counts["changed"] += kind != "same"
        if kind != "same" and len(wanted) < limit:
            wanted[key] = Shown(key, kind, b=ex)
    counts["only_in_a"] = len(left)
    for key in left:
        if len(wanted) >= limit:
            break
        wanted[key] = Shown(key, "only_in_a")
    if wanted:
        for key, ex in side_a.keyed():
            if key in wanted:
                wanted[key].a = ex
    report.counts = counts
    report.shown = list(wanted.values())
    for shown in report.shown:
        shown.a_text = _render(side_a, shown.a)
        shown.b_text = _render(side_b, shown.b)
    return report


def _render(side: _Side, ex: Example | None) -> list[str]:
    """An example as ``sftprep inspect`` shows it: decoded, trained spans between ``[[`` and ``]]``."""
    if ex is None:
        return []
    from sftprep.view.draw import Look
    from sftprep.view.pieces import Pieces
    from sftprep.view.rows import Row
    from sftprep.view.text import text_view

    targets = np.full(len(ex.ids), IGNORE_INDEX, dtype=np.int64)
    targets[:-1] = np.where(ex.trained[1:], ex.ids[1:], IGNORE_INDEX)
    row = Row(ex.row, str(ex.key[0]), int(ex.key[1]), ex.ids, targets)
    return [t.plain for t in text_view(row, Pieces(side.tokenizer), Look(colour=False, width=100))]


def manifest_changes(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What differs between two manifests, in the terms that explain differing rows.

    Example: ``["tokenizer: ../gpt2 (sha256 e88dafdf) -> ../mistral (sha256 6c1e0b2f)"]``.
    """
    changes = []
    ta, tb = a.get("tokenizer") or {}, b.get("tokenizer") or {}
    if ta.get("sha256") != tb.get("sha256") or ta.get("added_tokens") != tb.get("added_tokens"):
        changes.append(f"tokenizer: {ta.get('name')} (sha256 {str(ta.get('sha256'))[:8]}) -> "
                       f"{tb.get('name')} (sha256 {str(tb.get('sha256'))[:8]})")  # fmt: skip
    pa_, pb = a.get("template") or {}, b.get("template") or {}
    for key in sorted(set(pa_) | set(pb)):
        if pa_.get(key) != pb.get(key):
            changes.append(f"template.{key}: {pa_.get(key)!r} -> {pb.get(key)!r}")
    ca, cb = a.get("config") or {}, b.get("config") or {}
    skip = {"inputs", "tokenizer", "shard_size", "batch_size"}  # inputs are compared by content below
    for key in sorted((set(ca) | set(cb)) - skip):
        if ca.get(key) != cb.get(key):
            changes.append(f"option {key}: {ca.get(key)!r} -> {cb.get(key)!r}")
    ia = [(i.get("name"), i.get("sha256")) for i in a.get("inputs") or []]
    ib = [(i.get("name"), i.get("sha256")) for i in b.get("inputs") or []]
    if [s for _, s in ia] != [s for _, s in ib]:
        changes.append(f"inputs: {_inputs_text(ia)} -> {_inputs_text(ib)}")
    if a.get("sftprep_version") != b.get("sftprep_version"):
        changes.append(f"sftprep version: {a.get('sftprep_version')} -> {b.get('sftprep_version')}")
    return changes


def _inputs_text(inputs: list[tuple[Any, Any]]) -> str:
    return ", ".join(f"{name} (sha256 {str(sha)[:8]})" for name, sha in inputs)
