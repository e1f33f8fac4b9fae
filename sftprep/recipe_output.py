"""Pass 2 of a recipe build: the sources' rows kept, split, repeated and ordered into the output.

:class:`Assembly` takes each source's scan (:class:`Scan`: per record, its
place, content key, verdict and split) and the rows of its ordinary unpacked
build, read memory-mapped; it drops duplicates and contaminated examples,
applies the weight (``mixture.py``), adds the ``source`` column and writes each
split through a :class:`SplitWriter` (packing and padding within the split).
See ``recipe_build.py`` for the whole flow.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sftprep import __version__
from sftprep.dedup import NgramIndex
from sftprep.digest import RowDigest
from sftprep.errors import DataError
from sftprep.labels import schema_for
from sftprep.manifest import FORMAT as MANIFEST_FORMAT
from sftprep.manifest import NAME as MANIFEST
from sftprep.manifest import REJECTS
from sftprep.mixture import copies, train_order
from sftprep.packing import Packer, packed_schema_for, pad_batch, pad_id_for, padded_schema
from sftprep.recipe import Recipe, Source
from sftprep.tokenizer import TokenizerInfo
from sftprep.writer import ShardWriter, with_metadata, write_json

__all__ = ["CONTAMINATED", "DUPLICATE", "DUPLICATES", "KEEP", "UNREAD", "Assembly", "Scan", "SplitWriter",
           "content_digest", "source_table"]  # fmt: skip

DUPLICATES = "duplicates.jsonl"
SPLITS = ("train", "validation")
# Rows per output batch taken from the mapped scratch rows. A page fault maps up to 64 KiB
# around the page (fault-around, which MADV_RANDOM does not stop on every kernel), so a
# scattered row costs that much per buffer (about 15 of them) until released: 256 such rows
# mapped up to 256 x 15 x 64 KiB = 240 MiB (measured: 241 MiB of file pages at 1M records),
# so scattered rows are copied FAULT_ROWS at a time: about 30 MiB.
TAKE_ROWS = 256
FAULT_ROWS = 32
# Rows whose columns are read before their pages are released, when the scan's verdicts are looked up.
LOOKUP_ROWS = 1 << 14
KEEP, DUPLICATE, CONTAMINATED, UNREAD = 0, 1, 2, 3  # a scanned record's verdict (UNREAD: left to the build)


@dataclass
class Scan:
    """What the scan (pass 1) found for one source: per record, in input order."""

    names: list[str]
    codes: np.ndarray  # uint64: file index << 40 | line or record number (ascending)
    keys: np.ndarray  # uint64 content keys
    verdict: np.ndarray  # int8: KEEP, DUPLICATE, CONTAMINATED, UNREAD (left to the build to reject)
    validation: np.ndarray  # bool


class _Mapped:
    """A source build's rows, memory-mapped: nothing is read into memory until taken.

    Pages read through a map stay resident while it is mapped, so reading a
    whole source would grow the process by its size; :meth:`release` tells the
    kernel to drop them (they come back from the page cache when read again),
    which keeps memory flat in the size of the source.
    """

    def __init__(self, directory: Path, manifest: dict[str, Any]):
        self.maps: list[mmap.mmap] = []
        tables = []
        for shard in manifest["shards"]:
            with open(directory / shard["filename"], "rb") as f:
                self.maps.append(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
            if hasattr(mmap, "MADV_RANDOM"):  # no read-ahead or fault-around: map only the pages read
                self.maps[-1].madvise(mmap.MADV_RANDOM)
            tables.append(pa.ipc.open_stream(pa.py_buffer(self.maps[-1])).read_all())
        self.table = pa.concat_tables(tables)

    def release(self) -> None:
        if not hasattr(mmap, "MADV_DONTNEED"):  # not on Windows: the pages then stay until unmapped
            return
        for m in self.maps:
            m.madvise(mmap.MADV_DONTNEED)


class SplitWriter:
    """One split's output: packing (within the split only), padding, the source column, shards."""

    def __init__(self, directory: Path, schema: pa.Schema, options: dict[str, Any], pad_id: int,
                 source_of: dict[str, str]):  # fmt: skip
        directory.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.options = options
        self.pad_id = pad_id
        self.source_of = source_of
        self.writer = ShardWriter(directory, schema, options.get("shard_size", 256 * 2**20))
        pack = options.get("pack", False)
        self.packer = Packer(options["max_length"], options.get("labels", "shifted"),
                             buffer_examples=options.get("pack_buffer", 4096)) if pack else None  # fmt: skip
        self.padding = options.get("pad_to") is not None or options.get("pad_to_multiple_of") is not None
        self.digest = RowDigest(schema)
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        for out in self.packer.add_rows(batch) if self.packer is not None else [batch]:
            self._write(out)

    def _write(self, batch: pa.RecordBatch) -> None:
        files = batch.column("source_file")
        if self.packer is not None:  # one list of sources per packed row, like source_file
            names = pa.array([self.source_of[f] for f in files.values.to_pylist()], pa.string())
            source = pa.ListArray.from_arrays(files.offsets, names)
        else:
            source = pa.array([self.source_of[f] for f in files.to_pylist()], pa.string())
        columns = [*batch.columns, source]
        names_ = [*batch.schema.names, "source"]
        batch = pa.RecordBatch.from_arrays(columns, names=names_)
        if self.padding:
            o = self.options
            length = o.get("max_length") if o.get("pad_to") == "max-length" else None
            batch = pad_batch(batch, self.pad_id, length, o.get("pad_to_multiple_of"), self.schema)
        batch = pa.RecordBatch.from_arrays(batch.columns, schema=self.schema)
        self.digest.update(batch)
        self.writer.write(batch)
        self.rows += batch.num_rows

    def finish(self, fingerprint: str) -> dict[str, Any]:
        if self.packer is not None:
            for out in self.packer.flush():
                self._write(out)
        shards = self.writer.finish(fingerprint_extra=fingerprint)
        return {"shards": shards, "rows": self.rows, "content_sha256": self.digest.hexdigest(),
                "packing": self.packer.stats.as_dict() if self.packer is not None else None}  # fmt: skip


