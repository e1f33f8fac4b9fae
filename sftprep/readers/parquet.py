"""Parquet: one record per row, read in batches of :data:`PARQUET_BATCH_ROWS` rows.

pyarrow needs random access, so stdin, URLs and gzip are spooled to a temporary file
first; a plain local file is read in place.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator

from sftprep.errors import InputError
from sftprep.readers import base
from sftprep.readers.base import Format, Opened, Record

PARQUET_BATCH_ROWS = 1024


def read(opened: Opened, lazy: bool = False) -> Iterator[Record]:
    """Yield the rows of a Parquet input as records (unit ``"record"``, no ``raw`` text)."""
    import pyarrow.lib
    import pyarrow.parquet as pq  # imported here: pyarrow takes a while to load

    with contextlib.ExitStack() as stack:
        try:
            parquet = pq.ParquetFile(_seekable(opened, stack))
            total = parquet.metadata.num_rows or 1
            number = 0
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                for row in batch.to_pylist():
                    number += 1
                    yield Record(opened.source, number, "record", row)
                opened.hash_up_to(number / total)
        except pyarrow.lib.ArrowException as e:
            raise InputError(f"{opened.source}: not a valid Parquet file: {e}") from None


def _seekable(opened: Opened, stack: contextlib.ExitStack):
    """A seekable copy of the input for pyarrow: the file itself, or a spooled temp file."""
    if opened.local_path is not None:
        return opened.local_path
    # Parquet needs random access, which stdin and gzip cannot give.
    spool = stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 - closed by the stack
    while chunk := opened.stream.read(base.CHUNK_SIZE):
        spool.write(chunk)
    spool.seek(0)
    return spool


base.register(Format("parquet", read, extensions=(".parquet", ".pq"), magic=b"PAR1"))
