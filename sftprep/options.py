"""The build's option choices, in one light module.

Every list of choices a build option accepts (``--mode``, ``--labels``,
``--truncation``, ...) is declared here once; the library modules that act on
an option import its choices from here, :class:`sftprep.config.BuildConfig`
holds the defaults and checks values against these lists, and the command
line (:mod:`sftprep.cli.flags`) offers them as ``click.Choice``.

This module imports nothing but the standard library on purpose: the command
line imports it to print ``sftprep --help``, which must not wait for numpy,
pyarrow or tokenizers (issue 17). Adding a build option is two edits: a field
of ``BuildConfig`` (its default, and a check if it needs one) and a flag in
:mod:`sftprep.cli.flags` (which reads the default from ``BuildConfig``); its
choices, if it has any, go here.
"""

from __future__ import annotations

import os

# --mode: one row per example, or one row per trained token (sftprep.labels).
MODES = ("sequence", "exploded")
# --labels: shifted target_ids + loss_mask, or unshifted Hugging Face labels (sftprep.labels).
LABEL_STYLES = ("shifted", "hf")
# --truncation (sftprep.encode).
TRUNCATE_PROMPT = "prompt"  # cut the prompt from the left; keep the target whole
TRUNCATE_TARGET = "target"  # cut the target from the right (its EOS is lost)
TRUNCATE_DROP = "drop"  # drop the example
TRUNCATION_POLICIES = (TRUNCATE_PROMPT, TRUNCATE_TARGET, TRUNCATE_DROP)
# --train-on and --turns (sftprep.chat): which assistant turns are trained, and how a
# conversation becomes rows.
TRAIN_ON = ("assistant", "last", "all")
TURNS = ("auto", "conversation", "each")
# --train-reasoning: train a trained turn's <think> block, or only its answer.
TRAIN_REASONING = ("yes", "no")
# --role NAME=ROLE: the roles a chat template knows.
TEMPLATE_ROLES = ("assistant", "system", "tool", "user")
# --markers: template markers as plain text, or as new special tokens.
MARKERS = ("text", "special")
# --on-error: stop at the first bad record, or count it and go on.
ON_ERROR = ("fail", "skip")
# --format (build) / --input-format (inspect --preview): input formats (sftprep.readers).
INPUT_FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")
# --pad-to (sftprep.padding).
PAD_TO_CHOICES = ("max-length",)
# --output-format (build) and --to (export) (sftprep.exports).
OUTPUT_FORMATS = ("arrow", "parquet", "mds", "megatron")
EXPORT_FORMATS = OUTPUT_FORMATS[1:]
# --engine: where the build runs (sftprep.build, sftprep.ray_engine).
ENGINES = ("local", "ray")
# inspect --where and --format (sftprep.view): row conditions, and how rows are printed.
WHERE = ("truncated", "boundary-adjusted", "max-length", "no-eos")
VIEW_FORMATS = ("text", "json")
# --pack-buffer's default: examples held and packed together (sftprep.packing).
DEFAULT_BUFFER_EXAMPLES = 4096


def default_workers() -> int:
    """The CPU cores this process may use: the one default for ``--workers`` (CLI and library)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
