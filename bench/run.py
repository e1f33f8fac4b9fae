"""sftprep's throughput and memory benchmark (issue 5): ``make bench``, or ``python bench/run.py``.

In one run, on the same rows and the same tokenizer, side by side:

1. the raw tokenizer limit (``encode_batch_fast``, batches of 4096);
2. the ``datasets.map`` route that TRL's SFTTrainer, axolotl and LLaMA-Factory
   take, with one process and with two: TRL's own ``SFTTrainer`` when TRL is
   installed (else a copy of what it does), and the same work as one batched map;
3. ``sftprep build`` in sequence mode with ``--labels shifted`` and ``--labels hf``
   (and ``--workers 1`` when the option exists), and exploded mode on a subset;

then prints one table (rows/s, tokens/s, MB/s in, peak memory, ratios to the limit
and to the fastest datasets.map run) and checks that a 2,000,000-row build peaks
at no more memory than a 200,000-row one (``--skip-memory`` skips that part,
which takes the longest). Every route runs in a process of its own; see
``routes.py`` for what each one times and ``procstat.py`` for how memory is
measured. Results also go to ``bench/results/`` as JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import chat_build  # noqa: E402 - bench/ is a folder of scripts, not a package
import datagen  # noqa: E402
import machine  # noqa: E402
from procstat import ProcResult, run_measured, wait_until_quiet  # noqa: E402

REPO = HERE.parent
ROUTES = HERE / "routes.py"
DEFAULT_TOKENIZER = REPO.parent / "shared" / "tokenizers" / "gpt2"
MiB = 2**20
GiB = 2**30

# The issue's targets.
LIMIT_RATIO = 0.8
MAP_RATIO = 3.0
MEMORY_GROWTH = 1.2
MEMORY_CEILING = 1 * GiB
EXPLODED_RATIO = 0.5
SHARED_CPU = 0.1  # cores used by others during a route, above which its row is suspect


@dataclass
class Route:
    """One measured command. ``kind`` is limit, map, sftprep or exploded."""

    key: str
    label: str
    kind: str
    argv: list[str]
    input: Path
    output: Path | None = None
    cache: Path | None = None


@dataclass
class Measured:
    """One route's best run (the least work time over ``--repeat`` runs)."""

    key: str
    label: str
    kind: str
    input_bytes: int
    seconds: float | None = None
    wall: float | None = None
    rows: int | None = None
    tokens: int | None = None
    written_tokens: int | None = None
    peak_pss: int | None = None
    peak_rss: int | None = None
    max_rss: int | None = None
    other_cpu: float | None = None
    cpu_seconds: float | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def rate(self, what: str) -> float | None:
        """Per second of work: rows, tokens, written_tokens or bytes."""
        value = {
            "rows": self.rows,
            "tokens": self.tokens,
            "written_tokens": self.written_tokens,
            "bytes": self.input_bytes,
        }[what]
        if value is None or not self.seconds:
            return None
        return value / self.seconds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark sftprep build against the raw tokenizer and the datasets.map route."
    )
    parser.add_argument("--rows", type=int, default=50_000, help="rows for the throughput table (50000)")
    parser.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER), help="tokenizer folder or file")
    parser.add_argument(
        "--eos-token",
        default=None,
        help="EOS for the datasets.map route (default: the tokenizer's, as sftprep reads it)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5000 rows, no memory check")
    parser.add_argument("--skip-memory", action="store_true", help="skip the 200k vs 2M memory check")
    parser.add_argument("--skip-chat", action="store_true", help="skip the chat table (bench/chat_build.py)")
    parser.add_argument(
        "--chat-memory",
        type=int,
        nargs=2,
        default=[100_000, 1_000_000],
        metavar=("SMALL", "LARGE"),
        help="conversations of the chat memory check (skipped with --skip-memory)",
    )
    parser.add_argument(
        "--memory-rows",
        type=int,
        nargs=2,
        default=[200_000, 2_000_000],
        metavar=("SMALL", "LARGE"),
        help="row counts of the memory check",
    )
    parser.add_argument("--exploded-rows", type=int, default=1000, help="rows of the exploded-mode subset")
    parser.add_argument(
        "--exploded-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the exploded build (e.g. to raise its size budget)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per route; the fastest counts (1)")
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="run a route again when other processes kept the CPU busy meanwhile, up to this many times (2)",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a route is killed")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60,
        help="before each route, wait up to this many seconds for other processes to leave the CPU (60)",
    )
    parser.add_argument("--results", type=Path, default=HERE / "results", help="where the JSON goes")
    parser.add_argument("--keep", action="store_true", help="keep generated inputs and outputs")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = min(args.rows, 5000)
        args.exploded_rows = min(args.exploded_rows, 200)
        args.skip_memory = True
    return args


