"""Outputs other trainers read: Parquet with a dataset card, MosaicML MDS, Megatron indexed datasets.

See :mod:`sftprep.exports.base` for the layout and the one conversion both
``sftprep build --output-format`` and ``sftprep export`` use.
"""

from sftprep.exports.base import (
    EXPORT_FORMATS,
    FORMATS,
    MissingExtra,
    convert_staged,
    export_build,
    open_batches,
    output_format,
    output_format_problems,
    require,
    write_format,
    write_splits,
)

__all__ = [
    "EXPORT_FORMATS",
    "FORMATS",
    "MissingExtra",
    "convert_staged",
    "export_build",
    "open_batches",
    "output_format",
    "output_format_problems",
    "require",
    "write_format",
    "write_splits",
]
