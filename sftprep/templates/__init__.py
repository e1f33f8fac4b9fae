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

Modules: ``template`` (the file format, placeholders, loading), ``detect`` (choosing a
shipped template from the data), ``render`` (binding fields to record paths, rendering).
"""

from __future__ import annotations

from sftprep.templates.detect import detect_template, match_score
from sftprep.templates.render import LANGUAGE_NAMES, Renderer, bind_template
from sftprep.templates.template import (
    Template,
    configs_dir,
    load_template,
    parse_assignments,
    shipped_templates,
    template_from_dict,
)

__all__ = [
    "LANGUAGE_NAMES",
    "Renderer",
    "Template",
    "bind_template",
    "configs_dir",
    "detect_template",
    "load_template",
    "match_score",
    "parse_assignments",
    "shipped_templates",
    "template_from_dict",
]
