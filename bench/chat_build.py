"""Chat build throughput against the raw tokenizer limit (issue 18), side by side in one run.

    python bench/chat_build.py [--copies 10] [--repeat 2] [--quiet-wait 60]

``make bench`` runs it after the sequence table (``bench/run.py``; ``--skip-chat`` leaves it out).
The data is ``../shared/data/chat/lima.json`` (1,029 conversations, 1-10 turns) cycled ``--copies``
times (LIMA x10: 10,290 conversations) into JSONL. For each tokenizer with its own chat template
(Llama-3.1, Phi-3-mini) it runs, each in a process of its own:

* ``limit``: ``encode_batch_fast`` over the very texts the build tokenizes (each conversation
  rendered once, untimed; ``routes.py chat-raw``): the encode calls only;
* ``sftprep build LIMA --tokenizer T --workers 1`` and with the default workers: the whole
  process's wall time, interpreter start-up, imports, reading and writing included.

and a per-turn pair: ``sftprep build --turns each`` against the limit over one text per trained
turn (the tokens such a build writes), for issue 18's "per-turn rows cost O(tokens written)".

``--memory SMALL LARGE`` (``make bench`` uses 100,000 and 1,000,000 unless ``--skip-memory``) then
builds LIMA cycled to SMALL and to LARGE conversations with Llama-3.1 (default workers) and
compares the peak memory of the two (target: the larger <= 1.2x the smaller, under 1 GiB).

"x limit" is the limit's encode seconds over the build's wall seconds on the same conversations
(the same tokens: the rows a chat build writes are the rendered texts). Every route runs
``--repeat`` times round-robin and the fastest run counts; "busy" is how many cores other
processes used meanwhile (distrust rows over 0.1).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from procstat import run_measured, wait_until_quiet  # noqa: E402 - bench/ is a folder of scripts

REPO = HERE.parent
SHARED = REPO.parent / "shared"
LIMA = SHARED / "data" / "chat" / "lima.json"
TOKENIZERS = ("llama-3.1", "phi-3-mini")
TARGET = 0.8  # issue 18: chat builds >= 0.8x the limit, wall time with start-up
MiB = 2**20


def write_lima(copies: int, path: Path, conversations: int | None = None) -> int:
    """LIMA cycled ``copies`` times (or to ``conversations``) as JSONL, line by line; returns the count."""
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in json.loads(LIMA.read_text(encoding="utf-8"))]
    total = copies * len(lines) if conversations is None else conversations
    with path.open("w", encoding="utf-8") as f:
        for i in range(total):
            f.write(lines[i % len(lines)])
    return total


def memory_check(sizes: tuple[int, int], work: Path, logs: Path, quiet_wait: float) -> list[str]:
    """Build LIMA cycled to each size with Llama-3.1; compare the peaks."""
    py, routes = sys.executable, str(HERE / "routes.py")
    tok = str(SHARED / "tokenizers" / "llama-3.1")
    lines, peaks = ["chat memory check (LIMA cycled, Llama-3.1's template, default workers):"], []
    for n in sizes:
        data = work / f"memory-{n}.jsonl"
        write_lima(0, data, n)
        argv = [
            py,
            routes,
            "sftprep",
            str(data),
            "--tokenizer",
            tok,
            "-o",
            str(work / f"memory-{n}"),
            "--overwrite",
        ]
        best = measure([(f"memory/{n}", f"sftprep, {n:,} conversations", argv)], 1, quiet_wait, logs)
        data.unlink(missing_ok=True)
        shutil.rmtree(work / f"memory-{n}", ignore_errors=True)
        row = best.get(f"memory/{n}")
        if row is None:
            lines.append(f"  {n:>10,} conversations: FAILED (logs in {logs})")
            continue
        peaks.append(row["peak"])
        lines.append(
            f"  {n:>10,} conversations: {row['tokens']:>13,} tokens, {row['wall']:>8.1f} s wall, "
            f"peak {row['peak'] / MiB:,.0f} MiB, busy {row['busy'] or 0:.2f}"
        )
    if len(peaks) == 2:
        lines.append(f"  ratio {peaks[1] / peaks[0]:.2f} (target <= 1.2, and under 1 GiB)")
    return lines


def plan(data: Path, work: Path, per_turn: bool) -> list[tuple[str, str, list[str]]]:
    """(key, label, argv) of every route."""
    py, routes = sys.executable, str(HERE / "routes.py")
    out: list[tuple[str, str, list[str]]] = []
    for name in TOKENIZERS:
        tok = str(SHARED / "tokenizers" / name)
        build = [
            py,
            routes,
            "sftprep",
            str(data),
            "--tokenizer",
            tok,
            "-o",
            str(work / f"out-{name}"),
            "--overwrite",
        ]
        out += [
            (f"{name}/limit", f"{name} limit (encode_batch_fast)", [py, routes, "chat-raw", "--input", str(data),
                                                                      "--tokenizer", tok]),
            (f"{name}/w1", f"{name} sftprep --workers 1", [*build, "--workers", "1"]),
            (f"{name}/w", f"{name} sftprep (default workers)", build),
        ]  # fmt: skip
    if per_turn:
        tok = str(SHARED / "tokenizers" / "llama-3.1")
        each = [
            py,
            routes,
            "sftprep",
            str(data),
            "--tokenizer",
            tok,
            "-o",
            str(work / "out-each"),
            "--overwrite",
        ]
        out += [
            ("each/limit", "llama-3.1 per-turn limit", [py, routes, "chat-raw", "--input", str(data),
                                                        "--tokenizer", tok, "--turns", "each"]),
            ("each/w", "llama-3.1 sftprep --turns each", [*each, "--turns", "each"]),
        ]  # fmt: skip
    return out


def _report(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def measure(routes, repeat: int, quiet_wait: float, logs: Path) -> dict[str, dict[str, Any]]:
    """Every route ``repeat`` times round-robin; the fastest run (limit: encode s, build: wall s) counts."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="true")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    best: dict[str, dict[str, Any]] = {}
    for round_ in range(repeat):
        for key, label, argv in routes:
            wait_until_quiet(quiet_wait)
            print(f"  [{round_ + 1}/{repeat}] {label} ...", end="", flush=True, file=sys.stderr)
            proc = run_measured(argv, logs, key.replace("/", "-"), env=env)
            report = _report(proc.stdout)
            if proc.returncode or report is None or "error" in report:
                print(f" FAILED (exit {proc.returncode}): {proc.stderr.strip()[-300:]}", file=sys.stderr)
                continue
            seconds = report["seconds"] if key.endswith("limit") else proc.wall
            print(f" {seconds:.2f} s (busy {proc.other_cpu or 0:.2f})", file=sys.stderr)
            row = {"label": label, "seconds": seconds, "wall": proc.wall, "work": report["seconds"],
                   "rows": report["rows"], "tokens": report["tokens"], "peak": proc.peak_pss,
                   "busy": proc.other_cpu}  # fmt: skip
            if key not in best or seconds < best[key]["seconds"]:
                best[key] = row
    return best


