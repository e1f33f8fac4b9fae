"""Recipes: one build from many sources, described in a TOML or YAML file.

A recipe's top-level keys are ``sftprep build``'s long option names (dashes or
underscores), plus ``seed``, a ``sources`` list and ``split`` and ``dedup``
tables::

    tokenizer = "../tokenizers/gpt2"
    max-length = 512
    seed = 7

    [[sources]]
    path = "qa.jsonl"            # a file, glob or URL, or a list of them
    template = "qa"
    weight = 2

    [[sources]]
    path = "chats/*.jsonl"
    chat-template = "chatml"
    system = "You are a helpful assistant."

    [split]
    validation = 0.05            # a fraction, or an integer count per source

    [dedup]
    exact = true
    decontaminate = ["eval/*.jsonl"]
    ngram = 13

Relative paths are relative to the recipe file. :func:`load_recipe` checks
every key (an unknown one gets a did-you-mean) and raises
:class:`~sftprep.errors.ConfigError` (exit 2) with one line naming the file,
the source and the key. A build's ``manifest.json`` holds the resolved recipe
under ``"recipe"``, in this same form with absolute paths, so
``load_recipe("out/manifest.json")`` rebuilds it.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sftprep import storage
from sftprep.config import BuildConfig
from sftprep.errors import ConfigError, InputError
from sftprep.readers import expand_inputs

# Recipe key (dashes) -> BuildConfig field. Several spellings of the CLI's repeatable
# options are accepted: `field`/`fields`, `var`/`vars`, `role`/`roles`.
OPTION_KEYS = {
    "template": "template", "chat-template": "chat_template", "train-on": "train_on",
    "role": "roles", "roles": "roles", "tokenizer": "tokenizer", "mode": "mode", "labels": "labels",
    "max-length": "max_length", "truncation": "truncation", "field": "fields", "fields": "fields",
    "var": "variables", "vars": "variables", "markers": "markers", "eos": "eos",
    "shard-size": "shard_size", "batch-size": "batch_size", "on-error": "on_error",
    "max-errors": "max_errors", "verify-prompts": "verify_prompts", "format": "input_format",
    "max-record-bytes": "max_record_bytes", "pack": "pack", "pack-buffer": "pack_buffer",
    "pad-to": "pad_to", "pad-to-multiple-of": "pad_to_multiple_of", "exploded-budget": "exploded_budget",
    "workers": "workers", "num-proc": "workers", "engine": "engine", "ray-address": "ray_address",
    "system": "system",
}  # fmt: skip
# What a source may set for itself (the rest are build-wide).
SOURCE_OPTIONS = (
    "template",
    "chat_template",
    "fields",
    "variables",
    "roles",
    "input_format",
    "train_on",
    "system",
)
SOURCE_KEYS = {"path", "name", "weight"} | {k for k, v in OPTION_KEYS.items() if v in SOURCE_OPTIONS}
TOP_KEYS = set(OPTION_KEYS) | {"seed", "sources", "split", "dedup"}
SPLIT_KEYS = {"validation"}
DEDUP_KEYS = {"exact", "decontaminate", "ngram"}
DEFAULT_NGRAM = 13

_INTS = {"max_length", "shard_size", "batch_size", "max_record_bytes", "pack_buffer", "pad_to_multiple_of",
         "exploded_budget", "workers"}  # fmt: skip
_BOOLS = {"pack", "verify_prompts"}
_TABLES = {"fields", "variables", "roles"}


@dataclass(frozen=True)
class Source:
    """One source of a recipe: its files, its share and how its records are read.

    ``options`` holds the BuildConfig fields the source sets itself (template,
    chat_template, fields, variables, roles, input_format, train_on, system).
    """

    name: str
    paths: tuple[str, ...]
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """A parsed, checked recipe. Build it with :func:`load_recipe`.

    Attributes:
        path: the file it was read from.
        options: build-wide BuildConfig fields the recipe sets (defaults for every source).
        sources: the sources, in order.
        seed: decides the split, the sample of a fractional weight and the order of repeats.
        validation: the validation share (a fraction in (0, 1)) or count per source, or None.
        exact: drop examples whose rendered text equals an earlier one.
        decontaminate: files whose prompts and targets no training example may share an n-gram with.
        ngram: the n-gram length in words.
        overrides: BuildConfig fields from the command line; they win over the recipe and its sources.
        expected_inputs: for a rebuild from a manifest: input name -> sha256 recorded then.
    """

    path: str
    options: dict[str, Any]
    sources: tuple[Source, ...]
    seed: int = 0
    validation: float | int | None = None
    exact: bool = False
    decontaminate: tuple[str, ...] = ()
    ngram: int = DEFAULT_NGRAM
    overrides: dict[str, Any] = field(default_factory=dict)
    expected_inputs: dict[str, str] | None = None

    def with_overrides(self, overrides: dict[str, Any]) -> Recipe:
        """The recipe with BuildConfig fields from the command line on top."""
        return replace(self, overrides={**self.overrides, **overrides})

    def source_config(self, source: Source, output: str) -> BuildConfig:
        """The BuildConfig that reads one source (unpacked, unpadded: the mixture packs later)."""
        merged = {**self.options, **source.options, **self.overrides}
        merged.update(pack=False, pad_to=None, pad_to_multiple_of=None, overwrite=False)
        return BuildConfig(inputs=source.paths, output=output, **merged)

    def build_options(self) -> dict[str, Any]:
        """The build-wide options, command line included."""
        return {**self.options, **self.overrides}

    def recorded(self, inputs: dict[str, list[str]]) -> dict[str, Any]:
        """The resolved recipe as the manifest records it: a recipe again, with absolute paths.

        Args:
            inputs: per source name, the files it expanded to.
        """
        keys = {v: k for k, v in OPTION_KEYS.items()}  # field -> its key (the plural, for tables)
        # Like BuildConfig.recorded: what does not change the rows is not part of the record.
        top = {keys[k]: v for k, v in sorted(self.build_options().items())
               if k not in SOURCE_OPTIONS and k not in ("workers", "engine", "ray_address")}  # fmt: skip
        defaults = {k: v for k, v in self.build_options().items() if k in SOURCE_OPTIONS}
        sources = []
        for s in self.sources:
            entry: dict[str, Any] = {"name": s.name, "path": [_absolute(p) for p in inputs[s.name]],
                                     "weight": s.weight}  # fmt: skip
            own = {
                **defaults,
                **s.options,
                **{k: v for k, v in self.overrides.items() if k in SOURCE_OPTIONS},
            }
            entry.update({keys[k]: v for k, v in sorted(own.items())})
            sources.append(entry)
        recipe: dict[str, Any] = {**top, "seed": self.seed, "sources": sources}
        if self.validation is not None:
            recipe["split"] = {"validation": self.validation}
        recipe["dedup"] = {"exact": self.exact, "decontaminate": [_absolute(p) for p in self.decontaminate],
                           "ngram": self.ngram}  # fmt: skip
        return recipe


def _absolute(name: str) -> str:
    return name if storage.is_url(name) else os.path.abspath(name)


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read and check a recipe (``.toml``, ``.yaml``/``.yml``) or a build's ``manifest.json``.

    Raises:
        ConfigError: the file cannot be read or parsed, or a key or value is wrong.
    """
    path = Path(path)
    data = _parse(path)
    expected = None
    if path.suffix == ".json":
        if not isinstance(data, dict) or not isinstance(data.get("recipe"), dict):
            raise ConfigError(f"{path}: not the manifest of a recipe build (no 'recipe')")
        expected = {i["name"]: i["sha256"] for s in data.get("sources", []) for i in s.get("inputs", [])}
        data = data["recipe"]
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a table of keys, got {type(data).__name__}")
    return _Parser(path).recipe(data, expected)


