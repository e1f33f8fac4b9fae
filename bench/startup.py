"""How long the ``sftprep`` command takes to start (issue 17 item 2, issue 18 item 4).

    python bench/startup.py            # median of 7 runs each
    python bench/startup.py -n 15

Each case is a fresh ``python -m sftprep ...`` process, timed from start to exit
(wall clock), next to ``python -c pass`` (the interpreter alone) and
``python -c "import pyarrow, numpy, tokenizers"`` (what any build must load).
The targets: ``sftprep --help`` well under 0.2 s, a 40-row build under 0.4 s.
On a busy machine the figures rise with the load: compare each line with the
baseline above it, and read the load average printed at the top.
``python -X importtime -m sftprep --help`` shows where the time goes.

Bytecode is cached (in a temporary ``PYTHONPYCACHEPREFIX``, even where
``PYTHONDONTWRITEBYTECODE`` is set), as for an installed package: without it
every run compiles sftprep's modules from source again, which alone costs a
build about 0.3 s here. ``--no-bytecode`` measures that case.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cases(out: str) -> list[tuple[str, list[str]]]:
    py = [sys.executable]
    sample = str(ROOT / "sample_data" / "qa.jsonl")
    return [
        ("python -c pass (baseline)", [*py, "-c", "pass"]),
        ("import numpy, pyarrow, tokenizers", [*py, "-c", "import numpy, pyarrow, tokenizers"]),
        ("sftprep --help", [*py, "-m", "sftprep", "--help"]),
        ("sftprep build --help", [*py, "-m", "sftprep", "build", "--help"]),
        ("sftprep templates", [*py, "-m", "sftprep", "templates"]),
        ("sftprep build qa.jsonl (40 rows)", [*py, "-m", "sftprep", "build", sample, "-o", out, "--overwrite", "-q"]),
        ("sftprep build qa.jsonl -w 1", [*py, "-m", "sftprep", "build", sample, "-o", out, "--overwrite", "-q", "-w", "1"]),
    ]  # fmt: skip


def wall(command: list[str], runs: int, env: dict[str, str]) -> list[float]:
    """Wall-clock seconds of ``runs`` runs of ``command`` (after one untimed warm-up run)."""
    subprocess.run(
        command, check=True, capture_output=True, env=env, cwd=ROOT
    )  # warm caches, write .pyc files
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=7, help="timed runs per case (default 7)")
    parser.add_argument("--no-bytecode", action="store_true", help="compile from source every run")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} cores, load average {load:.2f}, {sys.executable}")
    print(f"{'case':<36} {'median':>8} {'min':>8} {'max':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPATH"] = str(ROOT)
        if args.no_bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        print(f"bytecode: {'compiled every run' if args.no_bytecode else 'cached (as installed)'}")
        for name, command in cases(str(Path(tmp) / "out")):
            times = wall(command, args.runs, env)
            print(f"{name:<36} {statistics.median(times):>7.3f}s {min(times):>7.3f}s {max(times):>7.3f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
