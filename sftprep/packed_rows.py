"""The packed row: its columns, and what training code needs to read one.

A packed row is several examples end to end (:mod:`sftprep.packing` makes them). Its
per-example lists (``seq_lengths``, ``source_file``, ...) follow the model columns;
``position_ids`` restart at 0 for every example. :func:`cu_seqlens` gives varlen / flash
attention its offsets, :func:`block_causal_mask` the mask for attention implementations
that take one, and :func:`unpack_row` the examples back, as an unpacked build writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from sftprep.labels import ID_TYPE, IGNORE_INDEX, schema_for

__all__ = [
    "PACKED_FIELDS",
    "block_causal_mask",
    "cu_seqlens",
    "packed_schema_for",
    "segment_ids",
    "unpack_row",
]

# Per-example lists in a packed row, after the model columns.
PACKED_FIELDS = [
    pa.field("position_ids", pa.list_(ID_TYPE)),
    pa.field("seq_lengths", pa.list_(ID_TYPE)),
    pa.field("source_file", pa.list_(pa.string())),
    pa.field("source_line", pa.list_(pa.int64())),
    pa.field("num_trained_tokens", pa.int32()),
    pa.field("truncated", pa.list_(pa.bool_())),
    pa.field("boundary_adjusted", pa.list_(pa.bool_())),
    pa.field("turn", pa.list_(pa.int32())),  # per example: its chat turn, or null (labels.py)
]


def packed_schema_for(labels: str) -> pa.Schema:
    """The Arrow schema of packed rows for a label style (``"shifted"`` or ``"hf"``).

    The model columns are those of unpacked rows except ``attention_mask``:
    Hugging Face models read an attention mask as "one sequence per row" and
    then ignore the example boundaries in ``position_ids``, so packed rows carry
    none (padding adds one, see :func:`pad_batch`).
    """
    model = [
        f
        for f in schema_for("sequence", labels)
        if f.name in ("input_ids", "target_ids", "loss_mask", "labels")
    ]
    return pa.schema(model + PACKED_FIELDS)


def cu_seqlens(seq_lengths: Sequence[int]) -> np.ndarray:
    """Cumulative example lengths, as varlen attention takes them. ``[3, 2] -> [0, 3, 5]``."""
    out = np.zeros(len(seq_lengths) + 1, dtype=np.int32)
    np.cumsum(seq_lengths, out=out[1:])
    return out


def segment_ids(seq_lengths: Sequence[int], length: int | None = None) -> np.ndarray:
    """The example each token of a row belongs to; padding after the examples is one more.

    ``segment_ids([2, 1], length=5) -> [0, 0, 1, 2, 2]``.
    """
    seg = np.repeat(np.arange(len(seq_lengths)), seq_lengths)
    n = len(seg) if length is None else length
    return np.concatenate([seg, np.full(n - len(seg), len(seq_lengths), dtype=seg.dtype)])


def block_causal_mask(seq_lengths: Sequence[int], length: int | None = None) -> np.ndarray:
    """``mask[i, j]`` is True when token ``i`` may attend to token ``j``: same example, ``j <= i``.

    Padding (tokens past ``sum(seq_lengths)``, up to ``length``) attends only to
    padding, so no softmax row is empty. ``block_causal_mask([2, 1])`` ->
    ``[[1, 0, 0], [1, 1, 0], [0, 0, 1]]``.
    """
    seg = segment_ids(seq_lengths, length)
    return (seg[:, None] == seg[None, :]) & np.tri(len(seg), dtype=bool)


def unpack_row(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Split a packed row (a dict of Python values) back into its examples.

    Each example comes back as the row an unpacked build of the same options
    writes (same columns, same values); padding is dropped.

    Args:
        row: a packed row, as ``datasets`` or ``RecordBatch.to_pylist`` give it.

    Returns:
        One dict per example, in the row's order.
    """
    examples = []
    start = 0
    for k, n in enumerate(row["seq_lengths"]):
        part = slice(start, start + n)
        example: dict[str, Any] = {"input_ids": row["input_ids"][part]}
        if "labels" in row:
            example["attention_mask"] = [1] * n
            example["labels"] = row["labels"][part]
            trained = sum(t != IGNORE_INDEX for t in example["labels"])
        else:
            example["target_ids"] = row["target_ids"][part]
            example["loss_mask"] = row["loss_mask"][part]
            trained = sum(example["loss_mask"])
        example.update(
            source_file=row["source_file"][k],
            source_line=row["source_line"][k],
            num_trained_tokens=trained,
            truncated=row["truncated"][k],
            boundary_adjusted=row["boundary_adjusted"][k],
        )
        if "turn" in row:
            example["turn"] = row["turn"][k]
        examples.append(example)
        start += n
    return examples
