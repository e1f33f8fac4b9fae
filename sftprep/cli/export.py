"""``sftprep export``: a thin shell over :func:`sftprep.exports.export_build`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sftprep.cli.errors import Command
from sftprep.cli.flags import summary_options
from sftprep.cli.output import say
from sftprep.options import EXPORT_FORMATS


@click.command(cls=Command)
@click.argument("build_dir", metavar="OUT", type=click.Path(file_okay=False))
@click.option("--to", "fmt", required=True, type=click.Choice(EXPORT_FORMATS),
              help="parquet (+ README.md dataset card), mds (MosaicML streaming) or megatron (.bin/.idx).")  # fmt: skip
@click.option(
    "-o", "--output", required=True, type=click.Path(file_okay=False), help="Destination directory."
)
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@summary_options()
def export(build_dir, fmt, output, overwrite, as_json, quiet) -> None:
    """Write an existing Arrow build OUT in another format, for other trainers.

    The result is byte-identical to `sftprep build --output-format FORMAT`:
    the same files, the same manifest (with "output_format"). Rows stream
    through one batch at a time.

    \b
    sftprep export out/ --to parquet -o out-parquet/   # + README.md dataset card
    sftprep export out/ --to mds -o out-mds/           # streaming.StreamingDataset
    sftprep export out/ --to megatron -o out-megatron/ # megatron-core IndexedDataset
    """
    from sftprep.exports import export_build
    from sftprep.exports.base import CARD_FILE

    manifest = export_build(build_dir, output, fmt, overwrite=overwrite)
    files = manifest["shards"]
    card = json.loads((Path(output) / CARD_FILE).read_text(encoding="utf-8"))
    rows = {name: split["rows"] for name, split in card["splits"].items()}
    if not quiet:
        total = sum(rows.values())
        say(f"wrote {total:,} rows ({', '.join(f'{k} {v:,}' for k, v in rows.items())}) as {fmt} to {output}")
    if as_json:
        summary = {"output": str(output), "output_format": fmt, "rows": rows, "files": len(files)}
        click.echo(json.dumps(summary, sort_keys=True))
