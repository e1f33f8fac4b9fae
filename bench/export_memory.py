"""Peak memory of ``sftprep export`` against the number of rows: it should not grow with them.

Usage (from the repository root, with the shared data in ../shared)::

    python bench/export_memory.py --rows 100000 1000000 --formats parquet mds megatron

It builds NQ-open once with gpt2 (3,610 real rows), then makes Arrow builds of
each requested size by repeating those rows through sftprep's own shard writer
(the rows are real; only the manifest's counts are adjusted), and runs
``sftprep export`` on each in a fresh process, reporting that process's peak
resident memory (``ru_maxrss`` from ``wait4``) and wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sftprep.build import BuildConfig, run_build  # noqa: E402
from sftprep.exports.base import read_manifest, read_schema, split_batches  # noqa: E402
from sftprep.writer import ShardWriter, write_json  # noqa: E402


def base_build(work: Path) -> Path:
    out = work / "base"
    shared = ROOT.parent / "shared"
    config = BuildConfig(inputs=(str(shared / "data/qa/NQ-open.dev.jsonl"),), output=str(out), template="qa",
                         fields={"answer": "answer.0"}, tokenizer=str(shared / "tokenizers/gpt2"))  # fmt: skip
    run_build(config)
    return out


def scaled_build(base: Path, rows: int, work: Path) -> Path:
    """An Arrow build of ``rows`` rows: the base build's rows repeated."""
    out = work / f"arrow-{rows}"
    out.mkdir()
    manifest = read_manifest(base)
    schema = read_schema(base, manifest)
    table = pa.Table.from_batches(list(split_batches(base, manifest, "train")), schema)
    writer = ShardWriter(out, schema, int(manifest["config"]["shard_size"]))
    left = rows
    while left:
        for batch in table.slice(0, left).to_batches(max_chunksize=1024):
            writer.write(batch)
        left -= min(left, table.num_rows)
    manifest["shards"] = writer.finish()
    manifest["counts"] = dict(manifest["counts"], rows_written=rows)
    write_json(out / "manifest.json", manifest)
    return out


def measure(build: Path, fmt: str, work: Path) -> tuple[float, float]:
    """Peak RSS (MiB) and seconds of one ``sftprep export`` process."""
    dest = work / f"{build.name}-{fmt}"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sftprep", "export", str(build), "--to", fmt, "-o", str(dest), "-q"], env=env
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"export to {fmt} failed")
    return usage.ru_maxrss / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--formats", nargs="+", default=["parquet", "mds", "megatron"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sftprep-bench-") as tmp:
        work = Path(tmp)
        base = base_build(work)
        results = []
        for rows in args.rows:
            build = scaled_build(base, rows, work)
            for fmt in args.formats:
                rss, seconds = measure(build, fmt, work)
                results.append({"rows": rows, "format": fmt, "peak_rss_mib": round(rss, 1),
                                "seconds": round(seconds, 1)})  # fmt: skip
                print(json.dumps(results[-1]), flush=True)


if __name__ == "__main__":
    main()
