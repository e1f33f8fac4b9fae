"""sftprep: supervised fine-tuning data -> tokenized training rows with correct labels.

The library behind the ``sftprep`` command. The pipeline, one module a step:
``readers`` (files -> records) -> ``templates`` (record -> prompt, target) ->
``encode`` (-> ids and prompt length) -> ``labels`` (-> labels, masks, Arrow
rows) -> ``writer`` (-> shards); ``build`` runs them in a streaming loop.
"""

__version__ = "0.1.0"

from sftprep.build import BuildConfig, BuildResult, run_build
from sftprep.errors import (
    ConfigError,
    DataError,
    InputError,
    OutputError,
    RecordError,
    SftprepError,
    TemplateError,
    TokenizerError,
)
from sftprep.labels import IGNORE_INDEX
from sftprep.templates import Template, bind_template, load_template
from sftprep.tokenizer import TokenizerInfo, load_tokenizer

__all__ = [
    "IGNORE_INDEX",
    "BuildConfig",
    "BuildResult",
    "ConfigError",
    "DataError",
    "InputError",
    "OutputError",
    "RecordError",
    "SftprepError",
    "Template",
    "TemplateError",
    "TokenizerError",
    "TokenizerInfo",
    "__version__",
    "bind_template",
    "load_template",
    "load_tokenizer",
    "run_build",
]
