"""sftprep: supervised fine-tuning data -> tokenized training rows with correct labels.

The library behind the ``sftprep`` command. A map of the package, in the order data flows.

**A build** (``build``: read -> render -> tokenize -> label -> pack/pad -> write):

- ``readers/``: files -> records. ``opening`` (globs, local files, URLs, stdin),
  ``sniff`` (the format), ``input_file`` (one input, record by record), ``validate``,
  and one module per format over ``base`` (``jsonl``, ``json``, ``csv``, ``parquet``).
- ``templates/``: record -> (prompt, target). ``template`` (the file format, loading),
  ``detect`` (a shipped template chosen from the data), ``render`` (fields filled in).
- ``chat/``: conversations -> rows trained on the assistant's turns. ``formats`` (records
  -> messages), ``template`` (sandboxed Jinja chat templates), ``planner`` (where each turn
  sits in the render), ``spans``, ``reasoning`` (``<think>`` blocks), ``offsets`` (token
  offsets from ids), ``encoder`` (tokens, trained flags, truncation, rows).
- ``tokenizer`` (loading, special and control tokens), ``encode`` (pairs -> ids and the
  prompt length) with ``boundary`` (where the prompt ends, without offsets), ``labels``
  (labels, masks, the Arrow schema), ``transform`` (the per-batch step that joins them),
  ``packing`` with ``packed_rows`` (packed rows and what training code needs to read
  them), ``padding``.
- ``engines/``: where the per-batch transform runs: ``stream`` (inputs -> numbered
  batches, shared), ``local`` (a process pool), ``ray`` (Ray Data).
- ``writer`` (Arrow shards, atomically), ``storage`` (URLs through fsspec), ``manifest``
  (the output contract: ``manifest.json``), ``digest`` (``content_sha256`` of the rows),
  ``merge`` (slices of ``--num-shards`` -> one build), ``arrays`` (numpy <-> Arrow).
- Recipes (many sources, one dataset): ``recipe`` (the file), ``recipe_build`` (build and
  scan each source, assemble), ``recipe_scan`` (content keys taken while a source builds,
  duplicates, the split), ``recipe_output`` (assembly), ``mixture`` (keys, split, weights),
  ``dedup``.
- ``exports/``: formats other trainers read: ``base`` (the shared contract), ``parquet``,
  ``mds``, ``megatron``, ``card`` (the dataset card).

**Looking at and checking a build**: ``view/`` is ``sftprep inspect`` (``command``,
``source`` and ``preview`` where rows come from, ``choose``, ``rows``, ``text``,
``table``, ``exploded``, ``turns``, ``pieces``, ``stats``, ``export`` for JSON, ``draw``);
``shards`` opens a finished build for reading; ``verify`` with ``rowcheck`` (the row
rules) and ``rebuild`` (``--sources``); ``diff`` compares two builds.

**What a build is asked to do**: ``options`` (every option's choices; standard library
only) and ``config`` (``BuildConfig``: the one place defaults live, and its checks);
``errors`` (the error hierarchy and exit codes). The command line is the ``cli``
package: ``cli.flags`` (the build's flags as decorator bundles, shared by ``build`` and
``inspect --preview``), ``cli.errors`` (errors -> one line and an exit code),
``cli.output`` (summaries), and one module per command (``build``, ``inspect``,
``merge``, ``verify`` with ``diff``, ``export``, ``templates``), each importing its
library module only when it runs; ``__main__`` is the console script.

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
