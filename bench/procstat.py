"""Run one benchmark route in a child process and measure its wall time and memory.

Peak memory is measured two ways, because a route may fork workers:

* ``peak_rss``: the largest *sum* of resident memory over the child and all its
  descendants, sampled from /proc every ``interval`` seconds. This is what the
  machine has to hold; pages shared after a fork are counted once per process,
  so for multi-process routes it errs high.
* ``max_rss``: the peak RSS of the largest single process, from the kernel's
  rusage of the child (``os.wait4``), exact but blind to workers running side
  by side.

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


@dataclass
class ProcResult:
    """What one child run did.

    Attributes:
        returncode: the exit code (negative: killed by that signal).
        wall: seconds from start to exit, interpreter start-up included.
        peak_rss: bytes, peak of the summed RSS of the process tree (sampled).
        max_rss: bytes, peak RSS of the largest single process (kernel rusage).
        stdout / stderr: what the child printed.
        timed_out: the child was killed for running longer than the timeout.
    """

    returncode: int
    wall: float
    peak_rss: int
    max_rss: int
    stdout: str
    stderr: str
    timed_out: bool = False


def _parents() -> dict[int, int]:
    """pid -> parent pid for every process (``/proc/PID/stat`` field 4)."""
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
        table[int(entry.name)] = int(fields[1])
    return table


def tree_rss(root: int) -> int:
    """Summed resident bytes of ``root`` and all its descendants (0 once it is gone)."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


class _Sampler(threading.Thread):
    """Samples the tree's RSS until told to stop; kills the tree after ``timeout``."""

    def __init__(self, pid: int, interval: float, timeout: float | None):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.peak = 0
        self.timed_out = False
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
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
        interval: seconds between RSS samples.
        timeout: kill the whole process tree after this many seconds.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
        sampler = _Sampler(proc.pid, interval, timeout)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        sampler.done.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
    return ProcResult(
        returncode=proc.returncode,
        wall=wall,
        peak_rss=max(sampler.peak, usage.ru_maxrss * 1024),
        max_rss=usage.ru_maxrss * 1024,  # Linux reports KiB
        stdout=out_path.read_text(encoding="utf-8", errors="replace"),
        stderr=err_path.read_text(encoding="utf-8", errors="replace"),
        timed_out=sampler.timed_out,
    )
