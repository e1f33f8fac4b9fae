"""The build's flags, declared once and shared between commands as decorator bundles.

``sftprep build`` and ``sftprep inspect --preview`` take the same options that
decide a row (template, chat options, mode, labels, truncation, ...): both use
:func:`row_options`, so a flag cannot drift between them (sqlite-utils shares
``insert_upsert_options`` the same way). Defaults come from
:class:`sftprep.config.BuildConfig` and choices from :mod:`sftprep.options`,
never from here: adding a build option is a ``BuildConfig`` field and one
``option(...)`` line below.

Only light modules are imported, so ``sftprep --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import click

from sftprep.config import BuildConfig
from sftprep.options import (
    ENGINES,
    INPUT_FORMATS,
    LABEL_STYLES,
    MARKERS,
    MODES,
    ON_ERROR,
    OUTPUT_FORMATS,
    PAD_TO_CHOICES,
    TRAIN_ON,
    TRAIN_REASONING,
    TRUNCATION_POLICIES,
    TURNS,
)

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

# BuildConfig's defaults by field name (fields with a default factory give the factory:
# click calls a callable default when it needs the value, e.g. --workers).
DEFAULTS: dict[str, Any] = {
    f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory
    for f in dataclasses.fields(BuildConfig)
    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
}

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


class Size(click.ParamType):
    """A byte count given as ``256MiB``, ``1GB`` or ``4096``."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        return value if isinstance(value, int) else parse_size(str(value))


