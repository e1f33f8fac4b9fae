"""Run one benchmark route in a child process and measure its wall time and memory.

Peak memory is measured three ways, because a route may fork workers:

* ``peak_pss``: the largest *sum* of proportional set size (resident memory,
  with each page shared by several processes split between them) over the
  child and all its descendants, sampled from /proc every ``interval`` seconds.
  This is what the machine has to hold for the route, forked workers included,
  and for a single process it is close to its RSS.
* ``peak_rss``: the same sum of plain RSS: counts the pages forked workers
  share with their parent once per process, so it errs high for them.
* ``max_rss``: the peak RSS of the largest single process, from the kernel's
  rusage of the child (``os.wait4``), exact but blind to workers running side
  by side. Sampling can miss a short spike; this cannot.

Each route gets its own child, so neither number carries over between routes
(``RUSAGE_CHILDREN`` of the benchmark itself would keep the maximum of all).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class ProcResult:
    """What one child run did.

    Attributes:
        returncode: the exit code (negative: killed by that signal).
        wall: seconds from start to exit, interpreter start-up included.
        peak_pss: bytes, peak of the summed PSS of the process tree (sampled; the
            summed RSS where /proc/PID/smaps_rollup cannot be read), and never less
            than ``max_rss``: sampling misses short peaks, rusage does not.
        peak_rss: bytes, peak of the summed RSS of the process tree (sampled).
        max_rss: bytes, peak RSS of the largest single process (kernel rusage).
        stdout / stderr: what the child printed.
        timed_out: the child was killed for running longer than the timeout.
        other_cpu: cores kept busy by *other* processes during the run, on average
            (machine-wide busy time from /proc/stat less the child's own CPU time).
            Above ~0.1 the measurement shared the machine and is not to be trusted.
    """

    returncode: int
    wall: float
    peak_pss: int
    peak_rss: int
    max_rss: int
    stdout: str
    stderr: str
    timed_out: bool = False
    other_cpu: float | None = None


def busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (all cores), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    steal_guest = sum(fields[7:]) if len(fields) > 7 else 0  # steal, guest: not ours to use
    return (sum(fields) - idle - steal_guest) / _TICK


def _parents() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, CPU clock ticks used so far) for every process (``/proc/PID/stat``)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # it exited while we looked
        # The command name (field 2) may hold spaces and ")": split after the last ")".
        fields = stat[stat.rfind(b")") + 2 :].split()
        # Fields 4 (ppid), 14 (utime) and 15 (stime), counted from 3 after the name.
        table[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return table


def _memory(pid: int) -> tuple[int, int | None]:
    """(RSS, PSS or None) of one process in bytes; (0, 0) once it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            rss = int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0, 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return rss, int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return rss, None


def tree_memory(root: int) -> tuple[int, int, dict[int, int]]:
    """Summed RSS and PSS bytes of ``root`` and its descendants, and each one's CPU ticks.

    PSS falls back to RSS where it cannot be read.
    """
    table = _parents()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    rss_total = pss_total = 0
    cpu: dict[int, int] = {}
    stack = [root]
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        rss, pss = _memory(pid)
        rss_total += rss
        pss_total += rss if pss is None else pss
        if pid in table:
            cpu[pid] = table[pid][1]
    return rss_total, pss_total, cpu


class _Sampler(threading.Thread):
    """Samples the tree's memory until told to stop; kills the tree after ``timeout``."""

    def __init__(self, pid: int, interval: float, timeout: float | None):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.peak_rss = self.peak_pss = 0
        # CPU ticks last seen per process of the tree: workers that their parent
        # never waits for are missing from its rusage, but not from here.
        self.cpu: dict[int, int] = {}
        self.timed_out = False
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            rss, pss, cpu = tree_memory(self.pid)
            self.cpu.update(cpu)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            if self.deadline is not None and time.monotonic() > self.deadline:
                self.timed_out = True
                # The child leads its own session, so this reaches its workers too.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
                return
            self.done.wait(self.interval)


def run_measured(
    cmd: list[str],
    log_dir: Path,
    name: str,
    env: dict[str, str] | None = None,
    interval: float = 0.1,
    timeout: float | None = None,
) -> ProcResult:
    """Run ``cmd`` to completion and measure it.

    Args:
        cmd: the command line.
        log_dir: where the child's stdout and stderr are kept (``NAME.out`` / ``NAME.err``).
        name: a file-name-safe label for those logs.
        env: the child's environment (default: ours).
        interval: seconds between memory samples.
        timeout: kill the whole process tree after this many seconds.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        busy_before = busy_seconds()
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
        sampler = _Sampler(proc.pid, interval, timeout)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        busy_after = busy_seconds()
        sampler.done.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
    other = None
    if busy_before is not None and busy_after is not None and wall > 0:
        own = max(usage.ru_utime + usage.ru_stime, sum(sampler.cpu.values()) / _TICK)
        other = max(0.0, (busy_after - busy_before - own) / wall)
    return ProcResult(
        returncode=proc.returncode,
        wall=wall,
        peak_pss=max(sampler.peak_pss, usage.ru_maxrss * 1024),
        peak_rss=max(sampler.peak_rss, usage.ru_maxrss * 1024),
        max_rss=usage.ru_maxrss * 1024,  # Linux reports KiB
        stdout=out_path.read_text(encoding="utf-8", errors="replace"),
        stderr=err_path.read_text(encoding="utf-8", errors="replace"),
        timed_out=sampler.timed_out,
        other_cpu=other,
    )


def wait_until_quiet(max_wait: float, threshold: float = 0.15, probe: float = 1.0) -> float | None:
    """Wait until other processes use less than ``threshold`` cores; give up after ``max_wait`` s.

    A benchmark that shares two cores with someone's test run measures the
    neighbour. Returns the last load seen (cores busy), or None without /proc/stat.
    """
    deadline = time.monotonic() + max_wait
    while True:
        before = busy_seconds()
        time.sleep(probe)
        after = busy_seconds()
        if before is None or after is None:
            return None
        load = (after - before) / probe
        if load < threshold or time.monotonic() >= deadline:
            return load
