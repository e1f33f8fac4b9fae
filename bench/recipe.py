"""Recipe builds: memory against the size of a source, tokens/s against a plain build, dedup's share.

    python bench/recipe.py                          # memory at 100k and 1M records, speed on 300k
    python bench/recipe.py --rows 100000 300000 --speed-rows 100000 --repeat 3
    python bench/recipe.py --skip-memory            # the speed table only

The rows are bench/datagen's Alpaca prompt/completion rows, numbered so they are
distinct (a cycled file would be all duplicates), with one in 20 a copy of the row
seven before it, so dedup has real work. Every build is a separate ``sftprep build``
process, measured by ``procstat.run_measured`` (wall time with start-up; peak memory
of the process tree and the kernel's peak RSS of the largest process).

* **Memory**: one source of N records (weight 1.5, a 5% validation split, exact
  dedup), and a plain build of the same file beside it, for each N in ``--rows``.
  Issue 18's target: the recipe's peak at the largest N is at most 1.2x its peak
  at the smallest, and under 1 GiB.
* **Speed**: the same ``--speed-rows`` records as one plain build over the
  concatenated file, and as a recipe of three sources (the file cut in three),
  without and with exact dedup. Tokens/s side by side; the target is the recipe at
  the plain build's speed. Dedup's share of a build is the with/without difference
  (noisy on a shared machine: ``--repeat`` keeps each route's fastest run) and,
  exactly, the time ``ExactDedup.seen_many`` takes over that many keys.
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

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import datagen  # noqa: E402
import procstat  # noqa: E402

from sftprep.dedup import ExactDedup  # noqa: E402

MiB = 2**20
GROWTH, CEILING = 1.2, 1024 * MiB


def write_distinct(source: datagen.Source, rows: int, path: Path) -> None:
    """``rows`` distinct prompt/completion rows (one in 20 repeats the row 7 before it)."""
    base = [json.loads(line) for line in source.lines]
    with open(path, "w", encoding="utf-8") as out:
        for i in range(rows):
            j = i - 7 if i % 20 == 19 else i
            row = base[j % len(base)]
            out.write(json.dumps({"prompt": f"[{j}] {row['prompt']}", "completion": row["completion"]},
                                 ensure_ascii=False) + "\n")  # fmt: skip


def write_recipe(path: Path, inputs: list[Path], args, *, dedup: bool, split: bool, weight: float) -> None:
    lines = [f'tokenizer = "{args.tokenizer}"', f"max-length = {args.max_length}"]
    if args.workers:
        lines.append(f"workers = {args.workers}")
    for p in inputs:
        lines += ["[[sources]]", f'path = "{p}"', f"weight = {weight}"]
    if split:
        lines += ["[split]", "validation = 0.05"]
    if dedup:
        lines += ["[dedup]", "exact = true"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_build(name: str, build_args: list[str], work: Path, out: Path) -> dict:
    """One ``sftprep build`` process: wall time, memory and the manifest's tokens."""
    shutil.rmtree(out, ignore_errors=True)
    procstat.wait_until_quiet(30)
    cmd = [sys.executable, "-m", "sftprep", "build", *build_args, "-o", str(out), "-q"]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = procstat.run_measured(cmd, work / "logs", name, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{name} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    shutil.rmtree(out, ignore_errors=True)
    return {"name": name, "wall": r.wall, "peak_pss": r.peak_pss, "max_rss": r.max_rss,
            "tokens": manifest["counts"]["tokens"], "busy": r.other_cpu}  # fmt: skip


def memory(args, source, work: Path) -> list[str]:
    lines = ["memory: one source, weight 1.5, 5% split, exact dedup (recipe) vs a plain build of the file",
             f"{'records':>10}  {'recipe peak':>12}  {'recipe max rss':>14}  {'plain peak':>10}  "
             f"{'recipe s':>8}  {'busy':>5}"]  # fmt: skip
    peaks = []
    for rows in args.rows:
        data = work / f"mem-{rows}.jsonl"
        write_distinct(source, rows, data)
        write_recipe(work / f"mem-{rows}.toml", [data], args, dedup=True, split=True, weight=1.5)
        rec = run_build(f"recipe-{rows}", ["--config", str(work / f"mem-{rows}.toml")], work, work / "out")
        plain = {"peak_pss": float("nan")}
        if not args.skip_plain:
            plain = run_build(
                f"plain-{rows}",
                [str(data), "-t", "prompt-completion", "--tokenizer", args.tokenizer, "--max-length",
                 str(args.max_length), *(["--workers", str(args.workers)] if args.workers else [])],
                work, work / "out",
            )  # fmt: skip
        data.unlink()
        peaks.append(rec["peak_pss"])
        if len(lines) == 2:
            print("\n".join(lines), flush=True)
        lines.append(f"{rows:>10,}  {rec['peak_pss'] / MiB:>9.0f} MiB  {rec['max_rss'] / MiB:>10.0f} MiB  "
                     f"{plain['peak_pss'] / MiB:>6.0f} MiB  {rec['wall']:>8.1f}  {rec['busy'] or 0:>5.2f}")  # fmt: skip
        print(lines[-1], flush=True)
    growth = peaks[-1] / peaks[0]
    met = growth <= GROWTH and max(peaks) < CEILING
    lines.append(f"target: recipe peak {args.rows[-1]:,} / {args.rows[0]:,} records = {growth:.2f}x "
                 f"(<= {GROWTH}x) and < 1 GiB: {'met' if met else 'NOT met'}")  # fmt: skip
    return lines


def speed(args, source, work: Path) -> list[str]:
    whole = work / "speed-all.jsonl"
    write_distinct(source, args.speed_rows, whole)
    parts = [work / f"speed-{i}.jsonl" for i in range(3)]
    with open(whole, encoding="utf-8") as f:
        text = f.readlines()
    third = -(-len(text) // 3)
    for i, p in enumerate(parts):
        p.write_text("".join(text[i * third : (i + 1) * third]), encoding="utf-8")
    del text
    write_recipe(work / "three.toml", parts, args, dedup=False, split=False, weight=1)
    write_recipe(work / "three-dedup.toml", parts, args, dedup=True, split=False, weight=1)
    plain_args = [str(whole), "-t", "prompt-completion", "--tokenizer", args.tokenizer,
                  "--max-length", str(args.max_length), *(["--workers", str(args.workers)] if args.workers else [])]  # fmt: skip
    routes = {"plain build, one file": plain_args,
              "recipe, 3 sources": ["--config", str(work / "three.toml")],
              "recipe, 3 sources, exact dedup": ["--config", str(work / "three-dedup.toml")]}  # fmt: skip
    best: dict[str, dict] = {}
    for round_ in range(args.repeat):
        for i, (label, build_args) in enumerate(routes.items()):
            r = run_build(f"speed-{i}-{round_}", build_args, work, work / "out")
            if label not in best or r["wall"] < best[label]["wall"]:
                best[label] = r
    plain = best["plain build, one file"]
    lines = [f"speed: {args.speed_rows:,} records, {args.tokenizer}, wall time with start-up, "
             f"fastest of {args.repeat}",
             f"{'route':32}  {'s':>7}  {'tokens/s':>10}  {'x plain':>7}  {'busy':>5}"]  # fmt: skip
    for label, r in best.items():
        rate = r["tokens"] / r["wall"]
        lines.append(f"{label:32}  {r['wall']:>7.1f}  {rate:>10,.0f}  {rate / (plain['tokens'] / plain['wall']):>7.2f}  "
                     f"{r['busy'] or 0:>5.2f}")  # fmt: skip
    with_dedup = best["recipe, 3 sources, exact dedup"]["wall"]
    share = (with_dedup - best["recipe, 3 sources"]["wall"]) / with_dedup
    keys = np.random.default_rng(0).integers(
        0, 2**64 - 1, size=args.speed_rows, dtype=np.uint64, endpoint=True
    )
    dedup, start = ExactDedup(), time.perf_counter()
    for begin in range(0, len(keys), 4096):
        dedup.seen_many(keys[begin : begin + 4096])
    direct = time.perf_counter() - start
    lines.append(f"dedup: {share:+.1%} of the recipe build's wall time (with vs without); "
                 f"ExactDedup.seen_many over {args.speed_rows:,} keys: {direct:.2f} s = {direct / with_dedup:.1%}, "
                 f"{dedup.nbytes / MiB:.1f} MiB of keys (target < 5%)")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000], help="memory check sizes")
    p.add_argument("--speed-rows", type=int, default=300_000)
    p.add_argument("--tokenizer", default=str(REPO.parent / "shared" / "tokenizers" / "gpt2"))
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--workers", type=int, default=None, help="--workers for every build (default: sftprep's)")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument(
        "--skip-plain", action="store_true", help="no plain build beside the memory check's recipes"
    )
    p.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    args = p.parse_args(argv)
    source = datagen.load_source()
    work = Path(tempfile.mkdtemp(prefix="sftprep-recipe-bench-", dir=args.work))
    print(f"data: {source.description}, numbered to be distinct; scratch {work}", flush=True)
    try:
        lines: list[str] = []
        if not args.skip_speed:
            lines += speed(args, source, work)
            print("\n".join(lines), flush=True)
        if not args.skip_memory:
            mem = memory(args, source, work)
            print(mem[-1], flush=True)
            lines += mem
        results = HERE / "results"
        results.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        (results / f"recipe-{stamp}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
