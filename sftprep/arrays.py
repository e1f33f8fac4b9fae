"""numpy <-> Arrow without pandas: arrays built from flat buffers, and read back as numpy views.

pyarrow's convenient conversions (``pa.array`` on a numpy array, ``Array.to_numpy``,
``fill_null``) go through its pandas bridge, which imports pandas the first time:
about half a second in every process that touches them, a tenth of a build of
50,000 rows. The functions here work on the buffers directly, import nothing and
copy nothing where the layout allows.

Example: ``to_numpy(list_array(np.array([0, 2, 3]), np.array([7, 8, 9]), pa.int32()).values)``
is ``array([7, 8, 9], dtype=int32)``.

Also here, for laying out rows as flat arrays: :func:`flatten` (Python lists of
ids to one array and row starts) and :func:`ranges` (the flat positions of rows
given their starts and lengths).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_NUMPY_TYPES = {pa.int8(): np.int8, pa.int32(): np.int32, pa.int64(): np.int64, pa.bool_(): np.bool_}


def numpy_array(values: Any, arrow_type: pa.DataType) -> pa.Array:
    """An Arrow array over a numpy array's buffer (int8, int32, int64 or bool), or of a list of str.

    Other types or values go through ``pa.array``.
    """
    if arrow_type == pa.string() and isinstance(values, list):
        return string_array(values)
    numpy_type = _NUMPY_TYPES.get(arrow_type)
    if numpy_type is None or not isinstance(values, np.ndarray):
        return pa.array(values, type=arrow_type)
    if arrow_type == pa.bool_():
        bits = np.packbits(values.astype(bool, copy=False), bitorder="little")
        return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(bits)])
    data: np.ndarray = np.ascontiguousarray(values, dtype=numpy_type)
    return pa.Array.from_buffers(arrow_type, len(data), [None, pa.py_buffer(data)])


def string_array(values: list[str]) -> pa.Array:
    """A string column from the values' UTF-8 bytes and offsets."""
    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    data = pa.py_buffer(b"".join(encoded))
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets), data])


def list_array(offsets: np.ndarray, values: Any, value_type: pa.DataType) -> pa.Array:
    """An Arrow list column from flat ``values`` and row ``offsets`` (no Python lists of lists)."""
    return pa.ListArray.from_arrays(numpy_array(np.asarray(offsets, dtype=np.int32), pa.int32()),
                                    numpy_array(values, value_type))  # fmt: skip


def filled(array: pa.Array, value: Any) -> pa.Array:
    """``array`` with nulls replaced by ``value``; as it is when it has none.

    ``fill_null`` makes a scalar, and pyarrow imports pandas to make one: for the types of
    :func:`numpy_array` the filler is a whole column instead (a pair build's ``turn`` is all null).
    """
    if not array.null_count:
        return array
    numpy_type = _NUMPY_TYPES.get(array.type)
    if numpy_type is None:
        return array.fill_null(value)
    return pc.coalesce(array, numpy_array(np.full(len(array), value, dtype=numpy_type), array.type))


def flatten(rows: Sequence[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ids as one flat int64 array and ``n + 1`` row starts.

    Example: ``[[5, 6], [], [7]]`` -> ``([5, 6, 7], [0, 2, 2, 3])``.
    """
    starts = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)), out=starts[1:])
    flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(starts[-1]))
    return flat, starts


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions ``starts[i] .. starts[i] + lengths[i] - 1`` of every ``i``, one after another.

    Example: starts ``[10, 20]``, lengths ``[2, 3]`` -> ``[10, 11, 20, 21, 22]``.
    """
    ends = np.cumsum(lengths)
    return np.repeat(starts - ends + lengths, lengths) + np.arange(int(ends[-1]) if len(ends) else 0)


def to_numpy(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A null-free numeric or boolean Arrow array as numpy: a read-only view where the layout allows.

    Booleans (bit-packed in Arrow) and chunked arrays are copied; arrays with
    nulls, and other types, fall back to ``Array.to_numpy``.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    kind = array.type
    if array.null_count:
        return array.to_numpy(zero_copy_only=False)
    if pa.types.is_boolean(kind):
        return to_numpy(array.cast(pa.uint8())).astype(np.bool_)
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        return array.to_numpy(zero_copy_only=False)
    dtype = np.dtype(kind.to_pandas_dtype())
    data = array.buffers()[1]
    return np.frombuffer(data, dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)
