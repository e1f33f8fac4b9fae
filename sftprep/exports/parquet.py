"""Parquet: one folder per split of ``data-NNNNN-of-MMMMM.parquet`` files, which every reader opens.

``datasets.load_dataset("parquet", data_files={"train": "out/train/*.parquet"})``,
pandas, polars, DuckDB and Spark read them; no ``load_from_disk`` needed. The
files keep the Arrow schema with its metadata (datasets' features under
``huggingface`` and sftprep's label convention under ``sftprep``), so column
types come back exactly. A file is closed once it holds ``shard_bytes``; each
incoming record batch is one row group.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sftprep.errors import InputError, OutputError


def write_split(
    target: Path, split: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch], shard_bytes: int
) -> list[tuple[str, int]]:
    """Write one split's rows into ``target/split/``.

    Returns:
        ``(path relative to target, rows)`` per file, in row order.
    """
    folder = Path(target) / split
    folder.mkdir(parents=True, exist_ok=True)
    files: list[list] = []
    sink: pa.NativeFile | None = None
    writer: pq.ParquetWriter | None = None
    try:
        for batch in batches:
            if writer is None:
                files.append([f"part-{len(files):05d}.parquet", 0])
                sink = pa.OSFile(str(folder / files[-1][0]), "wb")
                writer = pq.ParquetWriter(sink, schema)
            writer.write_batch(batch)
            files[-1][1] += batch.num_rows
            assert sink is not None
            if sink.tell() >= shard_bytes:
                writer.close()
                sink.close()
                writer = sink = None
        if writer is None and not files:  # no rows: one empty file, so the split still loads
            files.append([f"part-{len(files):05d}.parquet", 0])
            pq.write_table(schema.empty_table(), folder / files[-1][0])
        if writer is not None:
            writer.close()
            assert sink is not None
            sink.close()
    except OSError as exc:
        raise OutputError(f"cannot write {folder}: {exc}") from None
    out = []
    for i, (name, rows) in enumerate(files):
        final = f"data-{i:05d}-of-{len(files):05d}.parquet"
        os.rename(folder / name, folder / final)
        out.append((f"{split}/{final}", rows))
    return out


def read_split(directory: Path, split: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """One split's rows, file by file, row group by row group."""
    for path in sorted((Path(directory) / split).glob("*.parquet")):
        try:
            file = pq.ParquetFile(path)
            for group in range(file.num_row_groups):
                for batch in file.read_row_group(group).to_batches():
                    yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputError(f"{path}: cannot read Parquet: {exc}") from None
