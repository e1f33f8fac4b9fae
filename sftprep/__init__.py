"""sftprep: supervised fine-tuning data -> tokenized training rows with correct labels.

The library behind the ``sftprep`` command. The pipeline, one module a step:
``readers`` (files -> records) -> ``templates`` (record -> prompt, target) ->
``encode`` (-> ids and prompt length) -> ``labels`` (-> labels, masks, Arrow
rows) -> ``writer`` (-> shards); ``build`` runs them in a streaming loop.

What a build is asked to do: ``options`` (every option's choices; standard
library only) and ``config`` (``BuildConfig``: the one place defaults live, and
its checks). The command line is the ``cli`` package: ``cli.flags`` (the build's
flags as decorator bundles, shared by ``build`` and ``inspect --preview``),
``cli.errors`` (errors -> one line and an exit code from ``errors``),
``cli.output`` (summaries), and one module per command (``build``, ``inspect``,
``merge``, ``verify`` with ``diff``, ``export``, ``templates``), each importing
its library module only when it runs.

The public names below are imported on first use, so that ``import sftprep``
(and the command line's start-up, which must react to Ctrl-C at once) stays
cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "BuildConfig": "sftprep.build",
    "BuildResult": "sftprep.build",
    "run_build": "sftprep.build",
    "ConfigError": "sftprep.errors",
    "DataError": "sftprep.errors",
    "InputError": "sftprep.errors",
    "OutputError": "sftprep.errors",
    "RecordError": "sftprep.errors",
    "SftprepError": "sftprep.errors",
    "TemplateError": "sftprep.errors",
    "TokenizerError": "sftprep.errors",
    "export_build": "sftprep.exports",
    "open_batches": "sftprep.exports",
    "IGNORE_INDEX": "sftprep.labels",
    "InputFile": "sftprep.readers",
    "Record": "sftprep.readers",
    "read_records": "sftprep.readers",
    "Recipe": "sftprep.recipe",
    "Source": "sftprep.recipe",
    "load_recipe": "sftprep.recipe",
    "run_recipe": "sftprep.recipe_build",
    "Template": "sftprep.templates",
    "bind_template": "sftprep.templates",
    "load_template": "sftprep.templates",
    "TokenizerInfo": "sftprep.tokenizer",
    "load_tokenizer": "sftprep.tokenizer",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sftprep' has no attribute {name!r}")
