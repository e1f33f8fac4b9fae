"""Build a recipe: many sources, one dataset (a ``DatasetDict`` when the recipe splits).

Two passes, so memory stays flat in the number and size of sources:

1. **Scan** (this process, no tokenizing): each source's records are rendered
   with the template its build binds, and each renderable record gets a content
   key (``mixture.content_key``). Exact duplicates and contaminated examples are
   marked and listed in ``duplicates.jsonl``, and the split is decided. What is
   kept per record is its place (file, line), key, verdict and split: 18 bytes in
   arrays, plus the dedup set (``dedup.py``).
2. **Build** each source with :func:`sftprep.build.run_build` into a scratch
   directory inside the staged output, unpacked (so ``--workers`` and
   ``--engine ray`` apply exactly as in any build), then **assemble**: read the
   scratch rows memory-mapped, drop, split, repeat and order them
   (``mixture.py``), add the ``source`` column, pack and pad each split on its
   own, and write. The scratch directory is removed before the output is
   committed.

Every record read is accounted for, per source: rejected, dropped as too long,
duplicate, contaminated, in validation, or in train (written ``copies`` times,
0 = sampled out by a weight below 1).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sftprep import __version__, storage
from sftprep.build import MANIFEST, MANIFEST_FORMAT, REJECTS, BuildResult, run_build
from sftprep.chat_formats import detect_format, to_messages
from sftprep.dedup import ExactDedup, NgramIndex
from sftprep.digest import RowDigest
from sftprep.errors import ConfigError, DataError, InputError, RecordError
from sftprep.labels import schema_for
from sftprep.mixture import content_key, copies, train_order, validation_mask
from sftprep.packing import Packer, packed_schema_for, pad_batch, pad_id_for, padded_schema
from sftprep.readers import InputFile, Record, expand_inputs
from sftprep.recipe import Recipe, Source
from sftprep.templates import bind_template, detect_template
from sftprep.tokenizer import TokenizerInfo, load_tokenizer
from sftprep.transform import bind_transform, resolve_templates
from sftprep.writer import ShardWriter, sha256_file, with_metadata, write_json

__all__ = ["DUPLICATES", "run_recipe"]

DUPLICATES = "duplicates.jsonl"
SPLITS = ("train", "validation")
KEEP, DUPLICATE, CONTAMINATED, UNREAD = 0, 1, 2, 3


@dataclass
class _Scan:
    """Pass 1 for one source: per record, in input order."""

    names: list[str]
    codes: np.ndarray  # uint64: file index << 40 | line or record number (ascending)
    keys: np.ndarray  # uint64 content keys
    verdict: np.ndarray  # int8: KEEP, DUPLICATE, CONTAMINATED, UNREAD (left to the build to reject)
    validation: np.ndarray  # bool


class _Listing:
    """duplicates.jsonl: every example dropped as a duplicate or as contaminated, with why."""

    def __init__(self, path: Path):
        self.path = path
        self.file: Any = None

    def add(self, source: str, record: Record, reason: str, detail: str) -> None:
        if self.file is None:
            self.file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        entry = {"source": source, "file": record.source, "line": record.number, "reason": reason,
                 "message": detail}  # fmt: skip
        self.file.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _texts(content: Any) -> tuple[list[Any], list[str]]:
    """(what the content key hashes, the texts decontamination reads) of a prepared example."""
    if isinstance(content, tuple):  # (prompt, target)
        return list(content), list(content)
    messages = content.messages
    return [[m["role"], m.get("content")] for m in messages], [str(m.get("content") or "") for m in messages]


def _scan(recipe: Recipe, source: Source, info: TokenizerInfo, dedup: ExactDedup | None,
          ngrams: NgramIndex | None, listing: _Listing) -> _Scan:  # fmt: skip
    config = recipe.source_config(source, "")
    names = expand_inputs(config.inputs)
    template, chat_spec = resolve_templates(config)
    codes, keys, verdicts = array("Q"), array("Q"), array("b")
    transform = None
    for f_index, name in enumerate(names):
        with InputFile(name, max_record_bytes=config.max_record_bytes, format=config.input_format) as f:
            for record in f.records():
                codes.append(f_index << 40 | record.number)
                if record.error is None and transform is None:
                    transform = bind_transform(config, info, record, None, template, chat_spec).transform
                try:
                    content = transform.prepare(record) if transform and record.error is None else None
                except RecordError:
                    content = None
                if content is None:
                    keys.append(0)
                    verdicts.append(UNREAD)
                    continue
                parts, texts = _texts(content)
                key = content_key(parts)
                keys.append(key)
                verdict, detail = KEEP, ""
                if dedup is not None and dedup.seen(key):
                    verdict, detail = DUPLICATE, "the same rendered text as an earlier example"
                elif ngrams is not None and (gram := ngrams.overlap(texts)) is not None:
                    verdict, detail = (
                        CONTAMINATED,
                        f"shares the {ngrams.n}-gram '{gram}' with an evaluation file",
                    )
                verdicts.append(verdict)
                if verdict != KEEP:
                    listing.add(
                        source.name, record, "duplicate" if verdict == DUPLICATE else "contaminated", detail
                    )
    key_array = np.frombuffer(keys, dtype=np.uint64) if len(keys) else np.zeros(0, np.uint64)
    verdict_array = np.frombuffer(verdicts, dtype=np.int8) if len(verdicts) else np.zeros(0, np.int8)
    # The split is decided among the examples that remain, so a count means that many examples.
    kept = np.flatnonzero(verdict_array == KEEP)
    validation = np.zeros(len(key_array), dtype=bool)
    validation[kept] = validation_mask(key_array[kept], recipe.seed, recipe.validation)
    code_array = np.frombuffer(codes, dtype=np.uint64) if len(codes) else np.zeros(0, np.uint64)
    return _Scan(names, code_array, key_array, verdict_array, validation)


def _eval_index(recipe: Recipe) -> NgramIndex | None:
    """The n-grams of the decontamination files' prompts and targets (fields detected as for a build)."""
    if not recipe.decontaminate:
        return None
    index = NgramIndex(recipe.ngram)
    for name in expand_inputs(recipe.decontaminate):
        with InputFile(name) as f:
            render: Callable[[dict], list[str]] | None = None
            for record in f.records():
                if record.error is not None:
                    continue
                fields = record.fields
                if render is None:
                    if detect_format(fields, {}) in ("messages", "sharegpt") or "history" in fields:
                        render = lambda r, w=record.where: [  # noqa: E731
                            str(m.get("content") or "") for m in to_messages(r, w).messages
                        ]
                    else:
                        renderer = bind_template(detect_template(fields, record.where), {}, {}, fields)
                        render = lambda r, w=record.where, rr=renderer: list(rr.render(r, w))  # noqa: E731
                try:
                    texts = render(fields)
                except RecordError:
                    continue
                for text in texts:
                    index.add(text)
    return index


