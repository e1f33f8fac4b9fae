"""``sftprep build``: options in, a :class:`~sftprep.config.BuildConfig` out, one library call.

The library (:mod:`sftprep.build`, recipes) is imported when the command runs,
not when this module is imported, so ``sftprep --help`` stays fast.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from sftprep.cli.errors import Command
from sftprep.cli.flags import assignments, build_options, row_options, summary_options
from sftprep.cli.output import json_summary, progress_bar, say, summary
from sftprep.config import BuildConfig

if TYPE_CHECKING:
    from sftprep.build import BuildResult


@click.command(cls=Command)
@click.argument("inputs", nargs=-1, metavar="INPUT...")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Output directory, or a URL (s3://bucket/prefix, gs://..., file://...).")  # fmt: skip
@row_options()
@click.option("--tokenizer", help="tokenizer.json, a folder with one, or a Hugging Face model id "
              "(local cache). Default: the small demo tokenizer shipped with sftprep.")  # fmt: skip
@build_options()
@click.option("--config", "recipe", type=click.Path(dir_okay=False), help="A recipe (TOML or YAML: sources, "
              "weights, split, dedup; docs/recipes.md), or a recipe build's manifest.json to rebuild it.")  # fmt: skip
@click.option("--allow-changed-inputs", is_flag=True, help="With --config manifest.json: rebuild even if an "
              "input's sha256 differs from the manifest's.")  # fmt: skip
@summary_options("No progress bar or summary on stderr.")
@click.pass_context
def build(ctx, inputs, output, fields, variables, roles, as_json, quiet, recipe, allow_changed_inputs,
          **options) -> None:  # fmt: skip
    """Tokenize INPUT files into training rows in OUTPUT.

    INPUT is JSONL (also .gz), a JSON array, CSV/TSV with a header, or Parquet;
    several files and globs are read in order; - reads JSONL from stdin.

    \b
    sftprep build data.jsonl --template qa --tokenizer tokenizer.json -o out/
    sftprep build pairs.csv -t translation -f source=de -f target=en -o out/
    sftprep build train.jsonl --labels hf --max-length 2048 -o out/
    sftprep build chats.jsonl --tokenizer phi-3-mini/ -o out/     # its own chat template
    sftprep build sharegpt.json --chat-template chatml --tokenizer smollm/ -o out/
    cat data.jsonl | sftprep build - -t qa -o out/ --json
    sftprep build s3://bucket/data/*.jsonl -o s3://bucket/out/ --engine ray
    sftprep build data.jsonl -o out/part-1 --num-shards 4 --shard-index 1
    sftprep build --config recipe.toml -o out/          # many sources (docs/recipes.md)
    sftprep build --config out/manifest.json -o again/  # the same build again
    """
    from sftprep.build import run_build  # here, not above: `sftprep --help` must not wait for it

    given = assignments(fields, variables, roles)
    if recipe is not None:
        result = _build_recipe(ctx, recipe, inputs, output, {**options, **given}, allow_changed_inputs, quiet)
        if as_json:
            click.echo(json.dumps(json_summary(result), sort_keys=True))
        return
    if not inputs:
        raise click.UsageError("Missing argument 'INPUT...'.")
    config = BuildConfig(
        inputs=tuple(inputs),
        output=output,
        **given,
        **options,
    )
    bar = progress_bar(quiet)
    try:
        result = run_build(
            config,
            log=None if quiet else say,
            advance=bar.update if bar else None,
            total_bytes=(lambda total: setattr(bar, "total", total)) if bar else None,
        )
    finally:
        if bar is not None:
            bar.close()
    if not quiet:
        summary(result)
    if as_json:
        click.echo(json.dumps(json_summary(result), sort_keys=True))


def _build_recipe(ctx, path, inputs, output, options, allow_changed_inputs, quiet) -> BuildResult:
    """``build --config``: options given on the command line override the recipe's."""
    from click.core import ParameterSource

    from sftprep.recipe import load_recipe
    from sftprep.recipe_build import run_recipe
    from sftprep.recipe_output import source_table

    if inputs:
        raise click.UsageError("with --config, the inputs are the recipe's sources: give no INPUT")
    given = {n for n in options if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE}
    if given & {"num_shards", "shard_index"}:
        raise click.UsageError("--num-shards cannot be used with --config")
    loaded = load_recipe(path)
    overrides = {k: v for k, v in options.items() if k in given and k != "overwrite"}
    if "workers" not in loaded.options:  # not part of the output: the command line's default applies
        overrides.setdefault("workers", options["workers"])
    result = run_recipe(loaded.with_overrides(overrides), output, overwrite=options["overwrite"],
                        log=None if quiet else say, allow_changed_inputs=allow_changed_inputs)  # fmt: skip
    if not quiet:
        splits = result.manifest["splits"]
        if len(splits) > 1:
            rows = ", ".join(f"{name} {split['rows']:,} rows" for name, split in splits.items())
            say(f"wrote {rows} to {result.output} (a DatasetDict)")
        else:
            summary(result)
        for line in source_table(result.manifest):
            say(line)
    return result
