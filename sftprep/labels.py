"""Labels and loss masks from encoded rows, vectorised, and the Arrow rows they become.

The label convention, once (README "Label conventions" says the same):

Take a row ``ids`` of length ``n`` whose first ``p`` tokens are the prompt.
Position ``t``'s logits predict ``ids[t+1]``. A token ``ids[j]`` is *trained*
when ``j >= max(p, 1)``: it belongs to the target or is the EOS, and there is a
position before it to predict it from.

* ``--labels shifted`` (default): ``target_ids[t] = ids[t+1]`` where ``ids[t+1]``
  is trained, else -100; ``target_ids[n-1] = -100``; ``loss_mask = target_ids != -100``.
  ``F.cross_entropy(logits.view(-1, V), target_ids.view(-1), ignore_index=-100)``
  is the loss, with no further shift.
* ``--labels hf``: ``labels[j] = ids[j]`` where ``ids[j]`` is trained, else -100,
  unshifted: Hugging Face models shift inside their loss.
* ``--mode exploded``: one row per trained token ``j``: ``input_ids = ids[:j]``,
  ``target_id = ids[j]``.

All three train exactly the same (prefix, next token) pairs.

Example, ``ids = [1, 50, 51, 60, 2]`` with ``p = 3`` (``<s>`` + a 2-token prompt,
target 60, EOS 2):  shifted ``target_ids = [-100, -100, 60, 2, -100]``,
``hf labels = [-100, -100, -100, 60, 2]``; exploded rows ``[1, 50, 51] -> 60``
and ``[1, 50, 51, 60] -> 2``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from sftprep.arrays import list_array, numpy_array, string_array
from sftprep.encode import EncodedBatch
from sftprep.options import LABEL_STYLES, MODES  # noqa: F401 (their old home: still importable here)

IGNORE_INDEX = -100

ID_TYPE = pa.int32()
MASK_TYPE = pa.int8()

# Columns every row carries, after the model columns.
META_FIELDS = [
    pa.field("source_file", pa.string()),
    pa.field("source_line", pa.int64()),
    pa.field("num_trained_tokens", pa.int32()),
    pa.field("truncated", pa.bool_()),
    pa.field("boundary_adjusted", pa.bool_()),
    # Chat rows written one per trained turn (--turns each): the index of that turn's message in
    # the conversation. Null for rows that hold a whole example or conversation.
    pa.field("turn", pa.int32()),
]
# Columns whose nulls are data (``turn``, and its per-example list in packed rows): every other
# column of a build is never null.
NULLABLE = frozenset({"turn"})


def schema_for(mode: str, labels: str) -> pa.Schema:
    """The one Arrow schema of a build's rows."""
    ids = pa.list_(ID_TYPE)
    if mode == "exploded":
        model = [pa.field("input_ids", ids), pa.field("target_id", ID_TYPE), pa.field("position", pa.int32())]
    elif labels == "hf":
        model = [
            pa.field("input_ids", ids),
            pa.field("attention_mask", pa.list_(MASK_TYPE)),
            pa.field("labels", ids),
        ]
    else:
        model = [
            pa.field("input_ids", ids),
            pa.field("target_ids", ids),
            pa.field("loss_mask", pa.list_(MASK_TYPE)),
        ]
    return pa.schema(model + META_FIELDS)


def _row_of_token(offsets: np.ndarray) -> np.ndarray:
    """For each flat token, the index of its row. ``[0, 2, 5] -> [0, 0, 1, 1, 1]``."""
    lengths = np.diff(offsets)
    return np.repeat(np.arange(len(lengths)), lengths)


def trained_token_mask(
    offsets: np.ndarray, prompt_lens: np.ndarray, trained: np.ndarray | None = None
) -> np.ndarray:
    """True for each flat token that is trained.

    That is ``j >= max(p, 1)`` in its row; with an explicit ``trained`` flag per
    token (chat rows), those flags, except that a row's first token is never
    trained: no position comes before it to predict it.
    """
    rows = _row_of_token(offsets)
    position = np.arange(offsets[-1]) - offsets[:-1][rows]
    if trained is not None:
        return trained & (position >= 1)
    return position >= np.maximum(prompt_lens, 1)[rows]


def hf_labels(ids: np.ndarray, trained: np.ndarray) -> np.ndarray:
    """Unshifted labels: the id where trained, else -100."""
    return np.where(trained, ids, IGNORE_INDEX).astype(np.int32)


def shifted_labels(ids: np.ndarray, offsets: np.ndarray, trained: np.ndarray) -> np.ndarray:
    """``target_ids[t] = ids[t+1]`` where ``ids[t+1]`` is trained, -100 elsewhere."""
    target = np.full(len(ids), IGNORE_INDEX, dtype=np.int32)
    if len(ids) > 1:
        nxt = trained[1:].copy()
        # The token after a row's last position is the next row's first: never a target.
        row_ends = offsets[1:-1] - 1
        nxt[row_ends[row_ends < len(nxt)]] = False
        target[:-1] = np.where(nxt, ids[1:], IGNORE_INDEX)
    return target


