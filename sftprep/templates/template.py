"""The template itself: its file format, placeholders, and loading (shipped by name or a file).

``"Q: {q} A:"`` compiles to literal pieces and field names (``{{``/``}}`` are literal braces),
checked once when the template loads; :mod:`sftprep.templates.render` fills them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sftprep.errors import TemplateError

PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|\{|\}")


def configs_dir() -> Path:
    """The folder of shipped templates.

    A wheel carries them as ``sftprep/configs``; a source checkout (editable
    install, tests) has them at the top-level ``configs/``.
    """
    package = Path(__file__).resolve().parents[1]  # sftprep/
    packaged = package / "configs"
    if packaged.is_dir():
        return packaged
    return package.parent / "configs"


def shipped_templates() -> dict[str, Path]:
    """Names of the shipped templates and their files, sorted by name."""
    return {p.stem: p for p in sorted(configs_dir().glob("*.toml"))}


def compile_text(text: str, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split a template string into literal pieces and field names.

    ``"Q: {q} A:"`` -> ``(("Q: ", " A:"), ("q",))``: the literals are one
    longer than the fields, so rendering is a simple interleave.
    """
    literals: list[str] = []
    names: list[str] = []
    current: list[str] = []
    pos = 0
    for match in PLACEHOLDER.finditer(text):
        current.append(text[pos : match.start()])
        pos = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            current.append(token[0])
        elif match.group(1):
            literals.append("".join(current))
            current = []
            names.append(match.group(1))
        else:
            raise TemplateError(
                f"{where}: unmatched '{token}' at character {match.start()} "
                "(write '{{' or '}}' for a literal brace)"
            )
    current.append(text[pos:])
    literals.append("".join(current))
    return tuple(literals), tuple(names)


@dataclass(frozen=True)
class Compiled:
    """A compiled template string: ``literals`` interleaved with the values of ``names``."""

    literals: tuple[str, ...]
    names: tuple[str, ...]

    def render(self, values: Mapping[str, str]) -> str:
        """The string with each name replaced by its value."""
        parts = [self.literals[0]]
        for name, literal in zip(self.names, self.literals[1:], strict=True):
            parts.append(values[name])
            parts.append(literal)
        return "".join(parts)


@dataclass(frozen=True)
class Template:
    """A prompt/target template.

    Attributes:
        name: the template's name (``qa``).
        prompt: the prompt text with ``{field}`` placeholders.
        target: the target text; by the shipped templates' rule it starts with
            the separator (a space or newline).
        fields: template field -> record keys to try, in order.
        optional: fields that may be empty or absent (rendered as "").
        prompt_if_empty: optional field -> the prompt used when it is empty.
        vars: values for placeholders that do not come from the record.
        markers: marker strings (``<SUMMARY>``) that ``--markers special`` adds
            to the tokenizer as special tokens.
        language_pair: a record key holding ``{src_code: text, tgt_code: text}``.
        source_text: the template file's text (hashed into the manifest).
    """

    name: str
    prompt: str
    target: str
    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    optional: frozenset[str] = frozenset()
    prompt_if_empty: dict[str, str] = field(default_factory=dict)
    vars: dict[str, str] = field(default_factory=dict)
    markers: tuple[str, ...] = ()
    language_pair: str | None = None
    description: str = ""
    source_text: str = ""

    @property
    def placeholders(self) -> list[str]:
        """Every placeholder used by the prompt(s) and target, in order, once."""
        seen: dict[str, None] = {}
        for text in (self.prompt, self.target, *self.prompt_if_empty.values()):
            for name in compile_text(text, self.name)[1]:
                seen.setdefault(name)
        return list(seen)

    @property
    def record_fields(self) -> list[str]:
        """The placeholders filled from the record (not from ``vars``)."""
        return [n for n in self.placeholders if n not in self.vars]

    @property
    def required(self) -> list[str]:
        return [n for n in self.record_fields if n not in self.optional]


def load_template(spec: str) -> Template:
    """Load a shipped template by name, or a user's template file by path.

    Raises:
        TemplateError: unknown name, unreadable or invalid file.
    """
    shipped = shipped_templates()
    if spec in shipped:
        path = shipped[spec]
    else:
        path = Path(spec)
        if not path.is_file():
            names = ", ".join(shipped)
            raise TemplateError(f"unknown template '{spec}': not a shipped template ({names}) nor a file")
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TemplateError(f"{path}: cannot load template: {exc}") from None
    return template_from_dict(data, where=str(path), source_text=text, default_name=path.stem)


def template_from_dict(
    data: Mapping[str, Any], *, where: str = "<template>", source_text: str = "",
    default_name: str = "custom",
) -> Template:  # fmt: skip
    """Validate a parsed template file and build a :class:`Template`."""
    problems = []
    for key in ("prompt", "target"):
        if not isinstance(data.get(key), str):
            problems.append(f"'{key}' must be a string")
    known = {"name", "description", "prompt", "target", "fields", "optional",
             "prompt_if_empty", "vars", "markers", "language_pair"}  # fmt: skip
    problems += [f"unknown key '{k}'" for k in data if k not in known]
    if problems:
        raise TemplateError(f"{where}: " + "; ".join(problems))
    fields = {str(k): tuple(v) if isinstance(v, list) else (str(v),)
              for k, v in dict(data.get("fields", {})).items()}  # fmt: skip
    template = Template(
        name=str(data.get("name", default_name)),
        description=str(data.get("description", "")),
        prompt=data["prompt"],
        target=data["target"],
        fields=fields,
        optional=frozenset(data.get("optional", ())),
        prompt_if_empty={str(k): str(v) for k, v in dict(data.get("prompt_if_empty", {})).items()},
        vars={str(k): str(v) for k, v in dict(data.get("vars", {})).items()},
        markers=tuple(str(m) for m in data.get("markers", ())),
        language_pair=dict(data.get("language_pair", {})).get("field"),
        source_text=source_text,
    )
    for text in (template.prompt, template.target, *template.prompt_if_empty.values()):
        compile_text(text, where)  # raises on a malformed placeholder
    if not compile_text(template.target, where)[1]:
        raise TemplateError(f"{where}: the target has no field: nothing would be trained")
    unknown_optional = set(template.prompt_if_empty) - template.optional
    if unknown_optional:
        raise TemplateError(
            f"{where}: prompt_if_empty names fields that are not optional: "
            + ", ".join(sorted(unknown_optional))
        )
    return template


def lookup_key(template: Template, name: str, record: Mapping[str, Any]) -> str | None:
    """The first of a field's usual key names that ``record`` has, or None."""
    for key in template.fields.get(name, (name,)):
        if key in record:
            return key
    return None


def parse_assignments(items: Sequence[str], option: str) -> dict[str, str]:
    """Parse ``NAME=VALUE`` command-line items into a dict."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise TemplateError(f"{option} expects NAME=VALUE, got '{item}'")
        out[name.strip()] = value
    return out
