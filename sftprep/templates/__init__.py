"""Prompt templates: turn one record into a (prompt, target) pair of strings.

A template is a small TOML file (the shipped ones live in ``configs/``)::

    name = "qa"
    prompt = "Question: {question} Answer:"
    target = " {answer}"
    [fields]
    question = ["question", "problem"]   # record keys tried in order
    answer = ["answer"]

``{name}`` is a template field, filled from the record (or from ``[vars]`` /
``--var`` for values that are not in the data); ``{{`` and ``}}`` are literal
braces. Field values are inserted as they are: braces inside the *data* are
never interpreted.

Where each field comes from is decided once per build, from the command line
(``--field answer=a``, ``--field source=translation.de``) or, failing that,
from the template's list of usual key names. Paths select inside nested
objects and lists: ``translation.de``, ``answer.0``.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sftprep.errors import RecordError, TemplateError

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|\{|\}")

# Language names for the codes found in Hugging Face translation data, so that
# {"translation": {"de": ..., "en": ...}} renders as "German: ... English:".
LANGUAGE_NAMES = {
    "ar": "Arabic", "cs": "Czech", "da": "Danish", "de": "German", "el": "Greek",
    "en": "English", "es": "Spanish", "et": "Estonian", "fi": "Finnish",
    "fr": "French", "hi": "Hindi", "hu": "Hungarian", "is": "Icelandic",
    "it": "Italian", "ja": "Japanese", "ko": "Korean", "lt": "Lithuanian",
    "lv": "Latvian", "nl": "Dutch", "no": "Norwegian", "pl": "Polish",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sv": "Swedish",
    "tr": "Turkish", "uk": "Ukrainian", "zh": "Chinese",
}  # fmt: skip


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


def _compile(text: str, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split a template string into literal pieces and field names.

    ``"Q: {q} A:"`` -> ``(("Q: ", " A:"), ("q",))``: the literals are one
    longer than the fields, so rendering is a simple interleave.
    """
    literals: list[str] = []
    names: list[str] = []
    current: list[str] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(text):
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
class _Compiled:
    literals: tuple[str, ...]
    names: tuple[str, ...]

    def render(self, values: Mapping[str, str]) -> str:
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
            for name in _compile(text, self.name)[1]:
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
        _compile(text, where)  # raises on a malformed placeholder
    if not _compile(template.target, where)[1]:
        raise TemplateError(f"{where}: the target has no field: nothing would be trained")
    unknown_optional = set(template.prompt_if_empty) - template.optional
    if unknown_optional:
        raise TemplateError(
            f"{where}: prompt_if_empty names fields that are not optional: "
            + ", ".join(sorted(unknown_optional))
        )
    return template


# --- choosing a template from the data -------------------------------------


def _lookup_key(template: Template, name: str, record: Mapping[str, Any]) -> str | None:
    for key in template.fields.get(name, (name,)):
        if key in record:
            return key
    return None


def match_score(template: Template, record: Mapping[str, Any]) -> int | None:
    """How well a template's fields fit a record: None if a required one is missing.

    A field found under its own name scores 2, under another usual name 1. So
    ``alpaca`` (instruction, input, output) beats ``instruction`` (instruction,
    response) on ``{instruction, input, response}``, and loses to it on
    ``{instruction, response}``.
    """
    pair = template.language_pair
    if pair and isinstance(record.get(pair), Mapping) and len(record[pair]) == 2:
        return 4
    score = 0
    for name in template.record_fields:
        key = _lookup_key(template, name, record)
        if key is not None:
            score += 2 if key == name else 1
        elif name not in template.optional:
            return None
    return score


def detect_template(record: Mapping[str, Any], where: str) -> Template:
    """Choose the shipped template whose fields best fit ``record``.

    Raises:
        TemplateError: no template fits, or several fit equally well.
    """
    scored = []
    for name in shipped_templates():
        template = load_template(name)
        score = match_score(template, record)
        if score is not None:
            scored.append((score, template))
    keys = ", ".join(record) or "none"
    if not scored:
        raise TemplateError(
            f"{where}: no shipped template fits the fields of this record ({keys}); "
            "choose one with --template and map fields with --field NAME=KEY"
        )
    best = max(score for score, _ in scored)
    winners = [t for score, t in scored if score == best]
    if len(winners) > 1:
        names = ", ".join(t.name for t in winners)
        raise TemplateError(
            f"{where}: the fields of this record ({keys}) fit several templates "
            f"equally well ({names}); choose one with --template"
        )
    return winners[0]