def _child_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_DATASETS_CACHE=str(work / "hf-cache"),
        TRANSFORMERS_VERBOSITY="error",
        TRANSFORMERS_NO_ADVISORY_WARNINGS="1",
    )
    return env


def sftprep_build_help(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "sftprep", "build", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=HERE,
    )
    if out.returncode != 0:
        raise SystemExit(f"bench: `sftprep build --help` failed:\n{out.stderr.strip()}")
    return out.stdout


def workers_option(help_text: str) -> str | None:
    """The build's worker-count option, if this sftprep has one."""
    match = re.search(r"(--workers|--num-proc)\b", help_text)
    return match.group(1) if match else None


def eos_token(tokenizer: str, given: str | None) -> str:
    """The EOS the datasets.map route appends: the one sftprep would train."""
    if given:
        return given
    from sftprep.tokenizer import load_tokenizer

    token = load_tokenizer(tokenizer).eos_token
    assert token is not None  # load_tokenizer raises when there is none
    return token


def has_trl() -> bool:
    """TRL (and torch, which it needs) can be imported: time the real SFTTrainer."""
    return all(importlib.util.find_spec(name) is not None for name in ("trl", "torch", "transformers"))


def trl_version() -> str:
    from importlib import metadata

    return metadata.version("trl")


def plan_routes(args, work: Path, table_input: Path, exploded_input: Path, help_text: str) -> list[Route]:
    """Every route of the throughput table, in the order they run."""
    py, routes_py = sys.executable, str(ROUTES)
    eos = eos_token(args.tokenizer, args.eos_token)
    routes = [
        Route(
            "limit",
            "raw encode_batch_fast (limit)",
            "limit",
            [py, routes_py, "raw", "--input", str(table_input), "--tokenizer", args.tokenizer],
            table_input,
        )
    ]
    if has_trl():
        for num_proc in (1, 2):
            key = f"trl-{num_proc}"
            cache = work / "cache" / key
            argv = [
                py,
                routes_py,
                "trl",
                "--input",
                str(table_input),
                "--tokenizer",
                args.tokenizer,
                "--eos-token",
                eos,
                "--num-proc",
                str(num_proc),
                "--cache-dir",
                str(cache),
            ]
            label = f"TRL {trl_version()} SFTTrainer, dataset_num_proc={num_proc}"
            routes.append(Route(key, label, "map", argv, table_input, cache=cache))
    # Without TRL, a copy of what its SFTTrainer does stands in for it.
    styles = (
        [("batched", "map(batched=True)")]
        if has_trl()
        else [("trl", "TRL-style map"), ("batched", "map(batched=True)")]
    )
    for style, name in styles:
        for num_proc in (1, 2):
            key = f"map-{style}-{num_proc}"
            cache = work / "cache" / key
            argv = [
                py,
                routes_py,
                "map",
                "--input",
                str(table_input),
                "--tokenizer",
                args.tokenizer,
                "--eos-token",
                eos,
                "--style",
                style,
                "--num-proc",
                str(num_proc),
                "--cache-dir",
                str(cache),
            ]
            routes.append(
                Route(key, f"datasets {name}, num_proc={num_proc}", "map", argv, table_input, cache=cache)
            )
    workers = workers_option(help_text)
    builds = [("shifted", "sftprep --labels shifted", []), ("hf", "sftprep --labels hf", [])]
    if workers:
        builds.append(("shifted-w1", f"sftprep --labels shifted {workers} 1", [workers, "1"]))
    for key, label, extra in builds:
        labels = key.split("-")[0]
        routes.append(
            _sftprep_route(
                f"sftprep-{key}",
                label,
                "sftprep",
                table_input,
                work,
                args.tokenizer,
                ["--labels", labels, *extra],
            )
        )
    routes.append(
        _sftprep_route(
            "sftprep-exploded",
            f"sftprep --mode exploded ({args.exploded_rows} rows)",
            "exploded",
            exploded_input,
            work,
            args.tokenizer,
            ["--mode", "exploded", *args.exploded_arg],
        )
    )
    return routes


