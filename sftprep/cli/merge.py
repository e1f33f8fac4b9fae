"""``sftprep merge``: a thin shell over :func:`sftprep.merge.merge_builds`."""

from __future__ import annotations

import json

import click

from sftprep.cli.errors import Command
from sftprep.cli.flags import summary_options
from sftprep.cli.output import json_summary, say, summary


@click.command(cls=Command)
@click.argument("parts", nargs=-1, required=True, metavar="SLICE...")
@click.option("-o", "--output", required=True, help="Output directory, or a URL (s3://bucket/prefix, ...).")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@summary_options()
def merge(parts, output, overwrite, as_json, quiet) -> None:
    """Merge the outputs of all --num-shards slices of a build into one build.

    The merged rows are the single build's rows in the single build's order,
    with one manifest (counts summed, rejects merged in input order).

    \b
    sftprep build data.jsonl -o part-0 --num-shards 2 --shard-index 0
    sftprep build data.jsonl -o part-1 --num-shards 2 --shard-index 1
    sftprep merge part-0 part-1 -o merged
    """
    from sftprep.merge import merge_builds

    result = merge_builds(list(parts), output, overwrite=overwrite, log=None if quiet else say)
    if not quiet:
        summary(result)
    if as_json:
        click.echo(json.dumps(json_summary(result), sort_keys=True))