# --- rendering ----------------------------------------------------------------


def _blank(text: str) -> bool:
    """Empty or whitespace only (without copying the text, as ``strip`` would)."""
    return not text or text.isspace()


def _resolve(record: Any, path: str) -> Any:
    """Follow a dotted path into nested objects and lists.

    A key that exists verbatim wins, so a column really named ``a.b`` works.
    Raises KeyError with the part of the path that was not found.
    """
    if isinstance(record, Mapping) and path in record:
        return record[path]
    value = record
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(part)
    return value


def _as_text(value: Any, where: str, name: str, path: str) -> str:
    """Turn a field value into text, or raise a RecordError saying why not.

    Strings are used as they are. Numbers and booleans are converted as JSON
    writes them (``3``, ``2.5``, ``true``), so a CSV and a JSONL file of the
    same data render alike. Lists and objects are an error: which element to
    train on is the user's choice (``--field answer=answer.0``).
    """
    if isinstance(value, str):
        if "\x00" in value:
            raise RecordError(where, "nul_byte", "contains a NUL character (\\u0000)", name)
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    if value is None:
        raise RecordError(where, "null_field", f"'{path}' is null", name)
    kind = "a list" if isinstance(value, list) else f"an object ({type(value).__name__})"
    if isinstance(value, Mapping):
        kind = "an object with keys " + ", ".join(map(str, value))
    hint = f"{path}.0" if isinstance(value, list) else f"{path}.KEY"
    raise RecordError(
        where, "not_a_string",
        f"'{path}' is {kind}, expected a string (select inside it, e.g. --field {name}={hint})",
        name,
    )  # fmt: skip


@dataclass(frozen=True)
class Renderer:
    """A template bound to where each field comes from; renders records fast.

    Build one with :func:`bind_template`, once per build.
    """

    template: Template
    paths: dict[str, str]  # template field -> record path
    values: dict[str, str]  # fixed values (vars)
    _prompt: _Compiled
    _target: _Compiled
    _if_empty: tuple[tuple[str, _Compiled], ...]
    controls: re.Pattern[str] | None = None  # see with_control_tokens()
    eos: str | None = None
    bos: str | None = None

    def with_control_tokens(self, tokens: Sequence[str], eos: str | None, bos: str | None = None) -> Renderer:
        """This renderer, also rejecting records whose fields contain one of ``tokens``.

        A field's text containing ``</s>`` or ``<|endoftext|>`` would be tokenized as that
        control token, not as text: in a target, the model would learn to stop mid-answer.
        Such a record is rejected (``control_token_in_text``), naming the field and token.
        The exceptions are a target that ends with the EOS text, whose EOS is the row's own
        (``eos_in_text``; no second one is appended), and a prompt that starts with the BOS
        text (``double_bos_removed``). Only record fields are checked, not the template's
        text or ``--var`` values, which may hold markers on purpose.

        Args:
            tokens: the control tokens' strings (``TokenizerInfo.control_tokens()``).
            eos: the EOS token's string.
            bos: the BOS token's string, if any.
        """
        pattern = re.compile("|".join(map(re.escape, tokens))) if tokens else None
        return replace(self, controls=pattern, eos=eos, bos=bos)

    def render(self, record: Mapping[str, Any], where: str) -> tuple[str, str]:
        """Return ``(prompt, target)`` for one record.

        Raises:
            RecordError: a missing, null, non-text or (for the target) empty field.
        """
        values = dict(self.values)
        for name, path in self.paths.items():
            try:
                value = _resolve(record, path)
            except KeyError:
                if name in self.template.optional:
                    values[name] = ""
                    continue
                found = ", ".join(map(str, record)) or "none"
                raise RecordError(
                    where, "missing_field", f"missing '{path}' (found: {found})", name
                ) from None
            values[name] = _as_text(value, where, name, path)
        target = self._target.render(values)
        if all(_blank(values[n]) for n in self._target.names if n in self.paths):
            raise RecordError(where, "empty_target", "the target is empty", self._target.names[0])
        prompt = self._prompt
        for name, alternative in self._if_empty:
            if _blank(values[name]):
                prompt = alternative
                break
        prompt_text = prompt.render(values)
        if self.controls is not None:
            self._check_controls(values, prompt, prompt_text, target, where)
        return prompt_text, target

    def _check_controls(
        self, values: dict[str, str], prompt: _Compiled, prompt_text: str, target: str, where: str
    ) -> None:
        assert self.controls is not None
        for name, path in self.paths.items():
            text = values[name]
            start, end = 0, len(text)
            # The two documented exceptions: a prompt that starts with the BOS text (its BOS;
            # a second one from the post-processor is removed, double_bos_removed) and a target
            # that ends with the EOS text (its EOS; none is appended, eos_in_text).
            if (
                self.bos
                and text.startswith(self.bos)
                and name in prompt.names
                and prompt_text.startswith(text)
            ):
                start = len(self.bos)
            if self.eos and text.endswith(self.eos) and name in self._target.names and target.endswith(text):
                end -= len(self.eos)
            found = self.controls.search(text, start, max(start, end))
            if found is None:
                continue
            token = found.group()
            hint = ""
            if token == self.eos and name in self._target.names:
                hint = " (the model would learn to stop there; a target may end with the EOS token, nowhere else)"
            raise RecordError(
                where,
                "control_token_in_text",
                f"'{path}' contains the special token {token!r} at character {found.start()}, "
                f"which would be tokenized as a control token, not as text{hint}",
                name,
            )