def sequence_batch(
    enc: EncodedBatch, sources: list[str], lines: np.ndarray, labels: str, schema: pa.Schema
) -> pa.RecordBatch:
    """Arrow rows for sequence mode: one row per example.

    Args:
        enc: the encoded rows.
        sources / lines: each row's input file and line (or record) number.
        labels: ``"shifted"`` or ``"hf"``.
        schema: from :func:`schema_for`.
    """
    trained = trained_token_mask(enc.offsets, enc.prompt_lens, enc.trained)
    if labels == "hf":
        model = [
            list_array(enc.offsets, enc.ids, ID_TYPE),
            list_array(enc.offsets, np.ones(len(enc.ids), dtype=np.int8), MASK_TYPE),
            list_array(enc.offsets, hf_labels(enc.ids, trained), ID_TYPE),
        ]
    else:
        target = shifted_labels(enc.ids, enc.offsets, trained)
        model = [
            list_array(enc.offsets, enc.ids, ID_TYPE),
            list_array(enc.offsets, target, ID_TYPE),
            list_array(enc.offsets, (target != IGNORE_INDEX).astype(np.int8), MASK_TYPE),
        ]
    n_trained = np.add.reduceat(trained.astype(np.int32), enc.offsets[:-1]) if len(enc) else np.zeros(0)
    meta = _meta(sources, lines, n_trained, enc.truncated, enc.boundary_adjusted, _turns(enc))
    return pa.RecordBatch.from_arrays(model + meta, schema=schema)


def _turns(enc: EncodedBatch) -> np.ndarray:
    """Each row's turn (chat encoders set ``turns``; -1 = the whole example)."""
    turns = getattr(enc, "turns", None)
    return np.full(len(enc), -1, dtype=np.int32) if turns is None else turns


def _meta(sources, lines, n_trained, truncated, adjusted, turns) -> list[pa.Array]:
    turns = np.asarray(turns, dtype=np.int32)
    return [
        string_array(sources),
        numpy_array(np.asarray(lines, dtype=np.int64), pa.int64()),
        numpy_array(np.asarray(n_trained, dtype=np.int32), pa.int32()),
        numpy_array(np.asarray(truncated, dtype=bool), pa.bool_()),
        numpy_array(np.asarray(adjusted, dtype=bool), pa.bool_()),
        turn_array(turns),
    ]


def turn_array(turns: np.ndarray) -> pa.Array:
    """The ``turn`` column: int32, null where the value is negative (a whole example).

    Built from buffers: ``pa.array(..., mask=)`` on numpy would import pandas.
    """
    turns = np.ascontiguousarray(turns, dtype=np.int32)
    valid = turns >= 0
    bits = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(pa.int32(), len(turns), [bits, pa.py_buffer(turns)])


def turn_values(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The inverse of :func:`turn_array`: int32 values, -1 where null."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    n, at = len(column), column.offset
    values = np.frombuffer(column.buffers()[1], dtype=np.int32, count=n, offset=at * 4).copy()
    if column.null_count:
        bits = np.unpackbits(np.frombuffer(column.buffers()[0], dtype=np.uint8), bitorder="little")
        values[~bits[at : at + n].astype(bool)] = -1
    return values


def exploded_batches(
    enc: EncodedBatch,
    sources: list[str],
    lines: np.ndarray,
    schema: pa.Schema,
    max_values: int = 8 * 2**20,
) -> Iterator[pa.RecordBatch]:
    """Arrow rows for exploded mode: one row per trained token, prefix -> next token.

    The rows of one example grow with the square of its length, so they are
    yielded in record batches of at most about ``max_values`` prefix ids.
    """
    trained = trained_token_mask(enc.offsets, enc.prompt_lens, enc.trained)
    token_rows = _row_of_token(enc.offsets)
    targets = np.flatnonzero(trained)  # flat index of each exploded row's target
    example = token_rows[targets]
    prefix_len = targets - enc.offsets[:-1][example]
    ends = np.cumsum(prefix_len)
    start = 0
    while start < len(targets):
        budget = (ends[start - 1] if start else 0) + max_values
        stop = max(start + 1, int(np.searchsorted(ends, budget, side="right")))
        yield _exploded_chunk(
            enc, targets[start:stop], example[start:stop], prefix_len[start:stop], sources, lines, schema
        )
        start = stop


def _exploded_chunk(enc, targets, example, prefix_len, sources, lines, schema) -> pa.RecordBatch:
    offsets = np.zeros(len(targets) + 1, dtype=np.int64)
    np.cumsum(prefix_len, out=offsets[1:])
    # The prefix of row k is ids[row_start : target]: gather all of them at once.
    row_start = enc.offsets[:-1][example]
    gather = np.arange(offsets[-1]) - np.repeat(offsets[:-1] - row_start, prefix_len)
    ones = np.ones(len(targets), dtype=np.int32)
    columns: list[Any] = [
        list_array(offsets, enc.ids[gather], ID_TYPE),
        numpy_array(enc.ids[targets], ID_TYPE),
        numpy_array(prefix_len.astype(np.int32), pa.int32()),
    ]
    columns += _meta(
        [sources[e] for e in example],
        lines[example],
        ones,
        enc.truncated[example],
        enc.boundary_adjusted[example],
        _turns(enc)[example],
    )
    return pa.RecordBatch.from_arrays(columns, schema=schema)
