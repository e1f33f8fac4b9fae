"""The build's options: one frozen dataclass, checked as a whole.

The CLI builds a :class:`BuildConfig` from its flags; library users build one
directly. :meth:`BuildConfig.check` reports every problem at once.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from sftprep.chat import TRAIN_ON
from sftprep.encode import TRUNCATE_PROMPT, TRUNCATION_POLICIES
from sftprep.errors import ConfigError
from sftprep.labels import LABEL_STYLES, MODES
from sftprep.packing import DEFAULT_BUFFER_EXAMPLES, packing_problems

ENGINES = ("local", "ray")


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
    workers: int = 1
    pack: bool = False
    pack_buffer: int = DEFAULT_BUFFER_EXAMPLES
    pad_to: str | None = None
    pad_to_multiple_of: int | None = None
    exploded_budget: int = 10 * 2**30
    chat_template: str | None = None
    train_on: str = "assistant"
    roles: dict[str, str] = field(default_factory=dict)
    engine: str = "local"
    ray_address: str | None = None
    num_shards: int = 1
    shard_index: int = 0
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
        if self.train_on not in TRAIN_ON:
            problems.append(f"--train-on must be one of {', '.join(TRAIN_ON)}")
        if self.workers < 1:
            problems.append("--workers must be at least 1")
        if not self.inputs:
            problems.append("no input given")
        problems += self._engine_problems()
        problems += packing_problems(
            self.mode, self.max_length, self.pack, self.pad_to, self.pad_to_multiple_of, self.pack_buffer
        )
        if problems:
            raise ConfigError("; ".join(problems))

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
        data["inputs"] = list(self.inputs)
        if self.system is None:  # only recipes set it; a plain build records what it always did
            data.pop("system")
        return data


def parse_max_errors(text: str) -> tuple[int | None, float | None]:
    """``"10"`` -> (10, None); ``"1.5%"`` -> (None, 0.015)."""
    try:
        if text.endswith("%"):
            return None, float(text[:-1]) / 100
        return int(text), None
    except ValueError:
        raise ValueError(f"--max-errors must be a count (10) or a rate (0.5%), got '{text}'") from None


def default_workers() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
