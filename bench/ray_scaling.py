"""How --engine ray scales from 1 to 2 local workers (issue 8): ``python bench/ray_scaling.py``.

Builds the same input with the local engine and with a local Ray, each with 1
and with 2 workers, in a fresh process per run, and prints one table: Ray's
start-up time apart from the build's, records/s, the speed-up from 1 to 2
workers, and the CPU time of the driver process alone (the main process of
the local engine: reading, packing, writing; with Ray: the same minus
reading, plus taking results out of Ray), which bounds a build however many
workers it has. Every run must write the same rows (its ``content_sha256``); the
script checks it. The input is ``alpaca_5000.json`` from ``../shared/data``
cycled to ``--records`` records of JSONL, tokenized with gpt2.

The numbers go into the README's "Running on a cluster" section.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(HERE))

from procstat import wait_until_quiet  # noqa: E402 - bench/ is a folder of scripts, not a package

# One run, in its own process: start Ray (timed apart) if asked, then time the build.
_RUN = """
import json, resource, sys, time
from sftprep import BuildConfig, run_build
engine, workers, data, out, tokenizer = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
startup = 0.0
if engine == "ray":
    import ray
    t = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    startup = time.perf_counter() - t
config = BuildConfig(inputs=(data,), output=out, tokenizer=tokenizer, template="alpaca", on_error="skip",
                     overwrite=True, workers=workers, engine=engine)
t, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
result = run_build(config)
build = time.perf_counter() - t
end = resource.getrusage(resource.RUSAGE_SELF)
driver = end.ru_utime + end.ru_stime - cpu.ru_utime - cpu.ru_stime  # this process alone, not its workers
print(json.dumps({"startup": startup, "build": build, "records": result.manifest["counts"]["records_read"],
                  "driver_cpu": driver, "content_sha256": result.manifest["content_sha256"]}))
"""


def _input(records: int, directory: Path) -> Path:
    rows = json.loads((SHARED / "data" / "instruction" / "alpaca_5000.json").read_text())
    path = directory / "alpaca.jsonl"
    with open(path, "w") as f:
        for i in range(records):
            f.write(json.dumps(rows[i % len(rows)]) + "\n")
    return path


def _run(engine: str, workers: int, data: Path, out: Path, quiet_wait: float) -> dict:
    load = wait_until_quiet(quiet_wait)  # a neighbour's test run would be measured too
    tokenizer = str(SHARED / "tokenizers" / "gpt2")
    done = subprocess.run(
        [sys.executable, "-c", _RUN, engine, str(workers), str(data), str(out), tokenizer],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "load_before": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=120_000)
    parser.add_argument("--repeat", type=int, default=2, help="runs per setting; the fastest counts")
    parser.add_argument("--quiet-wait", type=float, default=120, help="wait up to this long for idle cores")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = _input(args.records, Path(tmp))
        size = data.stat().st_size / 1e6
        print(f"{args.records:,} records, {size:.1f} MB of JSONL, gpt2, sequence/shifted")
        print("| engine | workers | Ray start-up (s) | build (s) | records/s | speed-up 1 -> 2 "
              "| driver CPU (s) | busy cores before |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        digests = set()
        for engine in ("local", "ray"):
            base = None
            for workers in (1, 2):
                runs = [
                    _run(engine, workers, data, Path(tmp) / "out", args.quiet_wait)
                    for _ in range(args.repeat)
                ]
                best = min(runs, key=lambda r: r["build"])
                digests.update(r["content_sha256"] for r in runs)
                rate = best["records"] / best["build"]
                base = base or best["build"]
                startup = f"{best['startup']:.1f}" if engine == "ray" else "-"
                load = best["load_before"]
                print(f"| {engine} | {workers} | {startup} | {best['build']:.1f} | {rate:,.0f} | "
                      f"{base / best['build']:.2f}x | {best['driver_cpu']:.1f} | {'?' if load is None else f'{load:.2f}'} |")  # fmt: skip
        assert len(digests) == 1, f"the runs wrote different rows: {digests}"
        print("every run wrote the same rows (content_sha256)")


if __name__ == "__main__":
    main()
