"""Pad rows on the right to a fixed length (or a multiple of one), packed and unpacked alike.

Padding is never attended to and never trained: it gets ``attention_mask`` 0 (the column is
added where the rows lack one), ``target_ids``/``labels`` -100 and ``loss_mask`` 0. In packed
rows (:mod:`sftprep.packing`) it is one more segment, with its own ``position_ids``, that no
example attends to.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from sftprep.arrays import list_array, ranges, to_numpy
from sftprep.labels import ID_TYPE, IGNORE_INDEX, MASK_TYPE
from sftprep.options import PAD_TO_CHOICES  # noqa: F401 (its old home: still importable here)
from sftprep.tokenizer import TokenizerInfo

# Columns with one value per token, and what padding fills them with
# (position_ids are handled apart: see pad_batch).
_PAD_FILL = {"target_ids": IGNORE_INDEX, "labels": IGNORE_INDEX, "loss_mask": 0, "attention_mask": 0}


def pad_id_for(info: TokenizerInfo) -> int:
    """The id padding uses: the tokenizer's pad token, else its EOS.

    The fallback is safe because padding is never attended to and never
    trained (attention_mask 0, labels -100), so its id does not matter; EOS is
    used because every tokenizer sftprep loads has one.
    """
    pad = info.token_id(info.pad_token)
    return pad if pad is not None else info.eos_id


def padded_schema(schema: pa.Schema) -> pa.Schema:
    """The schema of padded rows: ``schema`` with an ``attention_mask`` after ``input_ids``.

    Unchanged when it has one already (``--labels hf`` unpacked rows). Any
    metadata is dropped: attach it again with ``writer.with_metadata``, so the
    Hugging Face features it holds list the new column.
    """
    schema = schema.remove_metadata()
    if "attention_mask" in schema.names:
        return schema
    return schema.insert(
        schema.get_field_index("input_ids") + 1, pa.field("attention_mask", pa.list_(MASK_TYPE))
    )


def padded_lengths(
    lengths: np.ndarray, length: int | None = None, multiple_of: int | None = None
) -> np.ndarray:
    """The length each row is padded to: ``length`` (if given), then up to a multiple of ``multiple_of``.

    Example: lengths ``[3, 9]``, ``multiple_of=4`` -> ``[4, 12]``; ``length=8`` -> ``[8, 8]``
    (a row longer than ``length`` raises ValueError).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    out = lengths.copy()
    if length is not None:
        if len(lengths) and lengths.max() > length:
            raise ValueError(f"a row of {lengths.max()} tokens cannot be padded to {length}")
        out[:] = length
    if multiple_of is not None and multiple_of > 1:
        out = -(-out // multiple_of) * multiple_of
    return out


def pad_batch(
    batch: pa.RecordBatch,
    pad_id: int,
    length: int | None = None,
    multiple_of: int | None = None,
    schema: pa.Schema | None = None,
) -> pa.RecordBatch:
    """Pad every row on the right to a fixed length (or a multiple of one).

    Padding gets ``input_ids`` = ``pad_id``, ``attention_mask`` 0 (the column is
    added, 1 on real tokens, if the rows lack one), ``target_ids``/``labels``
    -100 and ``loss_mask`` 0. In packed rows its ``position_ids`` count 0, 1, ...
    again, so the padding is one more segment that nothing attends to; its
    length is the row length minus ``sum(seq_lengths)``, which stay as they were.
    Other columns are unchanged.

    Args:
        batch: sequence or packed rows.
        pad_id: see :func:`pad_id_for`.
        length: pad every row to this length (``--pad-to max-length``).
        multiple_of: then round each row's length up to a multiple of this.
        schema: the schema of the result; default ``padded_schema(batch.schema)``.

    Returns:
        The padded rows.
    """
    schema = schema if schema is not None else padded_schema(batch.schema)
    ids = batch.column("input_ids")
    old_offsets = to_numpy(ids.offsets)
    old_len = np.diff(old_offsets)
    new_len = padded_lengths(old_len, length, multiple_of)
    new_offsets = np.zeros(len(new_len) + 1, dtype=np.int64)
    np.cumsum(new_len, out=new_offsets[1:])
    # Where each existing token goes, and which new slots are real.
    where = ranges(new_offsets[:-1], old_len)
    real = np.zeros(int(new_offsets[-1]), dtype=bool)
    real[where] = True
    columns = []
    for f in schema:
        if f.name not in batch.schema.names:  # attention_mask, added
            columns.append(list_array(new_offsets, real.astype(np.int8), MASK_TYPE))
            continue
        column = batch.column(f.name)
        if f.name == "input_ids":
            columns.append(_scatter(column, where, real, new_offsets, pad_id))
        elif f.name == "position_ids":
            columns.append(_pad_positions(column, where, real, new_offsets, old_len))
        elif f.name in _PAD_FILL:
            columns.append(_scatter(column, where, real, new_offsets, _PAD_FILL[f.name]))
        else:
            columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _flat(column: pa.ListArray) -> np.ndarray:
    return to_numpy(column.flatten())


def _scatter(column: pa.ListArray, where, real, new_offsets, fill) -> pa.Array:
    values = _flat(column)
    out = np.full(len(real), fill, dtype=values.dtype)
    out[where] = values
    return list_array(new_offsets, out, column.type.value_type)


def _pad_positions(column: pa.ListArray, where, real, new_offsets, old_len) -> pa.Array:
    out = np.zeros(len(real), dtype=np.int32)
    out[where] = _flat(column)
    pad_len = np.diff(new_offsets) - old_len
    pad_start = new_offsets[:-1] + old_len
    pad_slots = np.flatnonzero(~real)
    out[pad_slots] = pad_slots - np.repeat(pad_start, pad_len)
    return list_array(new_offsets, out, ID_TYPE)
