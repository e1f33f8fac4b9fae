"""Rendering: where each template field comes from in a record, and filling it in.

Where each field comes from is decided once per build (:func:`bind_template`), from the
command line (``--field answer=a``, ``--field source=translation.de``) or, failing that,
from the template's list of usual key names. Paths select inside nested objects and lists:
``translation.de``, ``answer.0``. Field values are inserted as they are: braces inside the
*data* are never interpreted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sftprep.errors import RecordError, TemplateError
from sftprep.templates.template import Compiled, Template, compile_text, lookup_key

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


def blank(text: str) -> bool:
    """Empty or whitespace only (without copying the text, as ``strip`` would)."""
    return not text or text.isspace()


def resolve(record: Any, path: str) -> Any:
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


def as_text(value: Any, where: str, name: str, path: str) -> str:
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
    _prompt: Compiled
    _target: Compiled
    _if_empty: tuple[tuple[str, Compiled], ...]
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
                value = resolve(record, path)
            except KeyError:
                if name in self.template.optional:
                    values[name] = ""
                    continue
                found = ", ".join(map(str, record)) or "none"
                raise RecordError(
                    where, "missing_field", f"missing '{path}' (found: {found})", name
                ) from None
            values[name] = as_text(value, where, name, path)
        target = self._target.render(values)
        if all(blank(values[n]) for n in self._target.names if n in self.paths):
            raise RecordError(where, "empty_target", "the target is empty", self._target.names[0])
        prompt = self._prompt
        for name, alternative in self._if_empty:
            if blank(values[name]):
                prompt = alternative
                break
        prompt_text = prompt.render(values)
        if self.controls is not None:
            self._check_controls(values, prompt, prompt_text, target, where)
        return prompt_text, target

    def _check_controls(
        self, values: dict[str, str], prompt: Compiled, prompt_text: str, target: str, where: str
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
            paths[name] = lookup_key(template, name, record) or template.fields.get(name, (name,))[0]
    if_empty = tuple(
        (name, Compiled(*compile_text(text, template.name)))
        for name, text in template.prompt_if_empty.items()
    )
    return Renderer(
        template=template,
        paths=paths,
        values={k: v for k, v in values.items() if k not in paths},
        _prompt=Compiled(*compile_text(template.prompt, template.name)),
        _target=Compiled(*compile_text(template.target, template.name)),
        _if_empty=if_empty,
    )