class Assembly:
    """Pass 2: the sources' rows kept, split, repeated and ordered into the output's splits."""

    def __init__(self, recipe: Recipe, info: TokenizerInfo, first: dict[str, Any], root: Path):
        self.recipe = recipe
        self.options = recipe.build_options()
        self.root = root
        convention = dict(first["label_convention"])
        pack = self.options.get("pack", False)
        padded = self.options.get("pad_to") is not None or self.options.get("pad_to_multiple_of") is not None
        convention.update(packed=pack, padded=padded)
        labels = self.options.get("labels", "shifted")
        base = packed_schema_for(labels) if pack else schema_for("sequence", labels)
        if padded:
            base = padded_schema(base)
        base = base.append(pa.field("source", pa.list_(pa.string()) if pack else pa.string()))
        self.schema = with_metadata(base, convention)
        self.convention = convention
        self.pad_id = pad_id_for(info)
        self.source_of: dict[str, str] = {}
        self.splits = SPLITS if recipe.validation is not None else SPLITS[:1]
        self.writers: dict[str, SplitWriter] = {}
        self.per_source: list[dict[str, Any]] = []

    def _writer(self, split: str) -> SplitWriter:
        if split not in self.writers:
            directory = self.root / split if self.recipe.validation is not None else self.root
            self.writers[split] = SplitWriter(
                directory, self.schema, self.options, self.pad_id, self.source_of
            )
        return self.writers[split]

    def add(self, source: Source, scan: Scan, built: dict[str, Any], directory: Path) -> None:
        for name in scan.names:
            self.source_of[name] = source.name
        mapped = _Mapped(directory, built)
        verdict, validation, keys, lengths, trained, first = _lookup(scan, mapped)
        # An example is a record; it is one row, or one per trained turn (--turns each), which
        # share its verdict, split and copies and stay together in the order.
        starts = np.flatnonzero(first)
        counts = np.diff(np.append(starts, len(first)))
        verdict, validation, keys = verdict[starts], validation[starts], keys[starts]
        keep = verdict == KEEP
        train = np.flatnonzero(keep & ~validation)
        val = np.flatnonzero(keep & validation)
        del keep, validation
        train_keys = keys[train]
        del keys
        times = copies(train_keys, self.recipe.seed, source.weight)
        examples = {"train": train[train_order(train_keys, times, self.recipe.seed)], "validation": val}
        order = {split: _rows_of(starts, counts, chosen) for split, chosen in examples.items()}
        del train_keys, examples, starts, counts
        c = built["counts"]
        stats: dict[str, Any] = {
            "name": source.name, "weight": source.weight, "template": built["template"],
            "inputs": built["inputs"], "records_read": c["records_read"], "rejected": c["skipped_total"],
            "rejected_by_reason": c["skipped"], "dropped_too_long": c["dropped_too_long"],
            "truncated": c["truncated"], "boundary_adjusted": c["boundary_adjusted"], "duplicates": int((verdict == DUPLICATE).sum()),
            "contaminated": int((verdict == CONTAMINATED).sum()), "unique_train": len(train),
            "sampled_out": int((times == 0).sum()),
        }  # fmt: skip
        for split in self.splits:
            rows = order[split]
            stats[split] = {"examples": len(rows), "tokens": int(lengths[rows].sum()),
                            "trained_tokens": int(trained[rows].sum())}  # fmt: skip
            self._write(split, mapped, rows)
        del order, lengths, trained
        accounted = (stats["rejected"] + stats["dropped_too_long"] + stats["duplicates"] + stats["contaminated"]
                     + len(train) + len(val))  # fmt: skip
        if accounted != stats["records_read"]:
            raise DataError(f"source '{source.name}': {stats['records_read']} records read but "
                            f"{accounted} accounted for (please report this)")  # fmt: skip
        self.per_source.append(stats)

    def _write(self, split: str, mapped: _Mapped, rows: np.ndarray) -> None:
        writer = self._writer(split)
        batches = mapped.table.to_batches()  # zero-copy views of the memory-mapped shards
        starts = np.cumsum([0] + [b.num_rows for b in batches])
        for begin in range(0, len(rows), TAKE_ROWS):
            part = rows[begin : begin + TAKE_ROWS]
            if len(part) and part[-1] - part[0] == len(part) - 1:  # one run of rows: few pages
                writer.add(_take(batches, starts, part))
                mapped.release()
                continue
            # Scattered rows (the seeded order of repeats): each row faults in up to 64 KiB of
            # each of its ~15 buffers, so they are copied FAULT_ROWS at a time, released in
            # between, and joined into the same TAKE_ROWS-row batch as before.
            pieces = []
            for at in range(0, len(part), FAULT_ROWS):
                pieces.append(_take(batches, starts, part[at : at + FAULT_ROWS]))
                mapped.release()
            writer.add(pa.Table.from_batches(pieces).combine_chunks().to_batches()[0])

    def finish(self, built: list[dict[str, Any]], ngrams: NgramIndex | None, listed: bool) -> dict[str, Any]:
        inputs = {
            s.name: [i["name"] for i in m["inputs"]] for s, m in zip(self.recipe.sources, built, strict=True)
        }
        recorded = self.recipe.recorded(inputs)
        fingerprint = json.dumps(recorded, sort_keys=True)
        splits = {s: self._writer(s).finish(fingerprint) for s in self.splits}
        if self.recipe.validation is not None:
            write_json(self.root / "dataset_dict.json", {"splits": list(self.splits)})
        totals = _totals(self.per_source, splits)
        digest = (splits["train"]["content_sha256"] if len(splits) == 1
                  else content_digest({s: v["content_sha256"] for s, v in splits.items()}))  # fmt: skip
        manifest = {
            "format": MANIFEST_FORMAT, "sftprep_version": __version__, "recipe": recorded,
            "label_convention": self.convention, "tokenizer": built[0]["tokenizer"], "template": None,
            "sources": self.per_source, "splits": splits, "counts": totals,
            "columns": self.schema.names, "shards": splits["train"]["shards"] if len(splits) == 1 else [],
            "engine": self.options.get("engine", "local"), "content_sha256": digest,
            "rejects_file": REJECTS if totals["skipped_total"] else None,
            "duplicates_file": DUPLICATES if listed else None,
            "decontamination": {"ngram": ngrams.n, "eval_texts": ngrams.texts, "ngrams": len(ngrams.hashes)}
            if ngrams is not None else None,
            "packing": splits["train"]["packing"], "padding": None, "slice": None,
        }  # fmt: skip
        if len(splits) > 1:
            for name, split in splits.items():  # each split opens with `inspect out/<split>` too
                write_json(self.root / name / MANIFEST, {**manifest, "shards": split["shards"], "split": name,
                                                          "content_sha256": split["content_sha256"],
                                                          "packing": split["packing"]})  # fmt: skip
        return manifest


