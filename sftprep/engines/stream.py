"""The batch stream every engine runs on: inputs -> records -> numbered batches.

Whatever runs the transform (this process, worker processes, Ray), the records
are read by the same :class:`Inputs`, cut by :func:`batched` into the same
batches of ``--batch-size``, numbered from 0 over all inputs in order, and
batch ``k`` belongs to slice ``k mod --num-shards`` (:func:`in_slice`). So the
rows, their order and the shard files do not depend on the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sftprep import storage
from sftprep.config import BuildConfig
from sftprep.errors import SftprepError, TransformError
from sftprep.readers import InputFile, Record
from sftprep.transform import BatchResult, Counts

__all__ = ["Inputs", "Located", "Progress", "Transform", "batched", "in_slice", "untransformed"]

# The per-batch transform (a transform.BatchTransform wrapped in Located): records in,
# rows + rejects + counts out.
Transform = Callable[[list[Record]], BatchResult]


def batched(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    """Cut records into lists of ``size`` (the last one shorter)."""
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def in_slice(index: int, config: BuildConfig) -> bool:
    """Whether batch ``index`` belongs to the slice this build writes (``--num-shards``)."""
    return index % config.num_shards == config.shard_index


def untransformed(records: list[Record]) -> BatchResult:
    """The result for a batch with no good record, before the template is bound: all rejects."""
    return BatchResult([], [(r, r.error) for r in records if r.error], Counts(records_read=len(records)))


class Located:
    """A transform whose crashes name the record that causes them.

    A crash (a bug, not a bad record) inside a worker process or a Ray task
    would otherwise surface as a traceback about a batch; this re-runs the
    batch's records one at a time to find the culprit, so every engine ends
    with ``data.jsonl:17: the transform failed on this record: ...``.
    """

    def __init__(self, transform: Transform):
        self.transform = transform

    def __call__(self, records: list[Record]) -> BatchResult:
        try:
            return self.transform(records)
        except SftprepError:
            raise
        except Exception as exc:
            raise TransformError(self._culprit(records, exc)) from None

    def _culprit(self, records: list[Record], exc: Exception) -> str:
        for record in records:
            try:
                self.transform([record])
            except Exception as one:
                return f"{record.where}: the transform failed on this record: {type(one).__name__}: {one}"
        where = f"{records[0].where} to {records[-1].where}" if records else "an empty batch"
        return f"{where}: the transform failed on this batch: {type(exc).__name__}: {exc}"


class Progress:
    """Callbacks the CLI passes in: log lines and progress updates (both optional)."""

    def __init__(
        self, log: Callable[[str], None] | None = None, advance: Callable[[int], None] | None = None
    ):
        self.log = log or (lambda message: None)
        self.advance = advance or (lambda n: None)


class Inputs:
    """The build's inputs (names already expanded), opened one at a time as the stream reaches them.

    Args:
        names: the input names, as :func:`sftprep.readers.expand_inputs` returns them.
        config: the build's options (record size limit, input format).
        progress: told how many input bytes were read.
    """

    def __init__(self, names: list[str], config: BuildConfig, progress: Progress):
        self.names = names
        self.config = config
        self.progress = progress
        self.opened: list[InputFile] = []

    def records(self) -> Iterator[Record]:
        """Every record of every input, in order."""
        for name in self.names:
            with InputFile(
                name, max_record_bytes=self.config.max_record_bytes, format=self.config.input_format
            ) as f:
                self.opened.append(f)
                done = 0
                for record in f.records(lazy=True):
                    yield record
                    if f.bytes_read - done >= 1 << 20:
                        self.progress.advance(f.bytes_read - done)
                        done = f.bytes_read
                self.progress.advance(f.bytes_read - done)

    def total_bytes(self) -> int | None:
        """The inputs' total size, or None when one is stdin."""
        if "-" in self.names:
            return None
        return sum(storage.size(n) for n in self.names)

    def describe(self) -> list[dict[str, Any]]:
        """The inputs read so far, as the manifest lists them."""
        return [
            {"name": f.name, "format": f.format, "sha256": f.sha256, "bytes": f.bytes_read}
            for f in self.opened
        ]
