"""``--engine ray``: the build's transform as a Ray Data job, on one machine or a cluster.

The job is two Ray Data stages and the driver:

1. *read*: one task streams the inputs (local paths on a shared filesystem, or
   URLs) through the same :class:`~sftprep.readers.InputFile` readers as the
   local engine, cut into the same batches of ``--batch-size`` records, and
   keeps this slice's batches (``--num-shards``);
2. *transform*: a pool of actors, one per CPU, each holding the very
   :class:`~sftprep.build.BatchTransform` the local engine runs (built once on
   the driver and shipped pickled, tokenizer included), turns each batch into
   Arrow rows, rejects and counts;
3. the *driver* takes the results in input order (``preserve_order``) and
   does what the local engine's main process does: handles rejects
   (``--on-error``), packs and pads, writes the shards and, last, the manifest.

So the rows, their order, the counts and even the shard files are those of
the local engine; only the transform, the expensive part, runs on the
cluster. Reading is one sequential stream, as in the local engine (parsing is
far cheaper than tokenizing), and everything written passes through the
driver, whose bandwidth to the output bounds the build.

A task that fails raises its error on the driver as one line naming the
record (``data.jsonl:17: ...``), without Ray's traceback.
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from sftprep.build import BatchResult, BuildConfig, _batched, _Inputs, _Progress, untransformed
from sftprep.errors import ConfigError, SftprepError
from sftprep.parallel import WorkerError
from sftprep.readers import Record, expand_inputs

# The per-batch transform (build.BatchTransform): records in, rows + rejects + counts out.
Transform = Callable[[list[Record]], BatchResult]

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
        config: the build's options (inputs, batch size, slice, Ray address, workers).
        log: one-line notes for the user.
        advance: called with input bytes read, for the progress bar.

    Attributes:
        inputs: once the results are exhausted, the inputs as the manifest
            describes them (name, format, sha256, bytes), from the read task.
    """

    def __init__(self, config: BuildConfig, log: Callable[[str], None], advance: Callable[[int], None]):
        self.config = config
        self.log = log
        self.advance = advance
        self.inputs: list[dict[str, Any]] | None = None

    def results(self, transform: Transform, bound_at: int) -> Iterator[BatchResult]:
        """The transform's result for every batch of this slice, in order.

        Args:
            transform: the bound per-batch transform (pickled to the workers).
            bound_at: index of the batch holding the first good record; batches
                before it are all bad and need no transform (as in the local engine).

        Raises:
            SftprepError: what a task raised, as one line.
            WorkerError: a task failed for a reason that is not sftprep's.
        """
        ray = import_ray()
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        started = self._connect(ray)
        try:
            yield from self._results(ray, transform, bound_at)
        except Exception as exc:
            if _is_ray_error(ray, exc):
                raise _plain(exc) from None
            raise
        finally:
            if started:
                ray.shutdown()

    def _connect(self, ray: Any) -> bool:
        """Start a local Ray (or join ADDR); False when Ray was already running in this process."""
        if ray.is_initialized():
            return False
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,  # task errors come back as one line, not as the workers' logs
            "logging_level": logging.ERROR,
        }
        address = self.config.ray_address
        if address:
            # Ship this sftprep to the cluster, so the workers run the driver's code.
            package = os.path.dirname(os.path.abspath(__file__))
            options["runtime_env"] = {"py_modules": [package]}
            self.log(f"connecting to the Ray cluster at {address}")
            ray.init(address=address, **options)
        else:
            self.log(f"starting a local Ray with {self.config.workers} CPU(s)")
            ray.init(num_cpus=self.config.workers, **options)
        return True

    def _results(self, ray: Any, transform: Transform, bound_at: int) -> Iterator[BatchResult]:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        actors = self._actors(ray)
        names = expand_inputs(self.config.inputs)
        dataset = ray.data.from_items([{"seed": 0}]).map_batches(
            _read,
            fn_kwargs={"names": names, "config": self.config},
            batch_size=1,
            batch_format="pyarrow",
            num_cpus=0,  # one light sequential task: leave the CPUs to the transform
        )
        # The transform travels as a class attribute (an object reference) rather than as a
        # constructor argument, which Ray warns about for actors that may be restarted.
        apply = type("_Apply", (_Apply,), {"blob": ray.put(pickle.dumps(transform)), "bound_at": bound_at})
        dataset = dataset.map_batches(
            apply,
            batch_size=1,
            batch_format="pyarrow",
            concurrency=actors,
            num_cpus=1,
            # On a cluster, actors lost with their node are restarted (Ray then logs a line about
            # it); one machine loses no nodes, so a local Ray keeps quiet with no restarts.
            ray_remote_args_fn=lambda: {"max_restarts": -1 if self.config.ray_address else 0},
        )
        # Ray warns that one read task feeds the actor pool: by design (see the module docstring).
        warnings.filterwarnings("ignore", message="The minimum number of concurrent actors")
        for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            for kind, payload, nbytes in zip(
                table.column("kind").to_pylist(),
                table.column("payload").to_pylist(),
                table.column("bytes").to_pylist(),
                strict=True,
            ):
                self.advance(nbytes)
                if kind == "inputs":
                    self.inputs = pickle.loads(payload)
                else:
                    yield pickle.loads(payload)

    def _actors(self, ray: Any) -> int:
        """One transform actor per CPU of the cluster (the local Ray has ``--workers`` CPUs)."""
        return max(1, int(ray.cluster_resources().get("CPU", 1)))


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
    inputs = _Inputs(names, config, _Progress(None, lambda n: read.__setitem__(0, read[0] + n)))
    sent = 0
    for index, batch in enumerate(_batched(inputs.records(), config.batch_size)):
        if index % config.num_shards != config.shard_index:
            continue
        yield _item("batch", index, pickle.dumps(batch), read[0] - sent)
        sent = read[0]
    yield _item("inputs", -1, pickle.dumps(inputs.describe()), read[0] - sent)


class _Apply:
    """The transform stage: an actor holding one BatchTransform, applied batch by batch."""

    blob: Any = None  # the pickled transform's object reference (set on a subclass)
    bound_at = 0

    def __init__(self) -> None:
        import ray

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one busy actor per CPU already
        self.transform: Transform = pickle.loads(ray.get(self.blob))

    def __call__(self, table: pa.Table) -> pa.Table:
        payloads = []
        for kind, index, payload in zip(
            table.column("kind").to_pylist(),
            table.column("index").to_pylist(),
            table.column("payload").to_pylist(),
            strict=True,
        ):
            if kind == "batch":
                records = pickle.loads(payload)
                result = untransformed(records) if index < self.bound_at else self.transform(records)
                payload = pickle.dumps(result)
            payloads.append(payload)
        return table.set_column(
            table.schema.get_field_index("payload"), "payload", pa.array(payloads, pa.large_binary())
        )


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