def content_digest(digests: dict[str, str]) -> str:
    """One digest of a split output: sha256 over ``split:digest`` lines, splits in order."""
    return hashlib.sha256("".join(f"{k}:{v}\n" for k, v in digests.items()).encode()).hexdigest()


def _totals(per_source: list[dict[str, Any]], splits: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Build-wide counts in the shape of a plain build's (``transform.Counts.as_dict``)."""
    skipped: dict[str, int] = {}
    for s in per_source:
        for reason, n in s["rejected_by_reason"].items():
            skipped[reason] = skipped.get(reason, 0) + n
    total = {k: sum(s[k] for s in per_source) for k in ("records_read", "dropped_too_long", "truncated",
             "boundary_adjusted", "duplicates", "contaminated", "sampled_out")}  # fmt: skip
    examples = sum(s[sp]["examples"] for s in per_source for sp in splits)
    return {
        **total, "examples_written": examples, "rows_written": sum(v["rows"] for v in splits.values()),
        "tokens": sum(s[sp]["tokens"] for s in per_source for sp in splits),
        "trained_tokens": sum(s[sp]["trained_tokens"] for s in per_source for sp in splits),
        "skipped": dict(sorted(skipped.items())), "skipped_total": sum(skipped.values()),
        "validation_examples": sum(s.get("validation", {}).get("examples", 0) for s in per_source),
    }  # fmt: skip


def source_table(manifest: dict[str, Any]) -> list[str]:
    """The per-source table of a recipe build's manifest, as lines (build summary, ``inspect --stats``)."""
    sources = manifest.get("sources") or []
    splits = list(manifest.get("splits") or {"train": None})
    head = ["source", "weight", "read", "rejected", "too long", "dup", "contam", "sampled out"]
    for split in splits:
        head += [f"{split} ex", f"{split} tokens", f"{split} trained"]
    rows = [head]
    for s in sources:
        row = [s["name"], f"{s['weight']:g}", s["records_read"], s["rejected"], s["dropped_too_long"],
               s["duplicates"], s["contaminated"], s["sampled_out"]]  # fmt: skip
        for split in splits:
            row += [s[split]["examples"], s[split]["tokens"], s[split]["trained_tokens"]]
        rows.append([f"{v:,}" if isinstance(v, int) else str(v) for v in row])
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    return ["  ".join(str(v).rjust(w) if i else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
            for r in rows]  # fmt: skip


def _rows_of(starts: np.ndarray, counts: np.ndarray, examples: np.ndarray) -> np.ndarray:
    """The rows of these examples, in their order (example ``e`` is ``counts[e]`` rows from ``starts[e]``)."""
    n = counts[examples]
    within = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    return np.repeat(starts[examples], n) + within


def _lookup(scan: Scan, mapped: _Mapped) -> tuple[np.ndarray, ...]:
    """Per built row: the scan's verdict, split and key, the row's tokens and trained tokens, and
    whether it is its record's first row (a conversation built one row per turn has several).

    One record batch at a time, so the temporaries (codes, positions) stay the size of
    a batch; what is kept is 1 + 1 + 8 + 4 + 4 bytes per row. Reading the columns maps
    their pages (the file names of ``source_file`` alone are tens of bytes a row), so
    they are released every ``LOOKUP_ROWS`` rows, not once at the end.
    """
    table = mapped.table
    n = table.num_rows
    verdict, validation = np.empty(n, np.int8), np.empty(n, bool)
    keys, lengths, trained = np.empty(n, np.uint64), np.empty(n, np.int32), np.empty(n, np.int32)
    first = np.empty(n, bool)
    names = pa.array(scan.names, pa.string())
    begin, last = 0, np.uint64(2**64 - 1)
    for batch in table.to_batches():
        end = begin + batch.num_rows
        files = pc.index_in(batch.column("source_file"), value_set=names).to_numpy(zero_copy_only=False)
        codes = files.astype(np.uint64) << np.uint64(40) | batch.column("source_line").to_numpy().astype(
            np.uint64
        )
        at = np.searchsorted(scan.codes, codes)
        assert np.array_equal(scan.codes[at], codes), "a built row has no scanned record"
        first[begin:end] = codes != np.concatenate([[last], codes[:-1]])
        last = codes[-1] if len(codes) else last
        verdict[begin:end], validation[begin:end], keys[begin:end] = (
            scan.verdict[at],
            scan.validation[at],
            scan.keys[at],
        )
        lengths[begin:end] = pc.list_value_length(batch.column("input_ids")).to_numpy()
        trained[begin:end] = batch.column("num_trained_tokens").to_numpy()
        if begin // LOOKUP_ROWS != end // LOOKUP_ROWS:
            mapped.release()
        begin = end
    mapped.release()
    assert not (verdict == UNREAD).any(), "a record the scan could not render was built"
    return verdict, validation, keys, lengths, trained, first


def _take(batches: list[pa.RecordBatch], starts: np.ndarray, rows: np.ndarray) -> pa.RecordBatch:
    """The rows at these indices, in this order, copied out of the batches that hold them.

    Each run of consecutive rows becomes one zero-copy slice, and only the slices are
    copied: ``take`` on list columns touched every page of the batches it took from,
    so random rows (the seeded order of repeats) mapped in the whole source.
    """
    chunk = np.searchsorted(starts, rows, side="right") - 1
    local = rows - starts[chunk]
    breaks = np.flatnonzero((np.diff(rows) != 1) | (np.diff(chunk) != 0)) + 1
    bounds = np.concatenate([[0], breaks, [len(rows)]])
    pieces = [batches[chunk[a]].slice(int(local[a]), int(b - a)) for a, b in itertools.pairwise(bounds)]
    return pa.Table.from_batches(pieces, schema=batches[0].schema).combine_chunks().to_batches()[0]
