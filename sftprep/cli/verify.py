"""``sftprep verify`` and ``sftprep diff``: thin shells over :mod:`sftprep.verify` and :mod:`sftprep.diff`."""

from __future__ import annotations

import json

import click

from sftprep.cli.errors import Command
from sftprep.cli.output import say
from sftprep.errors import EXIT_DIFFERENT, EXIT_OK, EXIT_PROBLEMS


@click.command(cls=Command)
@click.argument("output", metavar="OUT")
@click.option(
    "--sources",
    is_flag=True,
    help="Also re-read the inputs and rebuild every row to compare (about one build).",
)
@click.option("--tokenizer", metavar="PATH", help="Check the build was made with this tokenizer.")
@click.option("--max-problems", type=click.IntRange(min=0), default=20, show_default=True,
              help="Problems listed; the rest are counted.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def verify(output, sources, tokenizer, max_problems, as_json, quiet) -> int:
    """Check a finished build: files, schema, every row's labels, counts.

    Prints one line per problem (shard, row, column[position]: what is wrong)
    and exits 0 when everything holds, 5 when something does not (2 and 4 when
    the build cannot be checked at all: see docs/errors.md).

    \b
    sftprep verify out/
    sftprep verify out/ --tokenizer models/llama/     # the training job's tokenizer
    sftprep verify s3://bucket/out/ --sources --json  # rebuild from the inputs and compare
    """
    from sftprep.verify import verify_build

    report = verify_build(output, sources=sources, tokenizer=tokenizer, max_problems=max_problems,
                          log=None if quiet else say)  # fmt: skip
    if as_json:
        click.echo(json.dumps(report.as_dict(), sort_keys=True))
    else:
        for problem in report.problems:
            click.echo(problem.line())
    if not quiet:
        checked = f"{report.rows:,} rows, {report.bytes / 2**20:,.1f} MiB, {report.seconds:.1f} s ({', '.join(report.checks)})"
        if report.ok:
            say(f"verify: {output}: OK: {checked}")
        else:
            more = (
                f" ({report.total - len(report.problems):,} not shown)"
                if report.total > len(report.problems)
                else ""
            )
            say(f"verify: {output}: {report.total:,} problem{'s' * (report.total != 1)}{more}: {checked}")
    return 0 if report.ok else EXIT_PROBLEMS


_KINDS = {
    "only_in_a": "only in A",
    "only_in_b": "only in B",
    "ids": "ids differ",
    "span": "trained span differs",
}


@click.command(cls=Command)
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@click.option("--limit", type=click.IntRange(min=0), default=5, show_default=True,
              help="Differing examples shown in full; the rest are counted.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON on stdout.")
def diff(a, b, limit, as_json) -> int:
    """Compare two builds example by example, like diff(1): exit 0 same, 1 different, 2+ errors.

    Examples are matched by source file, line (and turn), not by position;
    packed rows are compared example by example. Shows the manifest changes
    that explain the differences (tokenizer, template, options, inputs) and the
    first --limit differing examples as `sftprep inspect` shows them.

    \b
    sftprep diff out-gpt2/ out-llama/          # the same data, two tokenizers
    sftprep diff out-v1/ out-v2/ --limit 0 --json
    """
    from sftprep.diff import diff_builds

    report = diff_builds(a, b, limit=limit)
    if as_json:
        click.echo(json.dumps(report.as_dict(), sort_keys=True))
        return EXIT_OK if report.same else EXIT_DIFFERENT
    c = report.counts
    click.echo(f"A: {a}\nB: {b}")
    if report.changes:
        click.echo("manifest differences:")
        for change in report.changes:
            click.echo(f"  {change}")
    click.echo(
        f"examples: {c['same']:,} same, {c['only_in_a']:,} only in A, {c['only_in_b']:,} only in B, "
        f"{c['ids']:,} with different ids, {c['span']:,} with a different trained span"
    )
    for shown in report.shown:
        click.echo(f"\n=== {shown.key[0]}:{shown.key[1]}" + (f" turn {shown.key[2]}" if shown.key[2] is not None else "")
                   + f": {_KINDS[shown.kind]}")  # fmt: skip
        for side, lines in (("A", shown.a_text), ("B", shown.b_text)):
            click.echo(f"--- {side}" + ("" if lines else ": (none)"))
            for line in lines:
                click.echo(line)
    hidden = report.differing - len(report.shown)
    if hidden > 0:
        click.echo(f"\n... and {hidden:,} more differing examples (raise --limit to see them)")
    return EXIT_OK if report.same else EXIT_DIFFERENT
