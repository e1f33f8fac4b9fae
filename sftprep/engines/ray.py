"""``--engine ray``: the build's transform as a Ray Data job, on one machine or a cluster.

The job is two Ray Data stages and the driver:

1. *read*: one task streams the inputs the build expanded (local paths on a
   shared filesystem, or URLs; globs are not expanded again) through the same
   :class:`~sftprep.engines.stream.Inputs` as the local engine, cut into the
   same batches of ``--batch-size`` records, and keeps this slice's batches
   (``--num-shards``);
2. *transform*: a pool of actors, one per CPU, each holding the very
   :class:`~sftprep.transform.BatchTransform` the local engine runs (built once
   on the driver and shipped pickled, tokenizer included), turns each batch
   into Arrow rows, rejects and counts;
3. the *driver* takes the results in input order (``preserve_order``) and
   does what the local engine's main process does: handles rejects
   (``--on-error``), packs and pads, writes the shards and, last, the manifest.

So the rows, their order, the counts and even the shard files are those of
the local engine; only the transform, the expensive part, runs on the
cluster. Reading is one sequential stream, as in the local engine (parsing is
far cheaper than tokenizing), and everything written passes through the
driver, whose bandwidth to the output bounds the build.

A task never fails with sftprep's errors: it hands them to the driver as a
result, which raises them in input order, exactly as the local engine does
(a crash in the transform names its record: ``data.jsonl:17: ...``). A task
that fails for Ray's reasons (a worker killed) ends the build with one line,
without Ray's traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from sftprep import storage
from sftprep.config import BuildConfig
from sftprep.engines.stream import Inputs, Progress, Transform, batched, in_slice, untransformed
from sftprep.errors import ConfigError, InputError, RayClusterError, SftprepError, WorkerError
from sftprep.readers import Record
from sftprep.transform import BatchResult

__all__ = ["INSTALL_HINT", "RayClusterError", "RayEngine", "import_ray"]

INSTALL_HINT = "pip install 'sftprep[ray]'"

_QUIET_LOGGERS = ("ray", "ray.data")


def import_ray() -> Any:
    """Import Ray, or say how to install it.

    Raises:
        ConfigError: Ray (with Ray Data) is not installed.
    """
    try:
        import ray
        import ray.data  # Ray Data is what the engine uses
    except ImportError:
        raise ConfigError(f"--engine ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


class RayEngine:
    """Runs a build's transform on Ray and yields the results in input order.

    Args:
        config: the build's options (batch size, slice, Ray address, workers).
        progress: one-line notes for the user, and input bytes read for the progress bar.

    Attributes:
        inputs: once the results are exhausted, the inputs as the manifest
            describes them (name, format, sha256, bytes), from the read task.
    """

    def __init__(self, config: BuildConfig, progress: Progress):
        self.config = config
        self.log = progress.log
        self.advance = progress.advance
        self.inputs: list[dict[str, Any]] | None = None

    def check(self, names: Sequence[str]) -> None:
        """Refuse inputs a Ray task cannot read again: stdin, pipes, devices.

        This process reads the inputs only up to the first good record (to bind
        the template); a Ray task then reads them from the start. A stream (``-``,
        ``<(cmd)``, a FIFO) would be half-consumed here and unreadable there, and
        the build would silently write fewer rows.

        Raises:
            ConfigError: an input is stdin or not a regular file.
        """
        for name in names:
            if name == "-":
                raise ConfigError(
                    "--engine ray cannot read stdin ('-'): its workers read the inputs again; "
                    "save it to a file, or use --engine local"
                )
            local = storage.local_path(name)
            if local is not None and os.path.exists(local) and not os.path.isfile(local):
                raise ConfigError(
                    f"--engine ray cannot read {name}: not a regular file (a pipe or device can be read "
                    "only once, and only by this process); save it to a file, or use --engine local"
                )

    def results(
        self,
        inputs: Inputs,
        transform: Transform,
        batches: Iterator[tuple[int, list[Record]]],
        sample: BatchResult | None,
    ) -> Iterator[BatchResult]:
        """The transform's result for every batch of this slice, in order.

        Ray reads the inputs again itself (``inputs.names``, expanded once by the
        build): this process has read them only up to the first batch of ``batches``,
        the one holding the first good record. Batches before it are all bad and need
        no transform (as in the local engine). ``sample`` is not used: that batch is
        transformed again on Ray.

        Raises:
            SftprepError: what a task raised, as one line.
            WorkerError: a task failed for a reason that is not sftprep's.
        """
        bound_at, _ = next(batches)
        return self.run(inputs.names, transform, bound_at)

    def run(self, names: list[str], transform: Transform, bound_at: int) -> Iterator[BatchResult]:
        """The results for the inputs ``names`` (expanded), transformed from batch ``bound_at`` on."""
        ray = import_ray()
        # Errors come back as sftprep's one-line errors; Ray would log them with tracebacks.
        levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        started = False
        try:
            started = self._connect(ray)
            yield from self._results(ray, names, transform, bound_at)
        except Exception as exc:
            if _is_ray_error(ray, exc):
                raise _plain(exc) from None
            raise
        finally:
            if started:
                ray.shutdown()
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)

    def described(self, inputs: Inputs) -> list[dict[str, Any]]:
        """The Ray read task's inputs, checked against what this process read of them first.

        The read task reads every input again, elsewhere; if it saw fewer inputs, or fewer
        bytes of one than this process already had, rows are missing and the build must fail.

        Raises:
            InputError: the Ray read task read less than this process did.
        """
        described = self.inputs
        if described is None or len(described) != len(inputs.names):
            got = 0 if described is None else len(described)
            raise InputError(
                f"the Ray read task read {got} of {len(inputs.names)} inputs; nothing was written"
            )
        for here, there in zip(inputs.opened, described, strict=False):
            if there["bytes"] < here.bytes_read:
                raise InputError(
                    f"{here.name}: the Ray read task read {there['bytes']:,} bytes, fewer than the "
                    f"{here.bytes_read:,} this process read: the input changed, or is another file on the "
                    "Ray node; nothing was written"
                )
        return described

    def _connect(self, ray: Any) -> bool:
        """Start a local Ray (or join ADDR); False when Ray was already running in this process."""
        if ray.is_initialized():
            return False
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,  # task errors come back as one line, not as the workers' logs
            "logging_level": logging.ERROR,
        }
        # Like `ray.init()`, a RAY_ADDRESS in the environment names the cluster to join.
        address = self.config.ray_address or os.environ.get("RAY_ADDRESS")
        if address:
            # Ship this sftprep to the cluster, so the workers run the driver's code.
            package = os.path.dirname(os.path.abspath(__file__))
            options["runtime_env"] = {"py_modules": [package]}
            self.log(f"connecting to the Ray cluster at {address}")
            local = [name for name in self.config.inputs if not storage.is_url(name)]
            if local:
                self.log(
                    f"{local[0]} is a local path: the Ray node that reads the inputs must see it at the "
                    "same path (give URLs, or paths on a filesystem every node mounts)"
                )
            try:
                ray.init(address=address, **options)
            except ConnectionError as exc:
                raise RayClusterError(f"cannot reach the Ray cluster at {address}: {exc}") from None
        else:
            self.log(f"starting a local Ray with {self.config.workers} CPU(s)")
            ray.init(num_cpus=self.config.workers, **options)
        return True

    def _results(
        self, ray: Any, names: list[str], transform: Transform, bound_at: int
    ) -> Iterator[BatchResult]:
        with _data_context(ray):
            dataset = self._dataset(ray, names, transform, bound_at)
            batches = dataset.iter_batches(batch_size=None, batch_format="pyarrow")
        for table in batches:
            for kind, payload, nbytes in zip(
                table.column("kind").to_pylist(),
                table.column("payload").to_pylist(),
                table.column("bytes").to_pylist(),
                strict=True,
            ):
                self.advance(nbytes)
                if kind == "error":
                    raise pickle.loads(payload)
                if kind == "inputs":
                    self.inputs = pickle.loads(payload)
                else:
                    yield pickle.loads(payload)

    def _dataset(self, ray: Any, names: list[str], transform: Transform, bound_at: int) -> Any:
        """read -> transform, as a Ray dataset of pickled batches and results."""
        dataset = ray.data.from_items([{"seed": 0}]).map_batches(
            _read,
            fn_kwargs={"names": names, "config": self.config},
            batch_size=1,
            batch_format="pyarrow",
            num_cpus=0,  # one light sequential task: leave the CPUs to the transform
        )
        # Actors, one per CPU, each unpickling the transform once (tasks measured a third
        # slower here). The transform travels as an object reference in a class attribute.
        apply = type("_Apply", (_Apply,), {"blob": ray.put(pickle.dumps(transform)), "bound_at": bound_at})
        actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
        options: dict[str, Any] = {}
        if not self.config.ray_address:
            # One machine loses no nodes; without restarts Ray does not warn about restarting
            # actors whose arguments live in the object store.
            options["max_restarts"] = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Ray deprecates passing max_restarts this way
            return dataset.map_batches(
                apply,
                batch_size=1,
                batch_format="pyarrow",
                num_cpus=1,
                compute=ray.data.ActorPoolStrategy(size=actors),
                **options,
            )


def _item(kind: str, index: int, payload: bytes, nbytes: int) -> pa.Table:
    return pa.table(
        {
            "kind": pa.array([kind]),
            "index": pa.array([index], pa.int64()),
            "payload": pa.array([payload], pa.large_binary()),
            "bytes": pa.array([nbytes], pa.int64()),
        }
    )


def _read(seed: pa.Table, names: list[str], config: BuildConfig) -> Iterator[pa.Table]:
    """The read stage: this slice's batches of records, then the inputs' description."""
    read = [0]
    inputs = Inputs(names, config, Progress(None, lambda n: read.__setitem__(0, read[0] + n)))
    sent = 0
    try:
        for index, batch in enumerate(batched(inputs.records(), config.batch_size)):
            if not in_slice(index, config):
                continue
            yield _item("batch", index, pickle.dumps(batch), read[0] - sent)
            sent = read[0]
    except Exception as exc:  # an unreadable input: the driver raises it, in order
        yield _item("error", -1, _pickled_error(exc), 0)
        return
    yield _item("inputs", -1, pickle.dumps(inputs.describe()), read[0] - sent)


class _Apply:
    """The transform stage: an actor holding the transform; each batch -> its pickled BatchResult."""

    blob: Any = None  # the pickled transform's object reference (set on a subclass)
    bound_at = 0

    def __init__(self) -> None:
        import ray

        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one busy actor per CPU already
        self.transform: Transform = pickle.loads(ray.get(self.blob))

    def __call__(self, table: pa.Table) -> pa.Table:
        return _apply(self.transform, table, self.bound_at)


def _apply(transform: Transform, table: pa.Table, bound_at: int) -> pa.Table:
    kinds, payloads = [], []
    for kind, index, payload in zip(
        table.column("kind").to_pylist(),
        table.column("index").to_pylist(),
        table.column("payload").to_pylist(),
        strict=True,
    ):
        if kind == "batch":
            records = pickle.loads(payload)
            try:
                result = untransformed(records) if index < bound_at else transform(records)
                payload = pickle.dumps(result)
            except Exception as exc:  # the transform names the record (TransformError)
                kind, payload = "error", _pickled_error(exc)
        kinds.append(kind)
        payloads.append(payload)
    table = table.set_column(table.schema.get_field_index("kind"), "kind", pa.array(kinds))
    return table.set_column(
        table.schema.get_field_index("payload"), "payload", pa.array(payloads, pa.large_binary())
    )


def _pickled_error(exc: Exception) -> bytes:
    """A task's error, to be raised on the driver as it is (Ray would wrap it in its traceback)."""
    try:
        return pickle.dumps(exc)
    except Exception:  # an exception that does not pickle: keep its words
        return pickle.dumps(WorkerError(f"a Ray task failed: {type(exc).__name__}: {exc}"))


