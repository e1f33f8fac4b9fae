"""Where ``sftprep build`` spends its time: py-spy samples, summed by pipeline stage.

    python bench/profile_build.py                       # 50,000 bench rows, --workers 1
    python bench/profile_build.py --workers 2           # main process and each worker, apart
    python bench/profile_build.py --workers 2 --cpu     # CPU time only (where the cores go)
    python bench/profile_build.py --input my.jsonl -- -t qa --labels hf

It samples a real ``sftprep build`` (wall-clock samples, idle ones included, with
native frames so time inside tokenizers, numpy and Arrow is seen), then files
every sample under the stage its stack belongs to: reading and JSON, templating,
the tokenizer's ``encode_batch``, the per-row Python in ``encode.py``, labels,
Arrow writing, imports, garbage collection, ... and prints the share of each.
The collapsed stacks are kept (``bench/results/profile-*.txt``; speedscope.app
opens them) for a closer look.

Needs ``py-spy`` (``pip install py-spy``) and the right to trace a child
process (root, or ``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import functools
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import datagen  # noqa: E402 - bench/ is a folder of scripts, not a package

DEFAULT_TOKENIZER = HERE.parent.parent / "shared" / "tokenizers" / "gpt2"

OUTSIDE = "outside sftprep (interpreter start-up and exit, idle)"

# Stages by the module of the deepest sftprep frame of a sample.
MODULE_STAGES = {
    "readers.py": "reading + JSON parsing (readers.py)",
    "templates.py": "templating (templates.py)",
    "encode.py": "per-row Python in encode.py (split, EOS, lists -> numpy)",
    "boundary.py": "prompt/target boundary from token lengths (boundary.py)",
    "chat.py": "chat transform (chat.py)",
    "labels.py": "labels + Arrow arrays (labels.py)",
    "writer.py": "Arrow IPC writing, sha256 of shards (writer.py)",
    "tokenizer.py": "loading the tokenizer (tokenizer.py)",
    "build.py": "build loop: batching, counts (build.py)",
    "transform.py": "batch transform: render loop, rejects, counts (transform.py)",
    "parallel.py": "worker pool: submit, pickling, waiting (parallel.py)",
    "packing.py": "packing (packing.py)",
    "cli.py": "cli.py",
}


@functools.cache
def _source_line(package_root: str, frame: str) -> str:
    """The source text of a py-spy frame ``func (sftprep/encode.py:128)``."""
    try:
        location = frame[frame.rindex("(") + 1 : -1]
        path, line = location.rsplit(":", 1)
        lines = (Path(package_root) / path).read_text(encoding="utf-8").splitlines()
        return lines[int(line) - 1]
    except (ValueError, OSError, IndexError):
        return ""


def classify(frames: list[str], package_root: str) -> str:
    """The stage one sampled stack (root first) belongs to."""
    stack = ";".join(frames)
    if "_find_and_load" in stack:
        if "_features_dict (sftprep/writer.py" in stack:
            return "importing datasets for the schema (writer._features_dict)"
        if "<module> (pandas/" in stack:
            return "importing pandas (pyarrow does, on its first pa.array of a numpy array)"
        return "imports at start-up"
    if "gc_collect_main" in stack:
        return "Python's cyclic garbage collector"
    if "drop_glue" in stack and "PyEncoding" in stack:
        return "freeing tokenizers Encoding objects"
    deepest = max((i for i, f in enumerate(frames) if "sftprep/" in f), default=None)
    if deepest is None:
        return OUTSIDE
    frame = frames[deepest]
    line = _source_line(package_root, frame)
    if ".encode_batch" in line:
        return "tokenizers encode_batch (Rust)"
    if "tok.encode(" in line or "tok.decode(" in line:
        return "tokenizers encode/decode, one row at a time (boundary fixes)"
    module = frame[frame.rindex("sftprep/") + len("sftprep/") : frame.rindex(":")]
    # A module of a package (readers/json.py) counts under the package's stage (readers.py).
    return MODULE_STAGES.get(module) or MODULE_STAGES.get(module.split("/")[0] + ".py", module)


def summarize(raw: Path, package_root: str) -> dict[str, Counter[str]]:
    """Samples per stage, per process (``main`` unless py-spy recorded several)."""
    by_process: dict[str, Counter[str]] = {}
    for text in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        if not text.strip():
            continue
        stack, _, count = text.rpartition(" ")
        frames = stack.split(";")
        # With --subprocesses and --threads, py-spy starts a stack with its process
        # chain (parent first) and thread; the last process and the thread name it.
        process, thread = "main", ""
        while frames and frames[0].startswith(("process ", "thread ")):
            head = frames.pop(0)
            if head.startswith("process "):
                process = head.split(":")[0]
            else:
                # "thread (20806): MainThread"; before its threading module starts, "thread (20806)".
                name = head.partition(":")[2].strip() or "MainThread"
                thread = f" {name}"
        key = process + thread
        by_process.setdefault(key, Counter())[classify(frames, package_root)] += int(count)
    return by_process


def report(by_process: dict[str, Counter[str]], rate: int, time_kind: str = "wall") -> list[str]:
    """Per process and thread, the share of its samples in each stage.

    Threads that only wait (the worker pool's helper threads) are left out:
    every one of their samples is "outside sftprep".
    """
    lines = []
    for process, stages in sorted(by_process.items(), key=lambda kv: -sum(kv[1].values())):
        total = sum(stages.values())
        if stages[OUTSIDE] > 0.95 * total:
            continue
        lines.append(f"{process}: {total} samples, about {total / rate:.1f} s of {time_kind} time")
        for stage, n in stages.most_common():
            lines.append(f"  {100 * n / total:5.1f}%  {n / rate:6.2f} s  {stage}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Profile sftprep build with py-spy, by stage.")
    parser.add_argument("--input", type=Path, help="input file (default: --rows bench rows)")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER))
    parser.add_argument("--workers", type=int, default=1, help="--workers for the build (1)")
    parser.add_argument("--rate", type=int, default=250, help="samples per second (250)")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="count only samples where a thread is running (CPU time), not idle or waiting ones",
    )
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("build_args", nargs="*", help="more sftprep build options, after --")
    args = parser.parse_args(argv)
    if shutil.which("py-spy") is None:
        raise SystemExit("bench/profile_build.py needs py-spy: pip install py-spy")
    import sftprep

    package_root = str(Path(sftprep.__file__).resolve().parent.parent)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = args.results / f"profile-work-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        source = args.input
        if source is None:
            source = work / f"rows-{args.rows}.jsonl"
            datagen.write_rows(datagen.load_source(), args.rows, source)
        raw = args.results / f"profile-{stamp}.txt"
        build = [
            sys.executable,
            "-m",
            "sftprep",
            "build",
            str(source),
            "-o",
            str(work / "out"),
            "--tokenizer",
            args.tokenizer,
            "-q",
        ]
        build += args.build_args or ["-t", "prompt-completion"]
        help_text = subprocess.run([*build[:4], "--help"], capture_output=True, text=True, cwd=HERE).stdout
        if "--workers" in help_text:
            build += ["--workers", str(args.workers)]
        elif args.workers != 1:
            raise SystemExit("this sftprep has no --workers option")
        spy = [
            "py-spy",
            "record",
            *([] if args.cpu else ["--idle"]),
            "--native",
            "--rate",
            str(args.rate),
            "--format",
            "raw",
            "-o",
            str(raw),
        ]
        if args.workers > 1:
            spy += ["--subprocesses", "--threads"]
        start = time.perf_counter()
        done = subprocess.run([*spy, "--", *build], capture_output=True, text=True, cwd=HERE)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"profiling failed:\n{done.stderr.strip()}")
        print(f"sftprep build {' '.join(build[4:])}")
        print(f"sftprep from {package_root}; {wall:.1f} s under py-spy; stacks in {raw}")
        print("\n".join(report(summarize(raw, package_root), args.rate, "CPU" if args.cpu else "wall")))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