def _check(recipe: Recipe) -> None:
    options = recipe.build_options()
    problems = []
    if options.get("mode", "sequence") != "sequence":
        problems.append("recipes build --mode sequence rows (weights and splits count examples)")
    if options.get("markers", "text") != "text":
        problems.append(
            "--markers special is not supported with --config (sources would add different tokens)"
        )
    if problems:
        raise ConfigError(f"{recipe.path}: " + "; ".join(problems))
    owner: dict[str, str] = {}
    for source in recipe.sources:
        recipe.source_config(source, "-").check()
        for name in expand_inputs(source.paths):
            if name in owner and owner[name] != source.name:
                raise ConfigError(
                    f"{recipe.path}: sources '{owner[name]}' and '{source.name}' both read {name}"
                )
            owner[name] = source.name
    if recipe.expected_inputs is not None:
        for name in owner:
            want = recipe.expected_inputs.get(name)
            if want is not None and not storage.is_url(name) and sha256_file(Path(name)) != want:
                raise InputError(f"{name} has changed since the build recorded in {recipe.path} "
                                 "(sha256 differs); pass --allow-changed-inputs to rebuild anyway")  # fmt: skip


def run_recipe(
    recipe: Recipe,
    output: str,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
    allow_changed_inputs: bool = False,
) -> BuildResult:
    """Build every source of a recipe into one output.

    Args:
        recipe: from :func:`sftprep.recipe.load_recipe` (with command-line overrides).
        output: the output directory (local).
        overwrite: replace an existing output once the new one is complete.
        log: called with one-line notes for the user.
        allow_changed_inputs: rebuild from a manifest even if an input's sha256 changed.

    Raises:
        SftprepError: any problem, phrased for the user; nothing is written.
    """
    log = log or (lambda message: None)
    if storage.is_url(output):
        raise ConfigError("--config builds write to a local directory (build the recipe, then upload it)")
    if allow_changed_inputs:
        recipe = replace(recipe, expected_inputs=None)
    _check(recipe)
    options = recipe.build_options()
    storage.check_output(output, overwrite)
    info = load_tokenizer(options.get("tokenizer"), eos=options.get("eos"))
    ngrams = _eval_index(recipe)
    dedup = ExactDedup() if recipe.exact else None
    with storage.staged_output(output, overwrite=overwrite) as staged:
        root = Path(staged.path)
        listing = _Listing(root / DUPLICATES)
        try:
            scans = []
            for source in recipe.sources:
                with _naming(source):
                    scans.append(_scan(recipe, source, info, dedup, ngrams, listing))
        finally:
            listing.close()
        work = root / ".sources"
        built = []
        for i, source in enumerate(recipe.sources):
            config = recipe.source_config(source, str(work / str(i)))
            with _naming(source):
                built.append(run_build(config, log=_prefixed(log, source.name)).manifest)
        assembly = _Assembly(recipe, info, built[0], root)
        for i, source in enumerate(recipe.sources):
            assembly.add(source, scans[i], built[i], work / str(i))
        manifest = assembly.finish(built, ngrams, listing.file is not None)
        _gather_rejects(work, len(recipe.sources), root / REJECTS)
        shutil.rmtree(work)
        write_json(root / MANIFEST, manifest)
        staged.commit()
    return BuildResult(Path(output), manifest)