@contextlib.contextmanager
def _data_context(ray: Any) -> Iterator[None]:
    """Ray Data settings for the build's dataset, restored afterwards (they are per process).

    One block per batch of records (and of results), so that the transform has a
    task per batch to spread over the actors: Ray would otherwise pack what the
    read task yields into blocks of up to 128 MiB, a handful for a whole input.
    """
    context = ray.data.DataContext.get_current()
    saved = (
        context.execution_options.preserve_order,
        context.enable_progress_bars,
        context.target_max_block_size,
    )
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    context.target_max_block_size = 1
    try:
        yield
    finally:
        (
            context.execution_options.preserve_order,
            context.enable_progress_bars,
            context.target_max_block_size,
        ) = saved


def _is_ray_error(ray: Any, exc: BaseException) -> bool:
    return isinstance(exc, ray.exceptions.RayError) or type(exc).__module__.startswith("ray.")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it wraps: Ray's ``cause``, ``__cause__``, ``__context__``."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for inner in (getattr(current, "cause", None), current.__cause__, current.__context__):
            if isinstance(inner, BaseException):
                stack.append(inner)


def _plain(exc: BaseException) -> SftprepError:
    """The one-line error a failed Ray task stands for."""
    for inner in _causes(exc):
        if isinstance(inner, SftprepError) and not type(inner).__module__.startswith("ray"):
            return inner
    root = [e for e in _causes(exc) if not type(e).__module__.startswith("ray")]
    original = root[-1] if root else exc
    message = str(original).strip().splitlines()
    text = message[-1] if message else ""
    return WorkerError(f"a Ray task failed: {type(original).__name__}: {text}")