def bind_template(
    template: Template,
    field_map: Mapping[str, str] | None = None,
    variables: Mapping[str, str] | None = None,
    first_record: Mapping[str, Any] | None = None,
) -> Renderer:
    """Decide where each template field comes from and return a renderer.

    Args:
        template: the template.
        field_map: ``--field`` mappings, template field -> record path.
        variables: ``--var`` values, overriding the template's ``[vars]``.
        first_record: the first good record, used to pick keys from the
            template's alias lists and to read a language pair.

    Raises:
        TemplateError: a mapping or variable names a field the template lacks.
    """
    field_map = dict(field_map or {})
    variables = dict(variables or {})
    known = set(template.placeholders)
    unknown = sorted((set(field_map) | set(variables)) - known)
    if unknown:
        raise TemplateError(
            f"template '{template.name}' has no field {', '.join(map(repr, unknown))} "
            f"(its fields: {', '.join(template.placeholders)})"
        )
    values = {**template.vars, **variables}
    paths: dict[str, str] = {}
    record = first_record or {}
    pair = template.language_pair
    use_pair = (
        pair is not None
        and not field_map
        and isinstance(record.get(pair), Mapping)
        and len(record[pair]) == 2
    )
    if use_pair:
        assert pair is not None
        src, tgt = list(record[pair])
        paths = {"source": f"{pair}.{src}", "target": f"{pair}.{tgt}"}
        for name, code in (("source_lang", src), ("target_lang", tgt)):
            if name not in variables:
                values[name] = LANGUAGE_NAMES.get(code, code)
    for name in template.placeholders:
        if name in paths or (name in values and name not in field_map):
            continue
        if name in field_map:
            paths[name] = field_map[name]
        else:
            paths[name] = _lookup_key(template, name, record) or template.fields.get(name, (name,))[0]
    if_empty = tuple(
        (name, _Compiled(*_compile(text, template.name))) for name, text in template.prompt_if_empty.items()
    )
    return Renderer(
        template=template,
        paths=paths,
        values={k: v for k, v in values.items() if k not in paths},
        _prompt=_Compiled(*_compile(template.prompt, template.name)),
        _target=_Compiled(*_compile(template.target, template.name)),
        _if_empty=if_empty,
    )


def parse_assignments(items: Sequence[str], option: str) -> dict[str, str]:
    """Parse ``NAME=VALUE`` command-line items into a dict."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise TemplateError(f"{option} expects NAME=VALUE, got '{item}'")
        out[name.strip()] = value
    return out
