"""What the commands print besides their data: ``sftprep: ...`` lines, summaries, the progress bar.

Shared by ``build``, ``merge``, ``export`` and ``verify``, so that every command's
lines read alike. Everything here goes to stderr except the ``--json`` summary.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from sftprep.errors import counted

if TYPE_CHECKING:
    from sftprep.build import BuildResult


def say(message: str) -> None:
    """Print one ``sftprep: ...`` line on stderr."""
    click.echo(f"sftprep: {message}", err=True)


def progress_bar(quiet: bool, desc: str = "sftprep build") -> Any:
    """A tqdm bar over input bytes, on stderr, only when stderr is a terminal (else None)."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm  # only on a terminal: a script's build does not pay for the import

    return tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc=desc, file=sys.stderr, leave=False)


def json_summary(result: BuildResult) -> dict[str, Any]:
    """The ``--json`` summary of a build (or a merge) for stdout."""
    m = result.manifest
    return {"output": str(result.output), "counts": m["counts"], "shards": len(m["shards"]),
            "tokenizer": m["tokenizer"]["name"], "template": (m["template"] or {}).get("name")}  # fmt: skip


def summary(result: BuildResult) -> None:
    """The build's summary on stderr: rows, tokens, what was skipped, packing, added tokens."""
    from sftprep import storage  # only after a build, which has imported it anyway

    c = result.manifest["counts"]
    shards = len(result.manifest["shards"])
    trained = c["trained_tokens"] / c["tokens"] if c["tokens"] else 0.0
    rows = counted(c["rows_written"], "row") + (
        f" from {counted(c['examples_written'], 'example')}"
        if c["rows_written"] != c["examples_written"]
        else ""
    )
    fmt = result.manifest.get("output_format") or "arrow"  # other formats count files, not shards
    where = counted(shards, "shard") if fmt == "arrow" else f"{fmt}, {counted(shards, 'file')}"
    say(
        f"wrote {rows} to {result.output} ({where}): "
        f"{counted(c['tokens'], 'token')}, {c['trained_tokens']:,} trained ({trained:.1%})"
    )
    skipped = ", ".join(f"{k} {v}" for k, v in c["skipped"].items()) or "none"
    say(
        f"read {counted(c['records_read'], 'record')}; skipped: {skipped}; dropped as too long: "
        f"{c['dropped_too_long']}; truncated: {c['truncated']}; boundary adjusted: {c['boundary_adjusted']}"
    )
    if c.get("turn_rows"):
        say(
            f"{c['conversations_by_turn']:,} conversations written one row per turn (--turns): "
            f"{c['turn_rows']:,} rows, {c['turn_tokens']:,} tokens"
        )
    if c.get("reasoning_dropped") or c.get("empty_reasoning"):
        say(
            f"reasoning: {c['empty_reasoning']:,} trained turns with an empty think block, "
            f"{c['reasoning_dropped']:,} whose reasoning the rendered row does not show"
        )
    packing = result.manifest.get("packing")
    if packing:
        say(
            f"packed {counted(packing['examples'], 'example')} into {counted(packing['rows'], 'row')} "
            f"of at most {packing['max_length']} tokens: efficiency {packing['efficiency']:.1%}, "
            f"{packing['examples_per_row']['mean']:.1f} examples per row"
        )
    if c["skipped_total"]:
        say(f"rejected records are in {storage.join(result.output, 'rejects.jsonl')}")
    added = result.manifest["tokenizer"]["added_tokens"]
    if added:
        say(
            f"added tokens {', '.join(added)}: the vocabulary is now {result.manifest['tokenizer']['vocab_size']}; "
            f"resize the model's embeddings (tokenizer saved in {storage.join(result.output, 'tokenizer.json')})"
        )