def _parse(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ConfigError(f"{path}: a recipe is a .toml or .yaml file (or a build's manifest.json)")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the recipe: {exc.strerror}") from None
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except Exception as exc:  # tomllib, json and yaml each raise their own
        message = " ".join(str(exc).split())
        raise ConfigError(f"{path}: not valid {suffix.lstrip('.').upper()}: {message}") from None


class _Parser:
    """Turns the parsed mapping into a :class:`Recipe`, naming file, source and key in errors."""

    def __init__(self, path: Path):
        self.path = path
        self.base = path.resolve().parent

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {where}{message}")

    def check_keys(self, data: dict, allowed: set[str], where: str) -> None:
        for key in data:
            if _norm(key) not in allowed:
                close = difflib.get_close_matches(_norm(key), sorted(allowed), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise self.fail(where, f"unknown key '{key}'{hint}")

    def recipe(self, data: dict, expected: dict[str, str] | None) -> Recipe:
        self.check_keys(data, TOP_KEYS, "")
        options = self.options(data, "", skip={"seed", "sources", "split", "dedup"})
        seed = data.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise self.fail("", f"key 'seed': must be an integer, got {seed!r}")
        raw_sources = data.get("sources")
        if not isinstance(raw_sources, list) or not raw_sources:
            raise self.fail("", "key 'sources': give a list of sources ([[sources]] in TOML)")
        sources = [self.source(s, i) for i, s in enumerate(raw_sources)]
        seen: dict[str, int] = {}
        for i, s in enumerate(sources):
            if s.name in seen:
                raise self.fail(f"sources[{i}] ({s.name}): ", f"key 'name': '{s.name}' is also the name of "
                                f"sources[{seen[s.name]}]; give each source its own name")  # fmt: skip
            seen[s.name] = i
        split = self.table(data, "split", SPLIT_KEYS)
        dedup = self.table(data, "dedup", DEDUP_KEYS)
        return Recipe(
            path=str(self.path),
            options=options,
            sources=tuple(sources),
            seed=seed,
            validation=self.validation(split.get("validation")),
            exact=self.flag(dedup, "exact", "dedup."),
            decontaminate=tuple(
                self.paths(dedup.get("decontaminate", []), "decontaminate", "[dedup]: ", empty=True)
            ),
            ngram=self.ngram(dedup.get("ngram", DEFAULT_NGRAM)),
            expected_inputs=expected,
        )

    def table(self, data: dict, name: str, allowed: set[str]) -> dict:
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise self.fail("", f"key '{name}': must be a table of keys")
        self.check_keys(value, allowed, f"[{name}]: ")
        return {_norm(k): v for k, v in value.items()}

    def options(self, data: dict, where: str, skip: set[str]) -> dict[str, Any]:
        options: dict[str, Any] = {}
        for key, value in data.items():
            if _norm(key) in skip:
                continue
            name = OPTION_KEYS[_norm(key)]
            options[name] = self.value(name, value, where, key)
        return options

    def value(self, name: str, value: Any, where: str, key: str) -> Any:
        if name in _TABLES:
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise self.fail(
                    where, f"key '{key}': must be a table of names to text, e.g. {{question = \"q\"}}"
                )
            return dict(value)
        if name in _BOOLS:
            return self.flag({key: value}, key, where)
        if name in _INTS:
            if not isinstance(value, int) or isinstance(value, bool):
                raise self.fail(where, f"key '{key}': must be an integer, got {value!r}")
            return value
        if not isinstance(value, str):
            raise self.fail(where, f"key '{key}': must be text, got {value!r}")
        if name == "tokenizer" and (self.base / value).exists():
            return os.path.normpath(self.base / value)
        if (name == "template" and value.endswith(".toml")) or value.endswith((".jinja", ".j2")):
            return os.path.normpath(self.base / value)
        return value

    def flag(self, data: dict, key: str, where: str) -> bool:
        value = data.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(where, f"key '{key}': must be true or false, got {value!r}")
        return value

    def source(self, data: Any, index: int) -> Source:
        if not isinstance(data, dict):
            raise self.fail(f"sources[{index}]: ", "a source is a table with at least 'path'")
        label = f"sources[{index}]" + (f" ({data['name']})" if isinstance(data.get("name"), str) else "")
        where = label + ": "
        self.check_keys(data, SOURCE_KEYS, where)
        if "path" not in data:
            raise self.fail(where, "key 'path' is missing: give a file, a glob or a list of them")
        paths = self.paths(data["path"], "path", where)
        name = data.get("name", _name_from(paths[0]))
        if not isinstance(name, str) or not name:
            raise self.fail(where, f"key 'name': must be non-empty text, got {name!r}")
        weight = data.get("weight", 1)
        if not isinstance(weight, int | float) or isinstance(weight, bool) or not math.isfinite(weight):
            raise self.fail(where, f"key 'weight': must be a number, got {weight!r}")
        if weight < 0:
            raise self.fail(where, f"key 'weight': must be 0 or more, got {weight}")
        options = self.options(data, where, skip={"path", "name", "weight"})
        return Source(name=name, paths=tuple(paths), weight=float(weight), options=options)

    def paths(self, value: Any, key: str, where: str, empty: bool = False) -> list[str]:
        items = value if isinstance(value, list) else [value]
        if not items and empty:
            return []
        if not items or not all(isinstance(p, str) and p for p in items):
            raise self.fail(where, f"key '{key}': must be a file name, a glob or a list of them")
        if "-" in items:  # a recipe reads each source twice (scan, then build): stdin cannot be read twice
            raise self.fail(where, f"key '{key}': '-' (stdin) cannot be a recipe source; give a file")
        resolved = [p if storage.is_url(p) else os.path.normpath(self.base / p) for p in items]
        try:
            expand_inputs(resolved)
        except InputError as exc:
            raise self.fail(where, f"key '{key}': {exc}") from None
        return resolved

    def validation(self, value: Any) -> float | int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail("[split]: ", f"key 'validation': must be a fraction or a count, got {value!r}")
        if (isinstance(value, int) and value < 1) or (isinstance(value, float) and not 0 < value < 1):
            raise self.fail("[split]: ", f"key 'validation': a fraction must be in (0, 1) and a count at "
                            f"least 1, got {value}")  # fmt: skip
        return value

    def ngram(self, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise self.fail("[dedup]: ", f"key 'ngram': must be a positive integer, got {value!r}")
        return value


def _norm(key: str) -> str:
    return key.replace("_", "-")


def _name_from(path: str) -> str:
    """``data/qa.jsonl`` -> ``qa``; ``data/*.jsonl`` -> ``data``."""
    base = os.path.basename(path.rstrip("/"))
    if any(c in base for c in "*?["):
        return os.path.basename(os.path.dirname(path)) or "source"
    for suffix in (".gz", ".jsonl", ".json", ".csv", ".tsv", ".parquet"):
        base = base.removesuffix(suffix)
    return base or "source"
