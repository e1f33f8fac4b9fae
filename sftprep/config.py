"""The build's options: one frozen dataclass, checked as a whole.

The CLI builds a :class:`BuildConfig` from its flags; library users build one
directly. :meth:`BuildConfig.check` reports every problem at once.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from sftprep.chat import TRAIN_ON, TURNS
from sftprep.chat.formats import DEFAULT_ROLES
from sftprep.encode import TRUNCATE_PROMPT, TRUNCATION_POLICIES
from sftprep.errors import ConfigError
from sftprep.exports.base import output_format_problems
from sftprep.labels import LABEL_STYLES, MODES
from sftprep.packing import DEFAULT_BUFFER_EXAMPLES, packing_problems

ENGINES = ("local", "ray")
# The roles a chat template knows: what --role NAME=ROLE may map to.
TEMPLATE_ROLES = tuple(sorted(set(DEFAULT_ROLES.values())))


def default_workers() -> int:
    """The CPU cores this process may use: the one default for ``--workers`` (CLI and library)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class BuildConfig:
    """Everything that decides a build's output. See ``sftprep build --help``."""

    inputs: tuple[str, ...]
    output: str
    template: str | None = None
    tokenizer: str | None = None
    mode: str = "sequence"
    labels: str = "shifted"
    max_length: int | None = None
    truncation: str = TRUNCATE_PROMPT
    fields: dict[str, str] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    markers: str = "text"
    eos: str | None = None
    shard_size: int = 256 * 2**20
    batch_size: int = 1024
    on_error: str = "fail"
    max_errors: str | None = None
    overwrite: bool = False
    verify_prompts: bool = False
    input_format: str | None = None
    max_record_bytes: int = 16 * 2**20
    workers: int = field(default_factory=default_workers)
    pack: bool = False
    pack_buffer: int = DEFAULT_BUFFER_EXAMPLES
    pad_to: str | None = None
    pad_to_multiple_of: int | None = None
    exploded_budget: int = 10 * 2**30
    chat_template: str | None = None
    train_on: str = "assistant"
    roles: dict[str, str] = field(default_factory=dict)
    turns: str = "auto"
    train_reasoning: str | bool = "yes"
    max_rows_per_conversation: int | None = 64
    engine: str = "local"
    ray_address: str | None = None
    num_shards: int = 1
    shard_index: int = 0
    output_format: str = "arrow"  # issue 19: sftprep.exports converts the finished Arrow build
    system: str | None = None  # recipes: a system prompt for chat records without one

    def check(self) -> None:
        """Collect every problem with the options and report them at once."""
        problems = []
        if self.mode not in MODES:
            problems.append(f"--mode must be one of {', '.join(MODES)}")
        if self.labels not in LABEL_STYLES:
            problems.append(f"--labels must be one of {', '.join(LABEL_STYLES)}")
        if self.truncation not in TRUNCATION_POLICIES:
            problems.append(f"--truncation must be one of {', '.join(TRUNCATION_POLICIES)}")
        if self.max_length is not None and self.max_length < 2:
            problems.append("--max-length must be at least 2")
        if self.on_error not in ("fail", "skip"):
            problems.append("--on-error must be fail or skip")
        if self.markers not in ("text", "special"):
            problems.append("--markers must be text or special")
        if self.batch_size < 1 or self.shard_size < 1:
            problems.append("--batch-size and --shard-size must be positive")
        if self.max_errors is not None:
            try:
                parse_max_errors(self.max_errors)
            except ValueError as exc:
                problems.append(str(exc))
            if self.on_error != "skip":
                problems.append(
                    "--max-errors needs --on-error skip (with --on-error fail the first bad record stops the build)"
                )
        if self.train_on not in TRAIN_ON:
            problems.append(f"--train-on must be one of {', '.join(TRAIN_ON)}")
        problems += self._chat_problems()
        if self.workers < 1:
            problems.append("--workers must be at least 1")
        if not self.inputs:
            problems.append("no input given")
        problems += self._engine_problems()
        problems += [
            f"--role {name}={role}: '{role}' is not a chat template role (one of {', '.join(TEMPLATE_ROLES)})"
            for name, role in self.roles.items()
            if role not in TEMPLATE_ROLES
        ]
        n, limit = self.pad_to_multiple_of, self.max_length
        if n is not None and limit is not None and limit % n:
            # Refused rather than rounded down: a row is never longer than --max-length, and
            # quietly cutting the limit would change which examples are truncated or dropped.
            problems.append(
                f"--pad-to-multiple-of {n} would pad rows of up to --max-length {limit} tokens to "
                f"{-(-limit // n) * n}: give a --max-length that is a multiple of {n} "
                f"(e.g. {max(n, limit // n * n)})"
            )
        problems += output_format_problems(self.output_format, self.output)
        problems += packing_problems(
            self.mode, self.max_length, self.pack, self.pad_to, self.pad_to_multiple_of, self.pack_buffer
        )
        if problems:
            raise ConfigError("; ".join(problems))

    def _chat_problems(self) -> list[str]:
        """--turns, --train-reasoning, --max-rows-per-conversation (issue 13)."""
        problems = []
        if self.turns not in TURNS:
            problems.append(f"--turns must be one of {', '.join(TURNS)}")
        elif self.turns == "each" and self.train_on == "all":
            problems.append(
                "--turns each trains one assistant turn per row: it does not go with --train-on all"
            )
        if self.train_reasoning not in ("yes", "no", True, False):
            problems.append("--train-reasoning must be yes or no")
        if self.max_rows_per_conversation is not None and self.max_rows_per_conversation < 1:
            problems.append("--max-rows-per-conversation must be at least 1")
        return problems

    def _engine_problems(self) -> list[str]:
        """--engine, --ray-address, --num-shards and --shard-index (issue 8)."""
        problems = []
        if self.engine not in ENGINES:
            problems.append(f"--engine must be one of {', '.join(ENGINES)}")
        if self.ray_address and self.engine != "ray":
            problems.append("--ray-address needs --engine ray")
        if self.num_shards < 1 or not 0 <= self.shard_index < self.num_shards:
            problems.append(
                f"--shard-index must be from 0 to --num-shards - 1 (got {self.shard_index} of {self.num_shards})"
            )
        if self.num_shards > 1 and self.pack:
            problems.append(
                "--pack cannot be used with --num-shards: packing needs all examples in one stream "
                "(build the slices unpacked, or pack in one build)"
            )
        if self.num_shards > 1 and "-" in self.inputs:
            problems.append("--num-shards needs named inputs, not stdin")
        return problems

    def recorded(self) -> dict[str, Any]:
        """The configuration as the manifest records it (no output path)."""
        data = asdict(self)
        # None of these change the rows (and a Ray build equals a local one).
        for key in ("output", "overwrite", "workers", "exploded_budget", "engine", "ray_address"):
            data.pop(key)
        # Recorded as the manifest's "output_format" instead, so that a build in a format
        # and an export of the Arrow build write the same manifest.
        data.pop("output_format")
        data["inputs"] = list(self.inputs)
        if self.system is None:  # only recipes set it; a plain build records what it always did
            data.pop("system")
        return data


def parse_max_errors(text: str) -> tuple[int | None, float | None]:
    """``"10"`` -> (10, None); ``"1.5%"`` -> (None, 0.015).

    Raises:
        ValueError: not a count of 0 or more, nor a rate from 0% to 100%.
    """
    problem = ValueError(f"--max-errors must be a count (10) or a rate from 0% to 100% (0.5%), got '{text}'")
    try:
        if text.endswith("%"):
            rate = float(text[:-1]) / 100
            if not 0 <= rate <= 1:  # also refuses nan
                raise problem
            return None, rate
        count = int(text)
    except ValueError:
        raise problem from None
    if count < 0:
        raise problem
    return count, None
