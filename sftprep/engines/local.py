"""``--engine local``: the per-batch transform in worker processes, results in input order.

The main process reads records and writes shards; workers render, tokenize
and label. Results come back in the order the batches went out, and batches
are cut the same way whatever the worker count, so the shards are
byte-identical with 1 or N workers.

Workers are forked after the transform is built, so they inherit the loaded
tokenizer instead of loading it again, and at most ``2 * workers`` batches
are in flight, so memory stays flat however long the input. A worker that
dies (killed, out of memory) makes the pool "broken": the build fails at
once with a clear message instead of hanging.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from sftprep.config import BuildConfig
from sftprep.engines.stream import Inputs, Progress, Transform, in_slice
from sftprep.errors import WorkerError
from sftprep.readers import Record
from sftprep.transform import BatchResult

__all__ = ["LocalEngine", "WorkerError", "run_transform"]

_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
_TOKENIZERS_PARALLELISM = "TOKENIZERS_PARALLELISM"

T = TypeVar("T")
R = TypeVar("R")

# The transform a forked worker runs; set in the parent just before forking.
_TRANSFORM: Callable[[Any], Any] | None = None


class LocalEngine:
    """The transform in this process (``--workers 1``) or in forked worker processes.

    Args:
        config: the build's options (workers, slice).
        progress: unused: the build's own stream reports the bytes read.
    """

    def __init__(self, config: BuildConfig, progress: Progress):
        self.config = config

    def check(self, names: Sequence[str]) -> None:
        """Every input the readers accept: stdin and pipes too (this process reads them once)."""

    def results(
        self,
        inputs: Inputs,
        transform: Transform,
        batches: Iterator[tuple[int, list[Record]]],
        sample: BatchResult | None,
    ) -> Iterator[BatchResult]:
        """This slice's batches through ``transform``, on ``--workers`` processes, in order."""
        if sample is not None:
            first_index, _ = next(batches)
            rest = (batch for index, batch in batches if in_slice(index, self.config))
            results = run_transform(transform, rest, self.config.workers)
            return _prepend(sample, results) if in_slice(first_index, self.config) else results
        mine = (batch for index, batch in batches if in_slice(index, self.config))
        return run_transform(transform, mine, self.config.workers)

    def described(self, inputs: Inputs) -> list[dict[str, Any]]:
        """The inputs as this process read them."""
        return inputs.describe()


def _prepend(first: BatchResult, rest: Iterator[BatchResult]) -> Iterator[BatchResult]:
    """``first``, then ``rest``; closing it closes ``rest`` (the engine) too."""
    try:
        yield first
        yield from rest
    finally:
        rest.close()  # type: ignore[attr-defined]


def _init_worker(parent: int) -> None:
    # Ctrl-C reaches the whole process group; only the parent reacts (it
    # cancels the work and cleans up), so workers must not die mid-batch on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent)


def _die_with_parent(parent: int) -> None:
    """Make sure a worker never outlives a parent killed with SIGKILL.

    Linux can deliver a signal when the parent dies (prctl PR_SET_PDEATHSIG);
    elsewhere a daemon thread polls for the parent.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) == 0 and os.getppid() == parent:
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _work(batch: Any) -> Any:
    assert _TRANSFORM is not None, "worker started without a transform"
    return _TRANSFORM(batch)


def run_transform(transform: Callable[[T], R], batches: Iterable[T], workers: int) -> Iterator[R]:
    """Apply ``transform`` to every batch, in order, with ``workers`` processes.

    Args:
        transform: a picklable-result function of one batch.
        batches: the batches, consumed lazily.
        workers: 1 runs everything in this process.

    Raises:
        WorkerError: a worker process died.
    """
    if workers <= 1:
        yield from map(transform, batches)
        return
    global _TRANSFORM
    _TRANSFORM = transform
    # Workers tokenize with one thread each, whatever the user's environment says:
    # `workers` busy processes already use the cores, and the tokenizer's thread
    # pool, started in this process, does not survive the fork (a forked worker
    # that uses it waits forever: TOKENIZERS_PARALLELISM=true used to hang builds).
    user_setting = os.environ.get(_TOKENIZERS_PARALLELISM)
    os.environ[_TOKENIZERS_PARALLELISM] = "false"
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(os.getpid(),))
    pending: deque[Future[R]] = deque()
    try:
        for batch in batches:
            pending.append(pool.submit(_work, batch))
            if len(pending) >= 2 * workers:
                yield _result(pending.popleft())
        while pending:
            yield _result(pending.popleft())
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        _TRANSFORM = None
        if user_setting is None:
            os.environ.pop(_TOKENIZERS_PARALLELISM, None)
        else:
            os.environ[_TOKENIZERS_PARALLELISM] = user_setting


def _result(future: Future[R]) -> R:
    try:
        return future.result()
    except BrokenProcessPool:
        raise WorkerError(
            "a worker process died (killed or out of memory?); nothing was written. "
            "Try --workers 1 to see the error in this process"
        ) from None
