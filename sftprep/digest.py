"""A hash of a build's rows that does not depend on how they were cut into shards.

Two builds of the same data (local and Ray engines, one build and a merge of
its ``--num-shards`` slices) write the same rows in the same order, but may
cut them into record batches and shard files differently, so the shards'
file hashes can differ. :class:`RowDigest` hashes the rows themselves: for
each column, in schema order, one sha256 over its values in row order and one
over its structure (validity, and the length of every list and string). Each
stream is fed batch by batch, and concatenating the streams of two batches
gives the stream of the two batches joined, so the result is the same however
the rows are chunked. The manifest records it as ``content_sha256``.

Example: rows ``[1, 2], [3]`` fed as one batch or as two give the same digest.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sftprep.arrays import filled, to_numpy

DIGEST_VERSION = "sftprep-rows-sha256/1"


class RowDigest:
    """sha256 over the rows of record batches with one schema, independent of chunking.

    Args:
        schema: the batches' schema (its metadata is not hashed).
    """

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self.rows = 0
        self._streams: dict[str, Any] = {}

    def _put(self, key: str, data: bytes) -> None:
        # A stream is created by its first byte, so feeding an empty batch changes nothing.
        if data:
            if key not in self._streams:
                self._streams[key] = hashlib.sha256()
            self._streams[key].update(data)

    def update(self, batch: pa.RecordBatch) -> None:
        """Add the rows of ``batch`` (after all rows added before)."""
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            self._feed(name, column)
        self.rows += batch.num_rows

    def _feed(self, key: str, array: pa.Array) -> None:
        if array.null_count == 0:
            valid = np.ones(len(array), np.uint8)
        else:
            valid = to_numpy(array.is_valid()).astype(np.uint8)
        self._put(key + "/valid", valid.tobytes())
        kind = array.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            lengths = to_numpy(filled(pc.list_value_length(array), 0))
            self._put(key + "/len", lengths.astype(np.int64).tobytes())
            self._feed(key + "/item", array.flatten())
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
            values = [v if v is not None else "" for v in array.to_pylist()]
            encoded = [v.encode() if isinstance(v, str) else v for v in values]
            self._put(key + "/len", np.array([len(v) for v in encoded], np.int64).tobytes())
            self._put(key, b"".join(encoded))
        else:
            zero = (
                False if pa.types.is_boolean(kind) else 0
            )  # fill_null makes it a scalar of the column's type
            self._put(key, np.ascontiguousarray(to_numpy(filled(array, zero))).tobytes())

    def hexdigest(self) -> str:
        """The digest of every row added so far: one hex sha256."""
        total = hashlib.sha256(DIGEST_VERSION.encode())
        for field in self.schema:
            total.update(f"{field.name}:{field.type}\n".encode())
        for key in sorted(self._streams):
            total.update(f"{key}={self._streams[key].hexdigest()}\n".encode())
        total.update(f"rows={self.rows}\n".encode())
        return total.hexdigest()