def table(best: dict[str, dict[str, Any]], conversations: int) -> list[str]:
    lines = [
        f"chat builds, LIMA cycled to {conversations:,} conversations (tokenizers' own templates):",
        f"  {'route':<36} {'seconds':>8} {'rows':>8} {'tokens':>11} {'Mtok/s':>7} {'x limit':>8} "
        f"{'peak MiB':>9} {'busy':>5}",
    ]
    for key, row in best.items():
        limit = best.get(key.split("/")[0] + "/limit")
        ratio = f"{limit['seconds'] / row['seconds']:.2f}" if limit and not key.endswith("limit") else ""
        lines.append(
            f"  {row['label']:<36} {row['seconds']:>8.2f} {row['rows']:>8,} {row['tokens']:>11,} "
            f"{row['tokens'] / row['seconds'] / 1e6:>7.2f} {ratio:>8} {row['peak'] / MiB:>9,.0f} "
            f"{row['busy'] or 0:>5.2f}"
        )
    lines.append(
        f"  (x limit: the limit's encode seconds / the build's wall seconds, start-up included; target >= {TARGET})"
    )
    return lines


def run(copies: int = 10, repeat: int = 1, quiet_wait: float = 60, per_turn: bool = True,
        logs: Path | None = None, memory: tuple[int, int] | None = None) -> list[str]:  # fmt: skip
    """Run the chat table; returns its lines (empty without ../shared)."""
    if not LIMA.is_file():
        return [f"chat builds: skipped ({LIMA} is missing)"]
    work = Path(tempfile.mkdtemp(prefix="sftprep-chat-bench-"))
    try:
        data = work / f"lima-x{copies}.jsonl"
        conversations = write_lima(copies, data)
        logs = logs or work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        best = measure(plan(data, work, per_turn), repeat, quiet_wait, logs)
        lines = table(best, conversations)
        if memory is not None:
            lines += ["", *memory_check(memory, work, logs, quiet_wait)]
        return lines
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=10, help="LIMA copies (10: 10,290 conversations)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per route; the fastest counts")
    parser.add_argument("--quiet-wait", type=float, default=60, help="seconds to wait for a quiet CPU")
    parser.add_argument("--no-per-turn", action="store_true", help="leave out the --turns each pair")
    parser.add_argument("--memory", type=int, nargs=2, metavar=("SMALL", "LARGE"), help="conversations")
    args = parser.parse_args()
    memory = tuple(args.memory) if args.memory else None
    print("\n".join(run(args.copies, args.repeat, args.quiet_wait, not args.no_per_turn, memory=memory)))


if __name__ == "__main__":
    main()
