"""Megatron: megatron-core's indexed dataset format (``.bin``/``.idx``), one document per row.

Per split folder, every column of integer lists becomes its own indexed
dataset, written with megatron-core's ``IndexedDatasetBuilder`` in the
column's own dtype, and the rest of the columns go to a Parquet file::

    train/sft_text_document.{bin,idx}       input_ids (Megatron's "text document")
    train/sft_loss_mask_document.{bin,idx}  uint8, 1 where the token AT this position is trained
    train/target_ids.{bin,idx}, loss_mask.{bin,idx}   --labels shifted, verbatim
    train/labels.{bin,idx}                  --labels hf, verbatim
    train/metadata.parquet                  the other columns (source_file, source_line, turn, ...)

Row ``i`` of every dataset is row ``i`` of the build. The pair
``sft_text_document`` / ``sft_loss_mask_document`` is the layout of
Megatron-based SFT loaders that take the loss mask from a second indexed
dataset next to the text (``--data-path .../train/sft_text_document`` with
FlagScale's ``--apply-sft-dataset-separated-loss-mask-if-existed``): they
predict ``text[1:]`` from ``text[:-1]`` and weight the loss with
``mask[1:]``, so the mask is per token, not per target. Worked example
(shifted labels): ``input_ids [5, 6, 7, 8]``, ``loss_mask [0, 1, 1, 0]``
(targets 7 and 8 trained) -> ``sft_loss_mask_document [0, 0, 1, 1]``.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sftprep.errors import InputError
from sftprep.labels import IGNORE_INDEX, NULLABLE

METADATA = "metadata.parquet"
TEXT = "sft_text_document"
LOSS_MASK = "sft_loss_mask_document"


def _stem(column: str) -> str:
    """The file name (without .bin/.idx) of a token column's indexed dataset."""
    return TEXT if column == "input_ids" else column


def token_mask(batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-token "this token is trained" flags of a batch, and its row offsets (None: exploded rows).

    Shifted rows: ``loss_mask[i]`` trains ``target_ids[i] == input_ids[i + 1]``, so the
    flag of token ``j`` is ``loss_mask[j - 1]`` (0 for a row's first token). HF rows:
    the flag of token ``j`` is ``labels[j] != -100``.
    """
    names = batch.schema.names
    if "labels" in names:
        column = batch.column("labels")
        values = column.flatten().to_numpy(zero_copy_only=False)
        flags = (values != IGNORE_INDEX).astype(np.uint8)
    elif "loss_mask" in names:
        column = batch.column("loss_mask")
        values = column.flatten().to_numpy(zero_copy_only=False)
        flags = np.zeros(len(values), np.uint8)
        flags[1:] = values[:-1]
    else:
        return None
    offsets = column.offsets.to_numpy() - column.offsets[0].as_py()
    starts = offsets[:-1][np.diff(offsets) > 0]
    flags[starts] = 0  # a row's first token is predicted from nothing
    return flags, offsets


def _indexed_dataset():
    """megatron-core's ``indexed_dataset`` module, imported without its warnings about GPUs.

    Importing megatron-core on a CPU-only machine warns that CUDA, Transformer
    Engine and Apex are missing; none of them matter for reading or writing files.
    """
    torch_log = logging.getLogger("torch.utils.cpp_extension")
    level = torch_log.level
    torch_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from megatron.core.datasets import indexed_dataset
    finally:
        torch_log.setLevel(level)
    return indexed_dataset


def token_columns(schema: pa.Schema) -> list[str]:
    """The columns written as indexed datasets: lists of integers (``turn``, which holds nulls, is metadata)."""
    return [
        f.name
        for f in schema
        if pa.types.is_list(f.type) and pa.types.is_integer(f.type.value_type) and f.name not in NULLABLE
    ]


def write_split(
    target: Path, split: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch], shard_bytes: int
) -> list[tuple[str, int]]:
    """Write one split's rows into ``target/split/`` (``shard_bytes`` is unused: one file per column).

    Returns:
        ``(path relative to target, rows)`` per file.
    """
    IndexedDatasetBuilder = _indexed_dataset().IndexedDatasetBuilder

    del shard_bytes
    folder = Path(target) / split
    folder.mkdir(parents=True, exist_ok=True)
    tokens = token_columns(schema)
    rest = pa.schema([f for f in schema if f.name not in tokens], metadata=schema.metadata)
    builders = {
        name: IndexedDatasetBuilder(str(folder / f"{_stem(name)}.bin"),
                                    dtype=schema.field(name).type.value_type.to_pandas_dtype())
        for name in tokens
    }  # fmt: skip
    masks = None
    if "labels" in schema.names or "loss_mask" in schema.names:
        masks = IndexedDatasetBuilder(str(folder / f"{LOSS_MASK}.bin"), dtype=np.uint8)
    rows = 0
    with pq.ParquetWriter(folder / METADATA, rest) as metadata:
        for batch in batches:
            for name, builder in builders.items():
                column = batch.column(name)
                values = column.flatten().to_numpy(zero_copy_only=False)
                offsets = column.offsets.to_numpy() - column.offsets[0].as_py()
                for a, b in itertools.pairwise(offsets):
                    builder.add_document(values[a:b], [int(b - a)])
            flags = token_mask(batch)
            if masks is not None and flags is not None:
                for a, b in itertools.pairwise(flags[1]):
                    masks.add_document(flags[0][a:b], [int(b - a)])
            metadata.write_batch(batch.select(rest.names))
            rows += batch.num_rows
    if masks is not None:
        builders[LOSS_MASK] = masks
    files = []
    for name, builder in builders.items():
        builder.finalize(str(folder / f"{_stem(name)}.idx"))
        files += [(f"{split}/{_stem(name)}.bin", rows), (f"{split}/{_stem(name)}.idx", rows)]
    return [*files, (f"{split}/{METADATA}", rows)]


def read_split(directory: Path, split: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """One split's rows, read with megatron-core's ``IndexedDataset``, as record batches of ``schema``."""
    IndexedDataset = _indexed_dataset().IndexedDataset

    folder = Path(directory) / split
    try:
        datasets = {name: IndexedDataset(str(folder / _stem(name))) for name in token_columns(schema)}
        metadata = pq.ParquetFile(folder / METADATA)
    except (OSError, ValueError, AssertionError) as exc:
        raise InputError(f"{folder}: cannot read the megatron files: {exc}") from None
    start = 0
    for group in range(metadata.num_row_groups):
        for part in metadata.read_row_group(group).to_batches():
            stop = start + part.num_rows
            arrays = []
            for field in schema:
                if field.name in datasets:
                    arrays.append(_list_array(datasets[field.name][start:stop], field.type))
                else:
                    arrays.append(part.column(field.name))
            start = stop
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _list_array(rows: list[np.ndarray], kind: pa.DataType) -> pa.Array:
    lengths = np.fromiter((len(r) for r in rows), np.int64, len(rows))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = np.concatenate(rows) if rows else np.zeros(0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, kind.value_type), type=kind)