@contextlib.contextmanager
def _naming(source: Source) -> Iterator[None]:
    """Option problems met while reading a source say which source (record errors name their file)."""
    try:
        yield
    except ConfigError as exc:
        raise ConfigError(f"source '{source.name}': {exc}") from None


def _prefixed(log: Callable[[str], None], name: str) -> Callable[[str], None]:
    return lambda message: log(f"{name}: {message}")


def _gather_rejects(work: Path, count: int, target: Path) -> None:
    parts = [work / str(i) / REJECTS for i in range(count) if (work / str(i) / REJECTS).exists()]
    if parts:
        with open(target, "wb") as out:
            for part in parts:
                out.write(part.read_bytes())


def _rows(directory: Path, manifest: dict[str, Any]) -> pa.Table:
    """A source build's rows, memory-mapped (nothing is read into memory until taken)."""
    tables = [pa.ipc.open_stream(pa.memory_map(str(directory / s["filename"]))).read_all()
              for s in manifest["shards"]]  # fmt: skip
    return pa.concat_tables(tables)


class _SplitWriter:
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


class _Assembly:
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
        self.writers: dict[str, _SplitWriter] = {}
        self.per_source: list[dict[str, Any]] = []

    def _writer(self, split: str) -> _SplitWriter:
        if split not in self.writers:
            directory = self.root / split if self.recipe.validation is not None else self.root
            self.writers[split] = _SplitWriter(
                directory, self.schema, self.options, self.pad_id, self.source_of
            )
        return self.writers[split]

    def add(self, source: Source, scan: _Scan, built: dict[str, Any], directory: Path) -> None:
        for name in scan.names:
            self.source_of[name] = source.name
        table = _rows(directory, built)
        files = pc.index_in(table["source_file"], value_set=pa.array(scan.names, pa.string()))
        codes = (files.to_numpy(zero_copy_only=False).astype(np.uint64) << np.uint64(40)) | table[
            "source_line"
        ].to_numpy().astype(np.uint64)
        at = np.searchsorted(scan.codes, codes)
        assert np.array_equal(scan.codes[at], codes), "a built row has no scanned record"
        verdict, keys, validation = scan.verdict[at], scan.keys[at], scan.validation[at]
        assert not (verdict == UNREAD).any(), "a record the scan could not render was built"
        keep = verdict == KEEP
        train = np.flatnonzero(keep & ~validation)
        val = np.flatnonzero(keep & validation)
        times = copies(keys[train], self.recipe.seed, source.weight)
        order = {"train": train[train_order(keys[train], times, self.recipe.seed)], "validation": val}
        lengths = pc.list_value_length(table["input_ids"]).to_numpy()
        trained = table["num_trained_tokens"].to_numpy()
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
            self._write(split, table, rows)
        accounted = (stats["rejected"] + stats["dropped_too_long"] + stats["duplicates"] + stats["contaminated"]
                     + len(train) + len(val))  # fmt: skip
        if accounted != stats["records_read"]:
            raise DataError(f"source '{source.name}': {stats['records_read']} records read but "
                            f"{accounted} accounted for (please report this)")  # fmt: skip
        self.per_source.append(stats)

    def _write(self, split: str, table: pa.Table, rows: np.ndarray) -> None:
        writer = self._writer(split)
        step = self.options.get("batch_size", 1024)
        for start in range(0, len(rows), step):
            for batch in table.take(pa.array(rows[start : start + step])).combine_chunks().to_batches():
                writer.add(batch)

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
    import hashlib

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
