"""The build: read -> render -> tokenize -> label -> write, streaming in batches.

:func:`run_build` is the one entry point (the CLI's ``build`` command is a thin
shell over it). Records flow through in batches of ``batch_size``; a
``transform.BatchTransform`` turns one batch of records into Arrow rows and a
list of rejected records, and holds no state between batches, so the same
transform can run wherever an engine (:mod:`sftprep.engines`: worker processes,
or Ray with ``--engine ray``) runs it; the build only asks the engine for the
results, in order. Packing, padding and writing happen here, in order, in this
process.

``--num-shards N --shard-index I`` builds one slice of the records: the
records are cut into batches of ``--batch-size`` as always, and batch ``k``
(counting from 0 over all inputs in order) belongs to slice ``k mod N``.
``sftprep merge`` (``merge.py``) puts the slices back together.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa

from sftprep import __version__, storage
from sftprep.chat import ChatTemplate
from sftprep.config import BuildConfig, default_workers, parse_max_errors
from sftprep.digest import RowDigest
from sftprep.engines import Engine, engine_for
from sftprep.engines.stream import Inputs, Located, Progress, batched, in_slice, untransformed
from sftprep.errors import ConfigError, DataError, OutputError, RecordError, counted
from sftprep.exports import convert_staged
from sftprep.labels import schema_for
from sftprep.manifest import FORMAT, REJECTS, SLICE_RULE, label_convention, write_manifest
from sftprep.packing import (
    Packer,
    packed_schema_for,
    pad_batch,
    pad_id_for,
    padded_schema,
)
from sftprep.readers import Record, expand_inputs, settle
from sftprep.templates import (
    Renderer,
    Template,
)
from sftprep.tokenizer import load_tokenizer
from sftprep.transform import (
    BatchResult,
    BatchTransform,
    Counts,
    Examples,
    bind_transform,
    resolve_templates,
)
from sftprep.writer import ShardWriter, with_metadata

__all__ = ["BuildConfig", "BuildResult", "check_rejected", "default_workers", "run_build"]


@dataclass
class BuildResult:
    output: Path | str  # a Path, or the URL as given for object storage
    manifest: dict[str, Any]


class _Rejects:
    """Handles rejected records: fail at once, or count and write them to a file."""

    def __init__(self, config: BuildConfig, directory: Path):
        self.config = config
        self.path = directory / REJECTS
        self.file: TextIO | None = None
        self.counts: Counter[str] = Counter()
        self.first: RecordError | None = None  # named when every record is rejected (no rejects file then)
        # A count stops the build at once (a rate can only be judged at the end: check_rejected).
        self.limit = parse_max_errors(config.max_errors)[0] if config.max_errors else None

    def handle(self, record: Record, error: RecordError) -> None:
        if self.config.on_error == "fail":
            raise error
        self.counts[error.reason] += 1
        self.first = self.first or error
        raw = record.raw if record.raw is not None else json.dumps(record.data, ensure_ascii=False)
        entry = {"source": record.source, "line": record.number, "reason": error.reason,
                 "field": error.field, "message": error.detail, "record": raw}  # fmt: skip
        try:
            if self.file is None:
                self.file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self.file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None
        total = sum(self.counts.values())
        if self.limit is not None and total > self.limit:
            raise DataError(
                f"{counted(total, 'record')} rejected, more than --max-errors {self.limit}; last: {error}"
            )

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def check_rejected(
    records_read: int, skipped: Mapping[str, int], max_errors: str | None, first: RecordError | None = None
) -> None:
    """A whole build's rejected records against ``--max-errors``, once it is read.

    Without ``--max-errors``, an empty dataset because every record was rejected
    is "no records" (exit 3); with it, the user said how many may go (an empty
    build included). A slice (``--num-shards``) is only part of a build: ``sftprep
    merge`` checks the sum of its slices.

    Args:
        records_read: the build's records (all slices' for a merge).
        skipped: rejected records per reason (ties in the order met).
        max_errors: the build's ``--max-errors``.
        first: the first record rejected, named when all were (the build, and its
            rejects file with it, is not written).

    Raises:
        DataError: more rejected than ``--max-errors`` allows, or all without it.
    """
    total = sum(skipped.values())
    if max_errors is not None:
        limit, rate = parse_max_errors(max_errors)
        if limit is not None and total > limit:  # a build stops at once; a merge finds it here
            raise DataError(f"{counted(total, 'record')} rejected, more than --max-errors {limit}")
        if rate is not None and records_read and total / records_read > rate:
            raise DataError(
                f"{total:,} of {counted(records_read, 'record')} rejected ({total / records_read:.2%}), "
                f"more than --max-errors {max_errors}"
            )
    elif records_read and total == records_read:
        reasons = ", ".join(f"{reason} {n:,}" for reason, n in Counter(skipped).most_common())
        example = f"; the first: {first}" if first is not None else ""
        raise DataError(
            f"all {counted(records_read, 'record')} rejected ({reasons}){example}; nothing written "
            "(--max-errors 100% accepts an empty build and keeps rejects.jsonl)"
        )


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def run_build(
    config: BuildConfig,
    log: Callable[[str], None] | None = None,
    advance: Callable[[int], None] | None = None,
    total_bytes: Callable[[int | None], None] | None = None,
    examples: Examples | None = None,
) -> BuildResult:
    """Run one build and return where it went and its manifest.

    Args:
        config: the build's options.
        log: called with one-line notes for the user (stderr in the CLI).
        advance: called with the number of input bytes consumed since last call.
        total_bytes: called once with the total input size (None if unknown).
        examples: what to learn about every record beside its rows (a recipe's content keys):
            ``examples.keyer`` runs with the transform, ``examples.add`` here, in input order.

    Raises:
        SftprepError: any problem, already phrased for the user.
    """
    config.check()
    progress = Progress(log, advance)
    if list(config.inputs).count("-") > 1:
        raise ConfigError("'-' (stdin) is given more than once: stdin can be read only once")
    engine = engine_for(config, progress)
    engine.check([name for name in config.inputs if name == "-"])  # stdin first, before anything reads it
    storage.check_output(config.output, config.overwrite, config.inputs)
    inputs = Inputs(expand_inputs(config.inputs), config, progress)
    engine.check(inputs.names)
    info = load_tokenizer(config.tokenizer, eos=config.eos)
    if config.tokenizer is None:
        progress.log("no --tokenizer given: using sftprep's small demo tokenizer (not for real training)")
    template, chat_spec = resolve_templates(config)
    size = inputs.total_bytes()
    if total_bytes is not None:
        total_bytes(size)
    with storage.staged_output(config.output, overwrite=config.overwrite) as staged:
        rejects = _Rejects(config, staged.path)
        stream = _Stream(config, info, (template, chat_spec), staged, rejects, progress)
        stream.inputs_size = size
        stream.examples = examples
        try:
            with _fewer_gc_pauses():
                stream.run(inputs, engine)
        finally:
            rejects.close()
        counts = stream.counts
        if config.num_shards == 1:  # a slice is part of a build: `sftprep merge` checks the whole
            check_rejected(counts.records_read, rejects.counts, config.max_errors, rejects.first)
        counts.skipped = rejects.counts
        manifest = _manifest(config, info, stream, engine.described(inputs), counts)
        if info.added_markers:
            info.tokenizer.save(str(staged.path / "tokenizer.json"))
        write_manifest(staged.path, manifest)
        if config.output_format != "arrow":  # the complete Arrow build, converted before it is committed
            manifest = convert_staged(staged.path, config.output_format)
        staged.commit()
    local = storage.local_path(config.output)
    return BuildResult(Path(local) if local is not None else config.output, manifest)


@contextlib.contextmanager
def _fewer_gc_pauses() -> Iterator[None]:
    """Collect garbage less often during the stream (restored afterwards).

    A build allocates millions of short-lived objects (token lists, records)
    but creates no reference cycles worth chasing; the default thresholds made
    the cyclic collector take about 7% of a build. Freezing what exists moves
    the start-up objects (tokenizer, templates) out of every collection.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


class _Stream:
    """The streaming loop: batches of records -> transform (maybe in workers) -> shards."""

    def __init__(self, config, info, templates, staged, rejects, progress):
        self.config = config
        self.info = info
        # What --template / --chat-template chose; both None: detect from the first record.
        self.template: Template | ChatTemplate | None = templates[0]
        self.chat_spec: str | None = templates[1]
        self.renderer: Renderer | None = None
        self.rejects = rejects
        self.progress = progress
        # Rows leave the transform unpacked (row_schema); packing and padding,
        # in this process and in order, turn them into what is written (schema).
        self.row_schema = schema_for(config.mode, config.labels)
        written = packed_schema_for(config.labels) if config.pack else self.row_schema
        self.padding = config.pad_to is not None or config.pad_to_multiple_of is not None
        if self.padding:
            written = padded_schema(written)
        self.schema = with_metadata(written, label_convention(config, info))
        self.writer = ShardWriter(staged.path, self.schema, config.shard_size, store=staged.store)
        self.packer = (
            Packer(config.max_length, config.labels, buffer_examples=config.pack_buffer)
            if config.pack
            else None
        )
        self.pad_id = pad_id_for(info)
        self.counts = Counts()
        self.examples: Examples | None = None  # see run_build
        self.inputs_size: int | None = None  # for the exploded-mode estimate
        self.digest = RowDigest(self.schema)

    def run(self, inputs: Inputs, engine: Engine) -> None:
        batches = enumerate(batched(inputs.records(), self.config.batch_size))
        # Records before the first good one cannot be rendered (no template yet): they are
        # all bad, so handling them needs no transform. Every slice binds the template to
        # the first good record of the whole input, so that all slices render alike.
        empty = True
        for index, batch in batches:
            empty = False
            batch = settle(batch)  # the rest are settled by the transform, in the workers
            first = next((r for r in batch if r.error is None), None)
            if first is None:
                if in_slice(index, self.config):
                    result = untransformed(batch)
                    if self.examples is not None:
                        result.examples = self.examples.keyer(batch, [None] * len(batch))
                    self._take(result)
                continue
            bound = self._bind(first)
            bound.keyer = self.examples.keyer if self.examples is not None else None
            transform = Located(bound)
            sample = None
            if self.config.mode == "exploded":
                sample = transform(batch)
                self._check_exploded_budget(sample, batch)
            results = engine.results(inputs, transform, itertools.chain([(index, batch)], batches), sample)
            try:
                for result in results:
                    self._take(result)
            finally:
                # On an error here (a bad record under --on-error fail) stop the engine now:
                # its worker pool, or the Ray job (and a Ray this build started).
                results.close()  # type: ignore[attr-defined]
            break
        if self.packer is not None:
            self._write(self.packer.flush())
            self.counts.rows_written = self.packer.stats.rows
        # Whatever the template: the same outcome with or without -t (README "Exit codes").
        if empty:
            raise DataError("the input holds no records")

    def _check_exploded_budget(self, sample: BatchResult, records: list[Record]) -> None:
        """Refuse an exploded build whose output would exceed ``--exploded-budget``.

        Exploded rows grow with the square of the target length, so the size is
        estimated before anything is written: the first batch's output bytes per
        input byte, times the input's size (its record count when it is stdin).
        """
        out_bytes = sum(b.nbytes for b in sample.batches)
        rows = sum(b.num_rows for b in sample.batches)
        in_bytes = sum(len(r.raw) if r.raw is not None else len(json.dumps(r.data)) for r in records)
        # A slice (--num-shards) writes about its share of the whole input.
        total = self.inputs_size / self.config.num_shards if self.inputs_size is not None else None
        if total is None or in_bytes == 0:
            factor, basis = 1.0, f"the first {counted(len(records), 'record')} (input size unknown)"
        else:
            factor, basis = max(1.0, total / in_bytes), f"the first {counted(len(records), 'record')}"
        est_bytes, est_rows = out_bytes * factor, rows * factor
        budget = self.config.exploded_budget
        if est_bytes > budget:
            raise ConfigError(
                f"exploded mode would write about {est_rows:,.0f} rows and {_human(est_bytes)} "
                f"(estimated from {basis}), over --exploded-budget {_human(budget)}: exploded rows grow "
                "with the square of the target length. Use --mode sequence (the same training pairs "
                "in one row per example), or raise --exploded-budget"
            )
        self.progress.log(
            f"exploded mode: about {est_rows:,.0f} rows, {_human(est_bytes)} (estimated from {basis})"
        )

    def _bind(self, first: Record) -> BatchTransform:
        bound = bind_transform(self.config, self.info, first, self.row_schema, self.template, self.chat_spec,
                               self.progress.log)  # fmt: skip
        self.template, self.renderer = bound.template, bound.renderer
        return bound.transform

    def _take(self, result: BatchResult) -> None:
        for record, error in result.rejects:
            self.rejects.handle(record, error)
        if self.examples is not None:
            self.examples.add(result.examples)
        for out in result.batches:
            self._write(self.packer.add_rows(out) if self.packer is not None else [out])
        self.counts.add(result.counts)

    def _write(self, batches: list[pa.RecordBatch]) -> None:
        for batch in batches:
            if self.padding:
                config = self.config
                length = config.max_length if config.pad_to == "max-length" else None
                batch = pad_batch(batch, self.pad_id, length, config.pad_to_multiple_of, self.schema)
            self.digest.update(batch)
            self.writer.write(batch)


def _manifest(config, info, stream: _Stream, inputs, counts) -> dict[str, Any]:
    shards = stream.writer.finish(fingerprint_extra=json.dumps(config.recorded(), sort_keys=True))
    template, renderer = stream.template, stream.renderer
    template_info: dict[str, Any] | None = None
    if isinstance(template, ChatTemplate):
        template_info = {"kind": "chat", "name": template.name, "sha256": template.sha256,
                         "train_on": config.train_on, "reads_clock": template.reads_clock}  # fmt: skip
    elif template is not None:
        template_info = {
            "kind": "pair",
            "name": template.name,
            "sha256": hashlib.sha256(template.source_text.encode()).hexdigest(),
            "prompt": template.prompt,
            "target": template.target,
            "fields": dict(renderer.paths) if renderer else {},
            "values": dict(renderer.values) if renderer else {},
        }
    return {
        "format": FORMAT,
        "output_format": "arrow",
        "sftprep_version": __version__,
        "config": config.recorded(),
        "label_convention": json.loads(stream.schema.metadata[b"sftprep"]),
        "tokenizer": info.identity(),
        "template": template_info,
        "inputs": inputs,
        "counts": counts.as_dict(),
        "columns": stream.schema.names,
        "shards": shards,
        "engine": config.engine,
        "content_sha256": stream.digest.hexdigest(),
        "slice": {"num_shards": config.num_shards, "shard_index": config.shard_index, "rule": SLICE_RULE}
        if config.num_shards > 1
        else None,
        "rejects_file": REJECTS if sum(counts.skipped.values()) else None,
        "packing": stream.packer.stats.as_dict() if stream.packer is not None else None,
        "padding": {"pad_id": stream.pad_id, "to": config.pad_to, "multiple_of": config.pad_to_multiple_of}
        if stream.padding
        else None,
    }
