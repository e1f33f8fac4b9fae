"""Megatron: megatron-core's indexed dataset format, one ``.bin``/``.idx`` pair per token column.

Per split folder, every column of integer lists becomes its own indexed
dataset, written with megatron-core's ``IndexedDatasetBuilder``, one document
per row, in the column's own dtype::

    train/input_ids.bin   train/input_ids.idx     token ids (what Megatron calls the text document)
    train/loss_mask.bin   train/loss_mask.idx     --labels shifted: 1 where target_ids[i] is trained
    train/target_ids.bin  train/target_ids.idx    --labels shifted: the next token
    train/labels.bin      train/labels.idx        --labels hf: ids, -100 where not trained
    train/metadata.parquet                        the other columns (source_file, source_line, ...)

Row ``i`` of every dataset is row ``i`` of the build, so a loader reads
``IndexedDataset("out/train/input_ids")[i]`` with the mask (or labels) from
the second dataset at the same index.
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

METADATA = "metadata.parquet"


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
    """The columns written as indexed datasets: lists of integers."""
    return [f.name for f in schema if pa.types.is_list(f.type) and pa.types.is_integer(f.type.value_type)]


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
        name: IndexedDatasetBuilder(str(folder / f"{name}.bin"),
                                    dtype=schema.field(name).type.value_type.to_pandas_dtype())
        for name in tokens
    }  # fmt: skip
    rows = 0
    with pq.ParquetWriter(folder / METADATA, rest) as metadata:
        for batch in batches:
            for name, builder in builders.items():
                column = batch.column(name)
                values = column.flatten().to_numpy(zero_copy_only=False)
                offsets = column.offsets.to_numpy() - column.offsets[0].as_py()
                for a, b in itertools.pairwise(offsets):
                    builder.add_document(values[a:b], [int(b - a)])
            metadata.write_batch(batch.select(rest.names))
            rows += batch.num_rows
    files = []
    for name, builder in builders.items():
        builder.finalize(str(folder / f"{name}.idx"))
        files += [(f"{split}/{name}.bin", rows), (f"{split}/{name}.idx", rows)]
    return [*files, (f"{split}/{METADATA}", rows)]


def read_split(directory: Path, split: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """One split's rows, read with megatron-core's ``IndexedDataset``, as record batches of ``schema``."""
    IndexedDataset = _indexed_dataset().IndexedDataset

    folder = Path(directory) / split
    try:
        datasets = {name: IndexedDataset(str(folder / name)) for name in token_columns(schema)}
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
