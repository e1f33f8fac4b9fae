"""The ``sftprep`` command line: a thin shell over the library.

Each command parses options, builds a config, calls one library function and
turns library errors into a one-line message and a documented exit code
(README "Exit codes"). Data goes to stdout, everything else to stderr.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from typing import Any

import click

from sftprep import __version__, storage
from sftprep.build import BuildConfig, BuildResult, default_workers, run_build
from sftprep.chat import TRAIN_ON, TURNS
from sftprep.cli.errors import Group, say
from sftprep.encode import TRUNCATION_POLICIES
from sftprep.errors import Terminated, counted
from sftprep.exports import FORMATS
from sftprep.labels import LABEL_STYLES, MODES
from sftprep.packing import DEFAULT_BUFFER_EXAMPLES, PAD_TO_CHOICES
from sftprep.templates import load_template, parse_assignments, shipped_templates

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_size(text: str) -> int:
    """``"256MB"`` -> 256000000, ``"1GiB"`` -> 1073741824, ``"4096"`` -> 4096."""
    match = _SIZE.match(text)
    if not match:
        raise click.BadParameter(f"'{text}' is not a size (e.g. 256MB, 1GiB, 4096)")
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    base = unit[:1]
    factor = 1024 ** "bkmgt".index(base) if "i" in unit else _UNITS[base]
    return int(number * factor)


class _Size(click.ParamType):
    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        return value if isinstance(value, int) else parse_size(str(value))


_say = say  # what cli_merge imports for its summary


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sftprep")
@click.option("--debug", is_flag=True, help="Show a traceback for errors (for bug reports).")
def cli(debug: bool) -> None:
    """Turn supervised fine-tuning data into tokenized training rows.

    \b
    sftprep build data.jsonl --template qa --tokenizer tokenizer.json -o out/
    sftprep templates
    """


@cli.command()
@click.argument("inputs", nargs=-1, metavar="INPUT...")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Output directory, or a URL (s3://bucket/prefix, gs://..., file://...).")  # fmt: skip
@click.option("-t", "--template", help="Shipped template name (see `sftprep templates`) or a TOML file. "
              "Default: chosen from the first record's fields.")  # fmt: skip
@click.option("--chat-template", help="Chat data: the tokenizer's own template ('tokenizer', the default for "
              "chat records), a shipped one (chatml, llama3, mistral-inst, phi3) or a .jinja file.")  # fmt: skip
@click.option("--train-on", type=click.Choice(TRAIN_ON), default="assistant", show_default=True,
              help="Chat data: train every assistant turn, the last one, or all tokens.")  # fmt: skip
@click.option("--turns", type=click.Choice(TURNS), default="auto", show_default=True,
              help="Chat data: one row per conversation, one per trained assistant turn (rendered as when it "
              "is the last), or auto: per turn only where the template rewrites earlier turns (Qwen3).")  # fmt: skip
@click.option("--train-reasoning", type=click.Choice(["yes", "no"]), default="yes", show_default=True,
              help="Chat data: train the <think> block of a trained turn, or only its answer and end marker.")  # fmt: skip
@click.option("--max-rows-per-conversation", type=click.IntRange(min=1), default=64, show_default=True,
              metavar="N", help="Chat data: reject a conversation that one row per turn would make more than "
              "N rows of (their tokens grow with the square of its length).")  # fmt: skip
@click.option("--role", "roles", multiple=True, metavar="NAME=ROLE",
              help="Chat data: map a role name in the data to a template role: --role bot=assistant.")  # fmt: skip
@click.option("--tokenizer", help="tokenizer.json, a folder with one, or a Hugging Face model id "
              "(local cache). Default: the small demo tokenizer shipped with sftprep.")  # fmt: skip
@click.option("--mode", type=click.Choice(MODES), default="sequence", show_default=True,
              help="sequence: one row per example; exploded: one row per trained token.")  # fmt: skip
@click.option("--labels", type=click.Choice(LABEL_STYLES), default="shifted", show_default=True,
              help="shifted: target_ids/loss_mask, no shift needed; hf: labels for Hugging Face models.")  # fmt: skip
@click.option("--max-length", type=click.IntRange(min=2), help="Longest row in tokens.")
@click.option("--truncation", type=click.Choice(TRUNCATION_POLICIES), default="prompt", show_default=True,
              help="For rows over --max-length: prompt = cut the prompt from the left, keep the target; "
              "target = cut the target's end (loses EOS); drop = leave the example out.")  # fmt: skip
@click.option("-f", "--field", "fields", multiple=True, metavar="NAME=PATH",
              help="Where a template field comes from: --field question=q, --field source=translation.de, "
              "--field answer=answer.0. Repeatable.")  # fmt: skip
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="A template value not in the data: --var source_lang=French. Repeatable.")  # fmt: skip
@click.option("--markers", type=click.Choice(["text", "special"]), default="text", show_default=True,
              help="Template markers such as <SUMMARY> as plain text, or as new special tokens "
              "(the extended tokenizer is written into the output).")  # fmt: skip
@click.option("--eos", help="End-of-sequence token to train (default: the tokenizer's EOS).")
@click.option("--shard-size", type=_Size(), default="256MiB", show_default=True, help="Bytes per shard.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Records per batch.")  # fmt: skip
@click.option("--on-error", type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
              help="fail: stop at the first bad record; skip: count it and write it to rejects.jsonl.")  # fmt: skip
@click.option(
    "--max-errors",
    metavar="N|P%",
    help="With --on-error skip: fail when more records are rejected "
    "(a count of 0 or more, or a rate from 0% to 100%). Without it, a build that rejects every record fails.",
)
@click.option(
    "--overwrite", is_flag=True, help="Replace OUTPUT if it exists (only once the new one is done)."
)
@click.option("--verify-prompts", is_flag=True,
              help="Also tokenize every prompt alone and check the row starts with exactly those ids (slower).")  # fmt: skip
@click.option("--format", "input_format", type=click.Choice(["jsonl", "json", "csv", "tsv", "parquet"]),
              help="Input format (default: detected from the content).")  # fmt: skip
@click.option("--max-record-bytes", type=_Size(), default="16MiB", show_default=True,
              help="Reject records larger than this.")  # fmt: skip
@click.option("--pack", is_flag=True, help="Pack whole examples into rows of at most --max-length tokens "
              "(best-fit decreasing; position_ids and seq_lengths keep examples apart).")  # fmt: skip
@click.option("--pack-buffer", type=click.IntRange(min=1), default=DEFAULT_BUFFER_EXAMPLES, show_default=True,
              help="Examples held and packed together (memory bound).")  # fmt: skip
@click.option("--pad-to", type=click.Choice(PAD_TO_CHOICES), help="Pad every row to --max-length.")
@click.option("--pad-to-multiple-of", type=click.IntRange(min=1), metavar="N",
              help="Pad every row up to a multiple of N tokens. With --max-length, that must be a "
              "multiple of N (refused otherwise, so no row is longer than --max-length).")  # fmt: skip
@click.option("--exploded-budget", type=_Size(), default="10GiB", show_default=True,
              help="Refuse an exploded build estimated to write more than this.")  # fmt: skip
@click.option("-w", "--workers", "--num-proc", type=click.IntRange(min=1), default=default_workers,
              show_default="available cores", help="Worker processes (output is identical for any count).")  # fmt: skip
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: worker processes on this machine; ray: a Ray Data job (pip install 'sftprep[ray]').")  # fmt: skip
@click.option("--ray-address", metavar="ADDR", help="With --engine ray: the Ray cluster to submit to "
              "(default: start a local Ray with --workers CPUs).")  # fmt: skip
@click.option("--num-shards", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Build one of N disjoint slices of the records (for job arrays); see `sftprep merge`.")  # fmt: skip
@click.option("--shard-index", type=click.IntRange(min=0), default=0, show_default=True, metavar="I",
              help="Which slice to build, 0 to N-1.")  # fmt: skip
@click.option("--output-format", type=click.Choice(FORMATS), default="arrow", show_default=True,
              help="arrow (datasets.load_from_disk), parquet (+ dataset card), mds (MosaicML streaming) "
              "or megatron (indexed .bin/.idx); see `sftprep export`.")  # fmt: skip
@click.option("--config", "recipe", type=click.Path(dir_okay=False), help="A recipe (TOML or YAML: sources, "
              "weights, split, dedup; docs/recipes.md), or a recipe build's manifest.json to rebuild it.")  # fmt: skip
@click.option("--allow-changed-inputs", is_flag=True, help="With --config manifest.json: rebuild even if an "
              "input's sha256 differs from the manifest's.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary on stderr.")
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
    assignments: dict[str, Any] = {
        "fields": parse_assignments(fields, "--field"),
        "variables": parse_assignments(variables, "--var"),
        "roles": parse_assignments(roles, "--role"),
    }
    if recipe is not None:
        result = _build_recipe(
            ctx, recipe, inputs, output, {**options, **assignments}, allow_changed_inputs, quiet
        )
        if as_json:
            click.echo(json.dumps(_json_summary(result), sort_keys=True))
        return
    if not inputs:
        raise click.UsageError("Missing argument 'INPUT...'.")
    config = BuildConfig(
        inputs=tuple(inputs),
        output=output,
        **assignments,
        **options,
    )
    bar = _progress_bar(quiet)
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
        _summary(result)
    if as_json:
        click.echo(json.dumps(_json_summary(result), sort_keys=True))


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
                        log=None if quiet else _say, allow_changed_inputs=allow_changed_inputs)  # fmt: skip
    if not quiet:
        splits = result.manifest["splits"]
        if len(splits) > 1:
            rows = ", ".join(f"{name} {split['rows']:,} rows" for name, split in splits.items())
            _say(f"wrote {rows} to {result.output} (a DatasetDict)")
        else:
            _summary(result)
        for line in source_table(result.manifest):
            _say(line)
    return result


def _progress_bar(quiet: bool):
    """A tqdm bar over input bytes, on stderr, only when stderr is a terminal."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(
        unit="B", unit_scale=True, unit_divisor=1024, desc="sftprep build", file=sys.stderr, leave=False
    )


def _json_summary(result: BuildResult) -> dict[str, Any]:
    m = result.manifest
    return {"output": str(result.output), "counts": m["counts"], "shards": len(m["shards"]),
            "tokenizer": m["tokenizer"]["name"], "template": (m["template"] or {}).get("name")}  # fmt: skip


def _summary(result: BuildResult) -> None:
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


@cli.command()
def templates() -> None:
    """List the shipped templates.

    \b
    sftprep templates
    """
    for name in shipped_templates():
        template = load_template(name)
        click.echo(f"{name:<18} {template.description}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _terminate)
    cli.main(argv, prog_name="sftprep")


def _terminate(signum, frame) -> None:
    # Unwind like Ctrl-C does, so the staging directory is removed on the way out.
    raise Terminated()


from sftprep.cli.export import export  # noqa: E402
from sftprep.cli.inspect import inspect  # noqa: E402
from sftprep.cli.merge import merge  # noqa: E402
from sftprep.cli.verify import diff, verify  # noqa: E402

cli.add_command(inspect)
cli.add_command(merge)
cli.add_command(verify)
cli.add_command(diff)
cli.add_command(export)
