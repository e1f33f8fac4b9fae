"""numpy <-> Arrow helpers (sftprep.arrays), and that builds and inspect never import pandas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sftprep.arrays import list_array, numpy_array, string_array, to_numpy

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("arrow_type", [pa.int8(), pa.int32(), pa.int64(), pa.bool_()])
def test_numpy_round_trip(arrow_type):
    values = np.array([0, 1, 1, 0, 1, 1, 1, 0, 1, 0, 1], dtype=arrow_type.to_pandas_dtype())
    array = numpy_array(values, arrow_type)
    assert array.type == arrow_type
    assert array.to_pylist() == values.tolist()
    assert to_numpy(array).tolist() == values.tolist()
    assert to_numpy(array).dtype == values.dtype


def test_to_numpy_respects_slices_and_chunks():
    array = numpy_array(np.arange(10, dtype=np.int32), pa.int32())
    assert to_numpy(array.slice(3, 4)).tolist() == [3, 4, 5, 6]
    flags = numpy_array(np.arange(10) % 3 == 0, pa.bool_())
    assert to_numpy(flags.slice(2, 5)).tolist() == [False, True, False, False, True]
    chunked = pa.chunked_array([array.slice(0, 2), array.slice(8, 2)])
    assert to_numpy(chunked).tolist() == [0, 1, 8, 9]


def test_to_numpy_with_nulls_falls_back():
    with_nulls = pa.array([1, None, 3], pa.int32())
    assert np.isnan(to_numpy(with_nulls)[1])


def test_list_and_string_arrays():
    column = list_array(np.array([0, 2, 2, 5]), np.arange(5, dtype=np.int32), pa.int32())
    assert column.to_pylist() == [[0, 1], [], [2, 3, 4]]
    assert to_numpy(column.offsets).tolist() == [0, 2, 2, 5]
    assert string_array(["a", "", "ünï"]).to_pylist() == ["a", "", "ünï"]


_CHECK = """
import json, sys
from sftprep.cli import main
try:
    main(sys.argv[1:])
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps([code, "pandas" in sys.modules]))
"""


def _imports_pandas(*args: str, code: int = 0) -> bool:
    """Run ``sftprep ARGS`` in a fresh interpreter: did it import pandas?"""
    done = subprocess.run([sys.executable, "-c", _CHECK, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)  # fmt: skip
    exit_code, imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert exit_code == code, done.stderr
    return imported


BUILDS = {
    "shifted": [],
    "hf": ["--labels", "hf"],
    "exploded": ["--mode", "exploded"],
    "packed": ["--pack", "--max-length", "256"],
    "padded": ["--pad-to", "max-length", "--max-length", "256"],
}


@pytest.mark.parametrize("extra", BUILDS.values(), ids=BUILDS.keys())
def test_build_and_inspect_do_not_import_pandas(tmp_path, extra):
    """pyarrow's pandas bridge costs about half a second per process the first time it runs.

    A build runs its transform in this process with ``--workers 1`` (the same code
    the workers run); inspect reads with the same helpers.
    """
    out = str(tmp_path / "out")
    assert not _imports_pandas("build", "sample_data/qa.jsonl", "-o", out, "-q", "--workers", "1", *extra)
    for view in (["--tokens"], ["--stats"], ["--format", "json"], ["--source", "qa.jsonl:3-9"],
                 ["--random", "2"]):  # fmt: skip
        assert not _imports_pandas("inspect", out, *view), view
    # No row of the sample is truncated: the flag filter runs over every row, finds none, exits 0.
    assert not _imports_pandas("inspect", out, "-w", "truncated")