def size_text(n: int) -> str:
    """``268435456`` -> ``"256MiB"``: a byte count as ``--help`` shows it (and Size reads it back)."""
    for power, unit in ((4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
        if n % 1024**power == 0:
            return f"{n // 1024**power}{unit}"
    return str(n)


def option(*decls: str, **attrs: Any) -> Decorator:
    """``click.option`` with the default of the ``BuildConfig`` field of the same name.

    Lists (``multiple=True``) and flags keep click's own empty defaults: their
    ``BuildConfig`` fields are filled from them (``--field`` items become a dict).
    """
    name = next((d for d in decls if d.isidentifier()), None)
    if name is None:
        name = max((d for d in decls if d.startswith("--")), key=len)[2:].replace("-", "_")
    if name in DEFAULTS and "default" not in attrs and not attrs.get("multiple") and not attrs.get("is_flag"):
        attrs["default"] = DEFAULTS[name]
        if isinstance(attrs.get("type"), Size):  # shown as 256MiB, not 268435456
            attrs["default"] = size_text(attrs["default"])
    return click.option(*decls, **attrs)


def bundle(*decorators: Decorator) -> Decorator:
    """Apply ``decorators`` so that ``--help`` lists them in the order given."""

    def apply(function: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def option_names(decorator: Decorator) -> tuple[str, ...]:
    """The parameter names a bundle adds: ``option_names(row_options())`` -> ``("template", ...)``."""

    def probe() -> None: ...

    decorator(probe)
    return tuple(p.name for p in getattr(probe, "__click_params__", []) if p.name)


def row_options(preview: bool = False) -> Decorator:
    """The options that decide what a row holds: ``build``'s, and ``inspect --preview``'s.

    Args:
        preview: for ``inspect``: every help reads "With --preview: ...", no default is
            shown, and the input format is ``--input-format`` (``--format`` is inspect's output).
    """

    def say(text: str, short: str = "as for build.") -> dict[str, Any]:
        return {"help": f"With --preview: {short}"} if preview else {"help": text, "show_default": True}

    def plain(text: str, short: str = "as for build.") -> dict[str, Any]:  # nothing to show as default
        return {"help": f"With --preview: {short}" if preview else text}

    format_flag = "--input-format" if preview else "--format"
    # fmt: off
    return bundle(
        option("-t", "--template", **plain("Shipped template name (see `sftprep templates`) or a TOML file. "
               "Default: chosen from the first record's fields.", "template name or TOML file (default: detected).")),
        option("--chat-template", **plain("Chat data: the tokenizer's own template ('tokenizer', the default for "
               "chat records), a shipped one (chatml, llama3, mistral-inst, phi3) or a .jinja file.", "as for build (chat data).")),
        option("--train-on", type=click.Choice(TRAIN_ON),
               **say("Chat data: train every assistant turn, the last one, or all tokens.")),
        option("--turns", type=click.Choice(TURNS),
               **say("Chat data: one row per conversation, one per trained assistant turn (rendered as when it "
               "is the last), or auto: per turn only where the template rewrites earlier turns (Qwen3).")),
        option("--train-reasoning", type=click.Choice(TRAIN_REASONING),
               **say("Chat data: train the <think> block of a trained turn, or only its answer and end marker.")),
        option("--role", "roles", multiple=True, metavar="NAME=ROLE",
               **plain("Chat data: map a role name in the data to a template role: --role bot=assistant.")),
        option("-f", "--field", "fields", multiple=True, metavar="NAME=PATH",
               **plain("Where a template field comes from: --field question=q, --field source=translation.de, "
               "--field answer=answer.0. Repeatable.")),
        option("--var", "variables", multiple=True, metavar="NAME=VALUE",
               **plain("A template value not in the data: --var source_lang=French. Repeatable.")),
        option("--mode", type=click.Choice(MODES),
               **say("sequence: one row per example; exploded: one row per trained token.")),
        option("--labels", type=click.Choice(LABEL_STYLES),
               **say("shifted: target_ids/loss_mask, no shift needed; hf: labels for Hugging Face models.")),
        option("--max-length", type=click.IntRange(min=2), **plain("Longest row in tokens.")),
        option("--truncation", type=click.Choice(TRUNCATION_POLICIES),
               **say("For rows over --max-length: prompt = cut the prompt from the left, keep the target; "
               "target = cut the target's end (loses EOS); drop = leave the example out.")),
        option("--markers", type=click.Choice(MARKERS),
               **say("Template markers such as <SUMMARY> as plain text, or as new special tokens "
               "(the extended tokenizer is written into the output).")),
        option("--eos", **plain("End-of-sequence token to train (default: the tokenizer's EOS).")),
        option(format_flag, "input_format", type=click.Choice(INPUT_FORMATS),
               **plain("Input format (default: detected from the content).", "the input's format (default: detected).")),
    )
    # fmt: on


def build_options() -> Decorator:
    """The options of ``build`` beyond :func:`row_options`: limits, output, packing, engine."""
    # fmt: off
    return bundle(
        option("--max-rows-per-conversation", type=click.IntRange(min=1), show_default=True, metavar="N",
               help="Chat data: reject a conversation that one row per turn would make more than "
               "N rows of (their tokens grow with the square of its length)."),
        option("--shard-size", type=Size(), show_default=True, help="Bytes per shard."),
        option("--batch-size", type=click.IntRange(min=1), show_default=True, help="Records per batch."),
        option("--on-error", type=click.Choice(ON_ERROR), show_default=True,
               help="fail: stop at the first bad record; skip: count it and write it to rejects.jsonl."),
        option("--max-errors", metavar="N|P%", help="With --on-error skip: fail when more records are rejected "
               "(a count of 0 or more, or a rate from 0% to 100%). Without it, a build that rejects every record fails."),
        option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists (only once the new one is done)."),
        option("--verify-prompts", is_flag=True,
               help="Also tokenize every prompt alone and check the row starts with exactly those ids (slower)."),
        option("--max-record-bytes", type=Size(), show_default=True, help="Reject records larger than this."),
        option("--pack", is_flag=True, help="Pack whole examples into rows of at most --max-length tokens "
               "(best-fit decreasing; position_ids and seq_lengths keep examples apart)."),
        option("--pack-buffer", type=click.IntRange(min=1), show_default=True,
               help="Examples held and packed together (memory bound)."),
        option("--pad-to", type=click.Choice(PAD_TO_CHOICES), help="Pad every row to --max-length."),
        option("--pad-to-multiple-of", type=click.IntRange(min=1), metavar="N",
               help="Pad every row up to a multiple of N tokens. With --max-length, that must be a "
               "multiple of N (refused otherwise, so no row is longer than --max-length)."),
        option("--exploded-budget", type=Size(), show_default=True,
               help="Refuse an exploded build estimated to write more than this."),
        option("-w", "--workers", "--num-proc", "workers", type=click.IntRange(min=1), show_default="available cores",
               help="Worker processes (output is identical for any count)."),
        option("--engine", type=click.Choice(ENGINES), show_default=True,
               help="local: worker processes on this machine; ray: a Ray Data job (pip install 'sftprep[ray]')."),
        option("--ray-address", metavar="ADDR", help="With --engine ray: the Ray cluster to submit to "
               "(default: start a local Ray with --workers CPUs)."),
        option("--num-shards", type=click.IntRange(min=1), show_default=True, metavar="N",
               help="Build one of N disjoint slices of the records (for job arrays); see `sftprep merge`."),
        option("--shard-index", type=click.IntRange(min=0), show_default=True, metavar="I",
               help="Which slice to build, 0 to N-1."),
        option("--output-format", type=click.Choice(OUTPUT_FORMATS), show_default=True,
               help="arrow (datasets.load_from_disk), parquet (+ dataset card), mds (MosaicML streaming) "
               "or megatron (indexed .bin/.idx); see `sftprep export`."),
    )
    # fmt: on


def summary_options(quiet_help: str = "No summary on stderr.") -> Decorator:
    """``--json`` (a summary on stdout) and ``-q/--quiet``, as every writing command has them."""
    return bundle(
        click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout."),
        click.option("-q", "--quiet", is_flag=True, help=quiet_help),
    )


def assignments(
    fields: tuple[str, ...], variables: tuple[str, ...], roles: tuple[str, ...]
) -> dict[str, Any]:
    """``--field``, ``--var`` and ``--role`` items as the ``BuildConfig`` dicts they fill.

    Raises:
        TemplateError: an item that is not ``NAME=VALUE``.
    """
    from sftprep.templates import parse_assignments

    return {
        "fields": parse_assignments(fields, "--field"),
        "variables": parse_assignments(variables, "--var"),
        "roles": parse_assignments(roles, "--role"),
    }
