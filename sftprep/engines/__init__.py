"""Engines: where the per-batch transform runs (the datatrove ``executor/`` idea).

The build (:mod:`sftprep.build`) reads, binds the template to the first good
record, and then asks an engine for the transform's results, in input order;
it packs, pads and writes them itself. An engine is anything with the
:class:`Engine` methods, named in :data:`ENGINES`:

* ``stream.py``: the batch stream all engines share (inputs, batches, slices);
* ``local.py``: this process, or worker processes on this machine (``--engine local``);
* ``ray.py``: a Ray Data job, on one machine or a cluster (``--engine ray``).

A third engine is one new module and one line in :data:`ENGINES`; the build
does not change.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sftprep.config import BuildConfig
    from sftprep.engines.stream import Inputs, Progress, Transform
    from sftprep.readers import Record
    from sftprep.transform import BatchResult

__all__ = ["ENGINES", "Engine", "engine_for"]

# --engine NAME -> "module:class". Imported only when chosen (Ray is heavy and optional).
ENGINES = {
    "local": "sftprep.engines.local:LocalEngine",
    "ray": "sftprep.engines.ray:RayEngine",
}


class Engine(Protocol):
    """What the build needs from an engine."""

    def check(self, names: Sequence[str]) -> None:
        """Refuse inputs this engine cannot read, before anything reads them.

        Called with the names as given, then once more with globs expanded.

        Raises:
            ConfigError: an input this engine cannot read (stdin for Ray).
        """

    def results(
        self,
        inputs: Inputs,
        transform: Transform,
        batches: Iterator[tuple[int, list[Record]]],
        sample: BatchResult | None,
    ) -> Iterator[BatchResult]:
        """The transform's results for this slice's batches, in input order.

        Args:
            inputs: the build's inputs; read up to the first good record so far.
            transform: the bound per-batch transform.
            batches: the numbered batches, from the one holding the first good record
                on (read here, lazily); an engine may read the inputs again instead.
            sample: that first batch's result when already computed (the exploded-size
                estimate), so it need not be transformed again.

        Closing the returned iterator stops the engine (its workers, a Ray it started).
        """
        ...

    def described(self, inputs: Inputs) -> list[dict[str, Any]]:
        """After the results: the inputs as the manifest lists them (name, format, sha256, bytes).

        Raises:
            InputError: the engine read less of the inputs than this process did.
        """
        ...


def engine_for(config: BuildConfig, progress: Progress) -> Engine:
    """The engine ``config.engine`` names, built for this build.

    Raises:
        ConfigError: an engine that needs a package that is not installed.
    """
    module, name = ENGINES[config.engine].split(":")
    engine: Engine = getattr(importlib.import_module(module), name)(config, progress)
    return engine
