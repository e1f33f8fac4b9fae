"""Check that a finished build is what its manifest says, row by row: ``sftprep verify``.

:func:`verify_build` runs, in order:

1. files: every shard the manifest lists is there, with its sha256 and row count;
2. schema: every shard has the columns and types the build's options give, and
   carries the manifest's label convention in its metadata;
3. rows: every record batch follows the row rules (:mod:`sftprep.rowcheck`),
   read once, memory-mapped and vectorised;
4. totals: the manifest's counts and ``content_sha256`` match the rows;
5. ``tokenizer=PATH``: the build was made with that tokenizer (sha256 of its JSON
   and the special tokens its config names);
6. ``sources=True``: the inputs are unchanged (sha256) and a rebuild with the
   recorded options gives the same rows (:mod:`sftprep.rebuild`), which catches
   rows that are wrong yet consistent (a mask off by one everywhere).

Nothing here raises for a broken build: every defect, a truncated shard
included, is a :class:`Problem`. Errors (:class:`~sftprep.errors.SftprepError`)
are for a build that cannot be checked at all (no manifest).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from sftprep.digest import RowDigest
from sftprep.errors import EXIT_PROBLEMS, SftprepError
from sftprep.labels import schema_for
from sftprep.packing import packed_schema_for, padded_schema
from sftprep.rowcheck import Layout, RowChecker
from sftprep.shards import Build, Problem, open_shard, read_build, row_source, sha256_of, shard_batches

__all__ = ["EXIT_PROBLEMS", "Build", "Problem", "VerifyReport", "read_build", "verify_build"]


@dataclass
class VerifyReport:
    """What :func:`verify_build` found.

    Attributes:
        problems: the first ``max_problems`` problems, in build order.
        total: how many problems there are in all.
        checks: the checks that ran.
        rows / bytes: rows and shard bytes read.
    """

    build: str
    problems: list[Problem] = field(default_factory=list)
    total: int = 0
    checks: list[str] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0
    max_problems: int = 20

    @property
    def ok(self) -> bool:
        return self.total == 0

    def add(self, problem: Problem, count: int = 1) -> None:
        self.total += count
        if len(self.problems) < self.max_problems:
            self.problems.append(problem)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "max_problems"}
        out["ok"] = self.ok
        return out


def verify_build(
    location: str | Path,
    *,
    sources: bool = False,
    tokenizer: str | None = None,
    max_problems: int = 20,
    log: Callable[[str], None] | None = None,
) -> VerifyReport:
    """Check a build against its manifest and the row rules (see the module docstring).

    Args:
        location: the build's directory or URL.
        sources: also re-read the inputs and rebuild every row to compare.
        tokenizer: check the build was made with this tokenizer (a path or a name).
        max_problems: keep at most this many problems in the report (all are counted).
        log: called with progress notes.

    Returns:
        The report; ``report.ok`` when everything holds.

    Raises:
        InputError: the build has no readable manifest.
    """
    started = time.perf_counter()
    build = read_build(location)
    report = VerifyReport(str(location), max_problems=max_problems)
    say = log or (lambda message: None)
    report.checks.append("files")
    present = _check_files(build, report)
    report.checks += ["schema", "rows", "counts"]
    rows_sha256 = _check_rows(build, present, report)
    if tokenizer is not None:
        report.checks.append("tokenizer")
        _check_tokenizer(build, tokenizer, report)
    if sources:
        from sftprep.rebuild import compare_rebuild  # imports the whole build machinery

        report.checks.append("sources")
        for problem, count in compare_rebuild(build, rows_sha256, tokenizer, say):
            report.add(problem, count)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _check_files(build: Build, report: VerifyReport) -> list[dict[str, Any]]:
    """Shards missing or changed; returns the shard entries whose files exist."""
    present = []
    for shard in build.manifest["shards"]:
        name = shard.get("filename", "?")
        path = build.directory / name
        if not path.is_file():
            report.add(Problem("files", "missing (the manifest lists it)", shard=name))
            continue
        present.append(shard)
        size = path.stat().st_size
        if shard.get("num_bytes") is not None and size != shard["num_bytes"]:
            report.add(
                Problem("files", f"{size:,} bytes, the manifest says {shard['num_bytes']:,}", shard=name)
            )
        elif shard.get("sha256") and sha256_of(str(path)) != shard["sha256"]:
            report.add(
                Problem(
                    "files",
                    "sha256 differs from the manifest's (the file was changed or replaced)",
                    shard=name,
                )
            )
    rejects = build.manifest.get("rejects_file")
    if rejects and not (build.directory / rejects).is_file():
        report.add(Problem("files", "missing (the manifest lists it as the rejects file)", shard=rejects))
    return present


def expected_schema(manifest: dict[str, Any]) -> pa.Schema:
    """The column names and types a build with these options writes (no metadata)."""
    layout = Layout.of(manifest)
    schema = packed_schema_for(layout.labels) if layout.packed else schema_for(layout.mode, layout.labels)
    return padded_schema(schema) if layout.padded else schema


def _schema_problems(schema: pa.Schema, manifest: dict[str, Any], name: str) -> list[Problem]:
    want = expected_schema(manifest)
    problems = []
    names = list(manifest.get("columns") or want.names)
    if schema.names != names:
        problems.append(Problem("schema", f"columns {schema.names}, the manifest says {names}", shard=name))
    for f in want:
        if f.name in schema.names and schema.field(f.name).type != f.type:
            problems.append(
                Problem(
                    "schema",
                    f"type {schema.field(f.name).type}, expected {f.type}",
                    shard=name,
                    column=f.name,
                )
            )
    missing = [f.name for f in want if f.name not in schema.names]
    if missing:
        problems.append(
            Problem("schema", f"missing columns {missing} that a build with these options writes", shard=name)
        )
    metadata = schema.metadata or {}
    try:
        convention = json.loads(metadata[b"sftprep"]) if b"sftprep" in metadata else None
    except json.JSONDecodeError:
        convention = "unreadable"
    if convention != manifest.get("label_convention"):
        problems.append(
            Problem(
                "schema",
                "the label convention in the schema metadata differs from the manifest's",
                shard=name,
            )
        )
    return problems


def _check_rows(build: Build, shards: list[dict[str, Any]], report: VerifyReport) -> str | None:
    """Check every readable row; return the rows' content_sha256 (None when some could not be read)."""
    manifest = build.manifest
    checker = RowChecker(Layout.of(manifest))
    digest: RowDigest | None = None
    complete = len(shards) == len(manifest["shards"])
    for shard in shards:
        name, path = shard["filename"], build.directory / shard["filename"]
        report.bytes += path.stat().st_size
        rows_before = report.rows
        try:
            reader = open_shard(path)
            for problem in _schema_problems(reader.schema, manifest, name):
                report.add(problem)
            for batch in shard_batches(reader):
                if digest is None:
                    digest = RowDigest(batch.schema)
                digest.update(batch)
                for finding in checker.check(batch):
                    for k, row in enumerate(finding.rows.tolist()):
                        pos = None if finding.positions is None else int(finding.positions[k])
                        detail = finding.details[k] if k < len(finding.details) else finding.message
                        problem = Problem("rows", detail, shard=name, row=report.rows + row, column=finding.column,
                                          position=pos, source=row_source(batch, row))  # fmt: skip
                        report.add(problem)
                report.rows += batch.num_rows
        except SftprepError as exc:
            complete = False
            report.add(Problem("rows", f"{exc} (after {report.rows - rows_before:,} rows)", shard=name))
            continue
        if shard.get("num_rows") is not None and report.rows - rows_before != shard["num_rows"]:
            complete = False
            report.add(
                Problem(
                    "rows",
                    f"{report.rows - rows_before:,} rows, the manifest says {shard['num_rows']:,}",
                    shard=name,
                )
            )
    if not complete:
        return None
    _check_totals(manifest, checker, digest, report)
    return digest.hexdigest() if digest is not None else None


