"""Read training records from JSONL, JSON, CSV/TSV and Parquet inputs, one at a time.

The reader is the first step of the build (read -> render -> tokenize -> label -> write). It
streams: memory stays flat however large the input, except for one record at a time (at most
``max_record_bytes``). It never loses a record silently: every record it meets is yielded, either
with its parsed ``data`` or with an ``error`` saying what is wrong, so the build can stop on it or
count it under its reason code. Only problems with a whole file (missing, unreadable, not gzip,
no CSV header, ...) raise :class:`~sftprep.errors.InputError`.

A ``.jsonl`` or ``.ndjson`` name (also ``.gz``) means JSON Lines. Other formats are sniffed from
the content, not trusted from the file name (``.json`` files are often JSON Lines): ``[``
starts a JSON array; ``{`` starts JSON Lines, unless the first line is an unfinished JSON value,
which makes it one (or more) pretty-printed JSON objects; ``PAR1`` is Parquet; anything else is
CSV or TSV, told by the extension or by the header line. Gzip is decompressed by the ``.gz``
suffix or by its magic bytes.

Modules: ``base`` (the :class:`Record`, the format registry, shared messages), ``opening``
(globs, files, URLs, stdin), ``sniff`` (which format), ``input_file`` (:class:`InputFile`),
``validate`` (a JSON value as a training record), and one module per format: ``jsonl``,
``json``, ``csv`` (CSV and TSV), ``parquet``. A new format is one new module that calls
:func:`base.register`, imported below.

Example::

    for record in read_records(expand_inputs(["data/*.jsonl"])):
        if record.error:
            print(record.error)          # data.jsonl:17: malformed JSON: ...
        else:
            use(record.data)
"""

from __future__ import annotations

# The format modules register themselves, in this order (FORMATS and messages list them so).
# isort: off
from sftprep.readers import jsonl, json, csv, parquet  # noqa: F401

# isort: on
from sftprep.readers.base import DEFAULT_MAX_RECORD_BYTES, REGISTRY, STDIN_NAME, Record
from sftprep.readers.input_file import InputFile, read_records
from sftprep.readers.jsonl import settle
from sftprep.readers.opening import expand_inputs
from sftprep.readers.validate import MAX_DEPTH

FORMATS = tuple(REGISTRY)

__all__ = [
    "DEFAULT_MAX_RECORD_BYTES",
    "FORMATS",
    "MAX_DEPTH",
    "STDIN_NAME",
    "InputFile",
    "Record",
    "expand_inputs",
    "read_records",
    "settle",
]
