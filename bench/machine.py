"""What the benchmark ran on: the machine, the interpreter, the library versions, the commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("sftprep", "tokenizers", "pyarrow", "numpy", "datasets", "transformers", "trl", "torch")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def describe(repo: Path) -> dict[str, Any]:
    """Facts about this run's machine and software, for the report and the JSON."""
    dirty = _git(repo, "status", "--porcelain", "--untracked-files=no", "--", "sftprep")
    import sftprep

    return {
        "sftprep_imported_from": str(Path(sftprep.__file__).resolve().parent.parent),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "packages": {name: _version(name) for name in PACKAGES},
        "sftprep_commit": _git(repo, "rev-parse", "--short", "HEAD"),
        "sftprep_uncommitted_changes": bool(dirty) if dirty is not None else None,
        "env": {
            k: os.environ[k]
            for k in ("OPENBLAS_CORETYPE", "TOKENIZERS_PARALLELISM", "RAYON_NUM_THREADS")
            if k in os.environ
        },
    }


def summary_lines(info: dict[str, Any]) -> list[str]:
    """The machine block printed above the table."""
    versions = ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v) or "none"
    missing = [k for k, v in info["packages"].items() if not v]
    commit = f"commit {info['sftprep_commit'] or 'unknown'}"
    if info["sftprep_uncommitted_changes"]:
        commit += " + uncommitted changes in sftprep/"
    if Path(info["sftprep_imported_from"]) != REPO:
        commit = f"imported from {info['sftprep_imported_from']} (the repository is at {commit})"
    memory = f", {info['memory_gib']:.0f} GiB RAM" if info["memory_gib"] else ""
    lines = [
        f"machine: {info['cpus_usable']} usable cores ({info['cpus']} online), {info['cpu_model']}{memory}",
        f"         {info['platform']}, Python {info['python']}",
        f"versions: {versions}" + (f" (not installed: {', '.join(missing)})" if missing else ""),
        f"sftprep: {commit}",
    ]
    if info["env"]:
        lines.append("env: " + ", ".join(f"{k}={v}" for k, v in info["env"].items()))
    return lines
