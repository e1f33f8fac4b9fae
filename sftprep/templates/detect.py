"""Choosing a shipped template from the data: the one whose fields best fit the first record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sftprep.errors import TemplateError
from sftprep.templates.template import Template, load_template, lookup_key, shipped_templates


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
        key = lookup_key(template, name, record)
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
