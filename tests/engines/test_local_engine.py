"""engines/local.py: the transform in worker processes, results in input order."""

from __future__ import annotations

import os
import signal

import pytest

from sftprep.engines.local import run_transform
from sftprep.errors import WorkerError


def _square_with_pid(batch: list[int]) -> tuple[list[int], int]:
    return [n * n for n in batch], os.getpid()


def test_workers_give_the_results_in_input_order():
    batches = [[i, i + 1] for i in range(0, 40, 2)]
    one = list(run_transform(_square_with_pid, iter(batches), workers=1))
    two = list(run_transform(_square_with_pid, iter(batches), workers=2))
    assert [r for r, _ in two] == [r for r, _ in one] == [[n * n for n in b] for b in batches]
    assert {pid for _, pid in one} == {os.getpid()}
    assert os.getpid() not in {pid for _, pid in two}  # the work ran in the workers


def _dies_on_seven(batch: list[int]) -> list[int]:
    if 7 in batch:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would
    return batch


def test_a_worker_that_dies_fails_the_build_with_one_line():
    with pytest.raises(WorkerError, match="a worker process died"):
        list(run_transform(_dies_on_seven, iter([[i] for i in range(10)]), workers=2))