def _sftprep_route(key, label, kind, input_path, work, tokenizer, extra) -> Route:
    output = work / "out" / key
    argv = [
        sys.executable,
        str(ROUTES),
        "sftprep",
        str(input_path),
        "-o",
        str(output),
        "--tokenizer",
        tokenizer,
        "-t",
        "prompt-completion",
        "-q",
        *extra,
    ]
    return Route(key, label, kind, argv, input_path, output=output)


def exploded_written_tokens(output: Path) -> int:
    """Ids an exploded build wrote: every prefix (input_ids) plus one target id per row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    total = 0
    for shard in sorted(output.glob("data-*.arrow")):
        with pa.OSFile(str(shard), "rb") as f:
            for batch in pa.ipc.open_stream(f):
                ids = batch.column("input_ids")
                total += int(pc.sum(pc.list_value_length(ids)).as_py() or 0) + batch.num_rows
    return total


def _cleanup(route: Route) -> None:
    for path in (route.output, route.cache):
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)


def run_route(route: Route, env: dict[str, str], logs: Path, args: argparse.Namespace) -> Measured:
    """Run one route once (on a quiet machine, if it gets quiet) and read what it reports."""
    _cleanup(route)
    wait_until_quiet(args.quiet_wait)
    measured = Measured(route.key, route.label, route.kind, route.input.stat().st_size)
    proc: ProcResult = run_measured(route.argv, logs, route.key, env=env, timeout=args.timeout)
    measured.wall, measured.peak_rss, measured.max_rss = proc.wall, proc.peak_rss, proc.max_rss
    measured.peak_pss = proc.peak_pss
    measured.other_cpu = proc.other_cpu
    report = _last_json(proc.stdout)
    if proc.returncode != 0 or report is None or "error" in report:
        why = "killed after the timeout" if proc.timed_out else f"exit {proc.returncode}"
        tail = proc.stderr.strip().splitlines()[-3:]
        measured.error = f"{why}: " + " | ".join(tail) if tail else why
        _cleanup(route)
        return measured
    measured.seconds, measured.rows, measured.tokens = report["seconds"], report["rows"], report["tokens"]
    measured.cpu_seconds = report.get("cpu_seconds")
    measured.detail = {
        k: v for k, v in report.items() if k not in ("seconds", "rows", "tokens", "cpu_seconds")
    }
    measured.written_tokens = measured.tokens
    if route.kind == "exploded" and route.output is not None:
        measured.written_tokens = exploded_written_tokens(route.output)
    _cleanup(route)
    return measured


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _quiet(m: Measured) -> bool:
    return m.other_cpu is None or m.other_cpu <= SHARED_CPU


def _better(new: Measured, old: Measured | None) -> bool:
    """Prefer runs that had the machine to themselves, then the faster run."""
    if old is None or old.seconds is None:
        return True
    if new.seconds is None:
        return False
    if _quiet(new) != _quiet(old):
        return _quiet(new)
    return new.seconds < old.seconds


def run_table(routes: list[Route], env, logs: Path, args) -> dict[str, Measured]:
    """Every route ``--repeat`` times, round-robin so drift hits all alike.

    A run during which other processes kept the CPU busy is run again (up to
    ``--retries`` times); the fastest run that had the machine to itself counts.
    """
    best: dict[str, Measured] = {}
    for round_ in range(args.repeat):
        for route in routes:
            tag = f"[{round_ + 1}/{args.repeat}] " if args.repeat > 1 else ""
            for attempt in range(1 + args.retries):
                again = f" (again: the machine was busy, {attempt}/{args.retries})" if attempt else ""
                print(f"  {tag}{route.label}{again} ...", end="", flush=True, file=sys.stderr)
                m = run_route(route, env, logs, args)
                busy = "" if _quiet(m) else f" (others kept {m.other_cpu:.2f} cores busy)"
                print(f" {m.seconds:.2f} s{busy}" if m.seconds else f" FAILED ({m.error})", file=sys.stderr)
                if _better(m, best.get(route.key)):
                    best[route.key] = m
                if m.error or _quiet(m):
                    break
    return best


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table_lines(results: dict[str, Measured]) -> list[str]:
    """The throughput table, ratios included."""
    limit = results.get("limit")
    maps = [m for m in results.values() if m.kind == "map" and m.seconds]
    best_map = max(maps, key=lambda m: m.rate("rows") or 0.0) if maps else None
    best_trl = _best_trl(results)
    shifted = results.get("sftprep-shifted")
    header = (
        f"{'route':<46} {'rows':>8} {'tokens':>11} {'work s':>7} {'cpu s':>6} {'wall s':>7} {'rows/s':>8} "
        f"{'tok/s':>7} {'MB/s in':>7} {'peak mem':>9} {'x limit':>7} {'x TRL':>6} {'x map':>6} {'busy':>5}"
    )
    lines = [header, "-" * len(header)]
    for m in results.values():
        if m.error:
            lines.append(f"{m.label:<46} FAILED: {m.error}")
            continue
        if m.kind == "exploded":
            x_limit = x_trl = x_map = None  # rows differ; see the per-written-token line below the table
            tokens = m.written_tokens
        else:
            x_limit = _ratio(m.rate("rows"), limit.rate("rows") if limit else None)
            x_map = _ratio(m.rate("rows"), best_map.rate("rows") if best_map else None)
            x_trl = _ratio(m.rate("rows"), best_trl)
            tokens = m.tokens
        tok_rate = tokens / m.seconds if tokens is not None and m.seconds else None
        lines.append(
            f"{m.label:<46} {m.rows:>8,} {tokens:>11,} {m.seconds:>7.2f} {_fmt(m.cpu_seconds, '.1f'):>6} "
            f"{m.wall:>7.2f} "
            f"{_fmt(m.rate('rows'), ',.0f'):>8} {_fmt(tok_rate and tok_rate / 1e6, '.2f') + 'M':>7} "
            f"{_fmt(m.rate('bytes') and m.rate('bytes') / 1e6, '.1f'):>7} "
            f"{_fmt(m.peak_pss and m.peak_pss / MiB, ',.0f') + ' MiB':>9} "
            f"{_fmt(x_limit, '.2f'):>7} {_fmt(x_trl, '.2f'):>6} {_fmt(x_map, '.2f'):>6} {_fmt(m.other_cpu, '.2f'):>5}"
        )
    lines += [
        "",
        "work s: the route's own timer after its imports (the limit times only encode_batch_fast over texts",
        "already in memory; datasets.map times tokenizer + load_dataset + map; sftprep times the whole build).",
        "cpu s: CPU time the route used in that time, its worker processes and threads included.",
        "wall s: the whole process. tok/s: tokens in the rows written (sftprep and map count the EOS; exploded:",
        "every written id, prefixes included). peak mem: resident memory summed over the route's processes",
        "(PSS, so pages forked workers share count once; sampled every 0.1 s), or the largest process's peak",
        "RSS (exact, from rusage) when that is more.",
        "x limit / x TRL / x map: rows/s over the limit's, over TRL's own preparation at its faster num_proc",
        "(the route the issue's reference figures measure), and over the fastest datasets.map run of all.",
        f"busy: cores other processes kept busy meanwhile; above {SHARED_CPU} the row measured a shared machine.",
    ]
    shared = [m.label for m in results.values() if m.other_cpu is not None and m.other_cpu > SHARED_CPU]
    if shared:
        lines.append("WARNING: the machine was not quiet during: " + "; ".join(shared) + " (try --repeat)")
    if best_map is not None:
        lines.append(f"fastest datasets.map run (TRL included): {best_map.label}.")
        bound = _ratio(limit.rate("rows") if limit else None, best_map.rate("rows"))
        if bound is not None:
            lines.append(
                f"it runs at {1 / bound:.2f}x the limit, so nothing that tokenizes the same text can be more than "
                f"{bound:.2f}x as fast as it (the limit over it)."
            )
    if shifted is not None and shifted.seconds:
        exploded = results.get("sftprep-exploded")
        if exploded is not None and exploded.seconds:
            ratio = _ratio(exploded.rate("written_tokens"), shifted.rate("tokens"))
            lines.append(
                f"exploded: {exploded.written_tokens:,} ids written from {exploded.detail.get('examples', 0):,} "
                f"examples, {exploded.rate('written_tokens') / 1e6:.2f}M written ids/s = "
                f"{_fmt(ratio, '.2f')}x the shifted sequence build's tokens/s"
            )
    return lines


def _best_trl(results: dict[str, Measured]) -> float | None:
    """Rows/s of TRL's own preparation (or its stand-in) at its faster setting: the route users know,
    and the one the issue's reference figures measure."""
    rates = [m.rate("rows") for k, m in results.items() if k.startswith(("trl-", "map-trl-")) and m.seconds]
    return max((r for r in rates if r), default=None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(results: dict[str, Measured], memory: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each of the issue's measurable targets: what was measured and whether it is met."""
    limit, out = results.get("limit"), []
    maps = [m.rate("rows") for m in results.values() if m.kind == "map" and m.seconds]
    best_map = max((r for r in maps if r), default=None)
    best_trl = _best_trl(results)
    bound = _ratio(limit.rate("rows") if limit else None, best_map)
    for key in ("sftprep-shifted", "sftprep-hf"):
        m = results.get(key)
        if m is None or not m.seconds:
            continue
        x_limit = _ratio(m.rate("rows"), limit.rate("rows") if limit else None)
        out.append(_target(f"1. {m.label} >= {LIMIT_RATIO}x limit", x_limit, LIMIT_RATIO))
        lean = _target(f"2. {m.label} >= {MAP_RATIO}x fastest datasets.map", _ratio(m.rate("rows"), best_map),
                       MAP_RATIO)  # fmt: skip
        if bound is not None and bound < MAP_RATIO:
            lean["note"] = f"at most {bound:.2f}x is possible: the limit itself is {bound:.2f}x that map"
        out.append(lean)
        if best_trl is not None:
            out.append(
                _target(
                    f"2. {m.label} >= {MAP_RATIO}x TRL's preparation (faster num_proc)",
                    _ratio(m.rate("rows"), best_trl),
                    MAP_RATIO,
                )
            )
    if memory and memory.get("ratio") is not None:
        out.append(
            _target(
                f"3. 2M-row peak memory <= {MEMORY_GROWTH}x the 200k-row peak",
                memory["ratio"],
                MEMORY_GROWTH,
                higher_is_better=False,
            )
        )
        out.append(
            _target(
                "3. 2M-row peak memory < 1 GiB (GiB)",
                memory["large_peak"] / GiB,
                1.0,
                higher_is_better=False,
                strict=True,
            )
        )
    one, many = results.get("sftprep-shifted-w1"), results.get("sftprep-shifted")
    if one and many and one.seconds and many.seconds:
        same = one.detail.get("shards") == many.detail.get("shards")
        out.append(
            {
                "target": "4. same shard bytes with 1 and the default workers",
                "value": same,
                "goal": True,
                "met": same,
            }
        )
    exploded, shifted = results.get("sftprep-exploded"), results.get("sftprep-shifted")
    if exploded and shifted and exploded.seconds and shifted.seconds:
        ratio = _ratio(exploded.rate("written_tokens"), shifted.rate("tokens"))
        out.append(
            _target(f"5. exploded written ids/s >= {EXPLODED_RATIO}x sequence tok/s", ratio, EXPLODED_RATIO)
        )
    return out


def _target(name, value, goal, higher_is_better=True, strict=False) -> dict[str, Any]:
    if value is None:
        met = None
    elif higher_is_better:
        met = value >= goal
    else:
        met = value < goal if strict else value <= goal
    return {"target": name, "value": value, "goal": goal, "met": met}


def memory_check(args, source, work: Path, env, logs: Path) -> dict[str, Any]:
    """Build SMALL and LARGE rows with the default options; compare the peaks."""
    result: dict[str, Any] = {"rows": list(args.memory_rows)}
    peaks = []
    for rows in args.memory_rows:
        path = work / f"memory-{rows}.jsonl"
        print(f"  writing {rows:,} rows ...", end="", flush=True, file=sys.stderr)
        size = datagen.write_rows(source, rows, path)
        print(f" {size / 1e6:,.0f} MB", file=sys.stderr)
        route = _sftprep_route(
            f"memory-{rows}",
            f"sftprep --labels shifted, {rows:,} rows",
            "sftprep",
            path,
            work,
            args.tokenizer,
            [],
        )
        print(f"  {route.label} ...", end="", flush=True, file=sys.stderr)
        m = run_route(route, env, logs, args)
        print(f" {m.seconds:.1f} s" if m.seconds else f" FAILED ({m.error})", file=sys.stderr)
        path.unlink(missing_ok=True)
        result[str(rows)] = asdict(m)
        peaks.append(m.peak_pss if not m.error else None)
    if None not in peaks:
        result["small_peak"], result["large_peak"] = peaks
        result["ratio"] = peaks[1] / peaks[0]
    return result


def memory_lines(memory: dict[str, Any]) -> list[str]:
    lines = ["memory check (sftprep build, default options):"]
    for rows in memory["rows"]:
        m = memory[str(rows)]
        if m["error"]:
            lines.append(f"  {rows:>10,} rows: FAILED: {m['error']}")
            continue
        lines.append(
            f"  {rows:>10,} rows: {m['input_bytes'] / 1e6:>7,.0f} MB in, {m['tokens']:>12,} tokens, "
            f"{m['seconds']:>7.1f} s, {m['tokens'] / m['seconds'] / 1e6:.2f}M tok/s, peak mem "
            f"{m['peak_pss'] / MiB:,.0f} MiB (RSS summed {m['peak_rss'] / MiB:,.0f} MiB, largest process "
            f"{m['max_rss'] / MiB:,.0f} MiB), busy {_fmt(m['other_cpu'], '.2f')}"
        )
    if memory.get("ratio") is not None:
        lines.append(f"  ratio {memory['ratio']:.2f} (target <= {MEMORY_GROWTH}, and under 1 GiB)")
    return lines


def target_lines(checks: list[dict[str, Any]]) -> list[str]:
    lines = ["targets (issue 5):"]
    for c in checks:
        verdict = {True: "met", False: "NOT met", None: "n/a"}[c["met"]]
        value = c["value"] if isinstance(c["value"], bool) else _fmt(c["value"], ".2f")
        note = f" ({c['note']})" if c.get("note") else ""
        lines.append(f"  {verdict:<8} {c['target']}: {value}{note}")
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.results.mkdir(parents=True, exist_ok=True)
    work = args.results / f"work-{stamp}"
    logs = args.results / f"logs-{stamp}"  # kept: small, and what to read when a route fails
    env = _child_env(work)
    info = machine.describe(REPO)
    print("\n".join(machine.summary_lines(info)))
    try:
        source = datagen.load_source()
        table_input, exploded_input = (
            work / f"rows-{args.rows}.jsonl",
            work / f"exploded-{args.exploded_rows}.jsonl",
        )
        size = datagen.write_rows(source, args.rows, table_input)
        datagen.write_rows(source, args.exploded_rows, exploded_input)
        print(
            f"data: {args.rows:,} prompt/completion rows, {size / 1e6:.1f} MB, cycled from {len(source.lines):,} "
            f"distinct rows of {source.description}; tokenizer {args.tokenizer}"
        )
        routes = plan_routes(args, work, table_input, exploded_input, sftprep_build_help(env))
        print("running the routes (progress on stderr) ...", flush=True)
        results = run_table(routes, env, logs, args)
        lines = ["", *table_lines(results)]
        memory = None
        if not args.skip_memory:
            print("memory check ...", flush=True)
            memory = memory_check(args, source, work, env, logs)
            lines += ["", *memory_lines(memory)]
        if not args.skip_chat:
            print("chat builds ...", flush=True)
            sizes = None if args.skip_memory else tuple(args.chat_memory)
            chat = chat_build.run(
                repeat=args.repeat, quiet_wait=args.quiet_wait, logs=logs / "chat", memory=sizes
            )
            lines += ["", *chat]
        checks = targets(results, memory)
        lines += ["", *target_lines(checks)]
        print("\n".join(lines))
        report = {
            "started": stamp,
            "machine": info,
            "data": source.description,
            "rows": args.rows,
            "tokenizer": args.tokenizer,
            "repeat": args.repeat,
            "routes": [asdict(m) for m in results.values()],
            "memory": memory,
            "targets": checks,
            "table": lines,
        }
        out = args.results / f"bench-{stamp}.json"
        text = json.dumps(report, indent=2, sort_keys=True, default=str) + "\n"
        out.write_text(text, encoding="utf-8")
        (args.results / "latest.json").write_text(text, encoding="utf-8")
        print(f"\nresults: {out}" + (f"; logs and data kept in {work}" if args.keep else ""))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
