"""MosaicML MDS: one folder per split, written by ``streaming``'s own ``MDSWriter``.

Token columns are ``ndarray`` encodings of their own dtype (``ndarray:int32``
ids, ``ndarray:int8`` masks), so a sample comes back from
``streaming.StreamingDataset(local=...)`` or ``(remote="s3://...", local=cache)``
as NumPy arrays, ready to be tensors. Other columns map to MDS scalar encodings;
Arrow types MDS has no encoding for are stored in the nearest one (booleans as
``uint8``, lists of strings as ``json``) and turned back by :func:`read_split`
with the schema in ``schema.arrows``. The card's facts are in the sidecar
``card.json`` next to the split folders.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from sftprep.errors import ConfigError, InputError
from sftprep.labels import NULLABLE

_SCALARS = {pa.int8(): "int8", pa.int16(): "int16", pa.int32(): "int32", pa.int64(): "int64",
            pa.bool_(): "uint8", pa.string(): "str", pa.float32(): "float32", pa.float64(): "float64"}  # fmt: skip
_READ_BATCH = 4096
# MDSWriter holds a whole shard in memory (as one bytes object per sample) until it
# is full, so shards are capped at streaming's own default size to keep memory flat.
MAX_SHARD_BYTES = 1 << 26


def encoding(field: pa.Field) -> str:
    """The MDS encoding ``field`` is written in: ``list<int32>`` -> ``ndarray:int32``.

    Columns that hold nulls (``turn``) are ``json``: MDS's numeric encodings have no null.
    """
    arrow_type = field.type
    if field.name in NULLABLE:
        return "json"
    if pa.types.is_list(arrow_type):
        value = arrow_type.value_type
        if pa.types.is_string(value):
            return "json"
        if pa.types.is_boolean(value):
            return "ndarray:uint8"
        if pa.types.is_integer(value) or pa.types.is_floating(value):
            return f"ndarray:{value.to_pandas_dtype().__name__}"
    if arrow_type in _SCALARS:
        return _SCALARS[arrow_type]
    raise ConfigError(f"the mds format cannot hold a column of type {arrow_type}")


def _column_values(name: str, column: pa.Array) -> list[Any]:
    """A column as per-row Python/NumPy values in the form its encoding takes."""
    kind = column.type
    if name in NULLABLE:
        return column.to_pylist()
    if pa.types.is_list(kind) and not pa.types.is_string(kind.value_type):
        values = column.flatten().to_numpy(zero_copy_only=False)
        if pa.types.is_boolean(kind.value_type):
            values = values.astype(np.uint8)
        offsets = column.offsets.to_numpy() - column.offsets[0].as_py()
        return [values[a:b] for a, b in itertools.pairwise(offsets)]
    if pa.types.is_boolean(kind):
        return [int(v) for v in column.to_pylist()]
    return column.to_pylist()


def write_split(
    target: Path, split: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch], shard_bytes: int
) -> list[tuple[str, int]]:
    """Write one split's rows with ``MDSWriter`` into ``target/split/``.

    Returns:
        ``(path relative to target, rows)`` per file (shards, then ``index.json``).
    """
    import json

    from streaming import MDSWriter

    folder = Path(target) / split
    columns = {f.name: encoding(f) for f in schema}
    rows = 0
    with MDSWriter(columns=columns, out=str(folder), size_limit=min(shard_bytes, MAX_SHARD_BYTES)) as writer:
        for batch in batches:
            values = [_column_values(n, c) for n, c in zip(schema.names, batch.columns, strict=True)]
            for row in zip(*values, strict=True):
                writer.write(dict(zip(schema.names, row, strict=True)))
            rows += batch.num_rows
    index = json.loads((folder / "index.json").read_text())
    files = [(f"{split}/{s['raw_data']['basename']}", int(s["samples"])) for s in index["shards"]]
    return [*files, (f"{split}/index.json", rows)]


def read_split(directory: Path, split: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """One split's rows, read with ``streaming.LocalDataset``, as record batches of ``schema``."""
    from streaming import LocalDataset

    try:
        dataset = LocalDataset(local=str(directory), split=split)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{Path(directory) / split}: cannot read MDS: {exc}") from None
    for start in range(0, len(dataset), _READ_BATCH):
        samples = [dataset[i] for i in range(start, min(start + _READ_BATCH, len(dataset)))]
        yield to_batch(samples, schema)


def to_batch(samples: list[dict[str, Any]], schema: pa.Schema) -> pa.RecordBatch:
    """MDS samples (dicts of column values) -> one record batch of ``schema``."""
    arrays = []
    for field in schema:
        values = [s[field.name] for s in samples]
        kind = field.type
        if field.name in NULLABLE:
            arrays.append(pa.array(values, kind))
        elif pa.types.is_list(kind) and not pa.types.is_string(kind.value_type):
            lengths = np.fromiter((len(v) for v in values), np.int32, len(values))
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
            flat = np.concatenate(values) if values else np.zeros(0)
            inner = pa.array(
                flat.astype(bool) if pa.types.is_boolean(kind.value_type) else flat, kind.value_type
            )
            arrays.append(pa.ListArray.from_arrays(pa.array(offsets), inner, type=kind))
        elif pa.types.is_boolean(kind):
            arrays.append(pa.array([bool(v) for v in values], kind))
        else:
            arrays.append(pa.array([v.item() if isinstance(v, np.generic) else v for v in values], kind))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
