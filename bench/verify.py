"""How fast `sftprep verify` reads a build: MB of shards per second, per core.

The target (issue 15): the check without ``--sources`` reads at least 1 GB of
shards per ten seconds per core (100 MB/s), and ``--sources`` costs about one
build. This builds the benchmark's prompt/completion rows (``datagen.py``: the
Alpaca files cycled to ``--rows``) in a few shapes, then times
``verify_build`` on each: wall time, CPU time of this process (verify runs in
one thread, so CPU seconds are core seconds), and MB/s of shards per CPU second.

    python bench/verify.py                       # 200,000 rows, shifted/hf/packed/padded
    python bench/verify.py --rows 1000000 --sources
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from datagen import load_source, write_rows

from sftprep import BuildConfig, run_build
from sftprep.verify import verify_build

SHAPES = {
    "shifted": {},
    "hf": {"labels": "hf"},
    "packed": {"pack": True, "max_length": 2048},
    "padded": {"pad_to_multiple_of": 64},
}
TARGET_MB_PER_CORE_S = 100.0


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument(
        "--tokenizer", default=str(Path(__file__).resolve().parents[2] / "shared/tokenizers/gpt2")
    )
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated: " + ", ".join(SHAPES))
    parser.add_argument("--sources", action="store_true", help="also time --sources against the build")
    parser.add_argument("--keep", help="build into this directory and keep it")
    args = parser.parse_args(argv)
    work = Path(args.keep or tempfile.mkdtemp(prefix="sftprep-bench-verify-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "rows.jsonl"
    if not data.exists():
        write_rows(load_source(), args.rows, data)
    results = []
    try:
        for shape in args.shapes.split(","):
            out = work / shape
            config = BuildConfig(inputs=(str(data),), output=str(out), tokenizer=args.tokenizer,
                                 template="prompt-completion", overwrite=True, **SHAPES[shape])  # fmt: skip
            _, build_s, _ = _timed(lambda config=config: run_build(config))
            report, wall, cpu = _timed(lambda out=out: verify_build(out))
            mb = report.bytes / 1e6
            row = {"shape": shape, "rows": report.rows, "shard_MB": round(mb, 1), "build_s": round(build_s, 2),
                   "verify_s": round(wall, 2), "verify_cpu_s": round(cpu, 2),
                   "MB_per_cpu_s": round(mb / cpu, 1) if cpu else None, "ok": report.ok}  # fmt: skip
            if args.sources:
                _, sources_s, _ = _timed(lambda out=out: verify_build(out, sources=True))
                row["sources_s"] = round(sources_s, 2)
            results.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    slowest = min(r["MB_per_cpu_s"] or 0 for r in results)
    met = "met" if slowest >= TARGET_MB_PER_CORE_S else "NOT met"
    print(f"cores: {os.cpu_count()}; slowest shape {slowest} MB per CPU second; "
          f"target {TARGET_MB_PER_CORE_S:.0f} MB/s per core (1 GB per 10 s): {met}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