def _check_totals(
    manifest: dict[str, Any], checker: RowChecker, digest: RowDigest | None, report: VerifyReport
) -> None:
    counts = manifest.get("counts") or {}
    totals = checker.totals
    layout = checker.layout
    pairs = [("rows_written", totals.rows), ("examples_written", totals.examples),
             ("trained_tokens", totals.trained_tokens), ("truncated", totals.truncated),
             ("boundary_adjusted", totals.boundary_adjusted)]  # fmt: skip
    if layout.mode != "exploded":
        pairs.append(("tokens", totals.tokens))
    for key, found in pairs:
        if key in counts and counts[key] != found:
            report.add(Problem("counts", f"counts.{key} is {counts[key]:,}, the rows hold {found:,}"))
    recorded = manifest.get("content_sha256")
    if recorded and digest is not None and digest.hexdigest() != recorded:
        report.add(
            Problem("counts", "content_sha256 differs from the rows' (rows were changed after the build)")
        )


def _check_tokenizer(build: Build, spec: str, report: VerifyReport) -> None:
    from sftprep.tokenizer import load_tokenizer

    recorded = build.manifest.get("tokenizer") or {}
    try:
        info = load_tokenizer(None if spec == "default" else spec, eos=None)
    except SftprepError as exc:
        report.add(Problem("tokenizer", f"cannot load {spec}: {exc}"))
        return
    if recorded.get("sha256") and info.sha256 != recorded["sha256"]:
        report.add(Problem("tokenizer", f"{spec} is not the tokenizer of this build (built with "
                           f"{recorded.get('name')}; the sha256 of tokenizer.json differs)"))  # fmt: skip
        return
    for key in ("bos_token", "pad_token"):
        if key in recorded and getattr(info, key) != recorded[key]:
            report.add(
                Problem(
                    "tokenizer", f"{spec}: {key} is {getattr(info, key)!r}, the build used {recorded[key]!r}"
                )
            )
    eos_recorded = (build.manifest.get("config") or {}).get("eos")
    if eos_recorded is None and recorded.get("eos_token") and info.eos_token != recorded["eos_token"]:
        report.add(
            Problem(
                "tokenizer",
                f"{spec}: eos_token is {info.eos_token!r}, the build used {recorded['eos_token']!r}",
            )
        )
