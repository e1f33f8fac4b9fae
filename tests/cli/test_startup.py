"""The command line's start-up imports only what the command it runs needs (issue 17 item 2, issue 18 item 4).

An import check, not a timing: each case starts a fresh interpreter (as the
``sftprep`` command does), runs the command in it and lists which heavy
libraries ended up in ``sys.modules``. ``bench/startup.py`` measures the times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("numpy", "pyarrow", "pyarrow.compute", "tokenizers", "jinja2", "rich", "tqdm", "datasets",
         "transformers", "torch", "pandas", "fsspec", "yaml", "ray")  # fmt: skip

# Runs the command with click's standalone mode off (so the interpreter lives on to be
# asked), then prints the heavy modules it imported as JSON on the last line of stdout.
_PROBE = """
import json, sys
from sftprep.cli import cli
try:
    cli.main(sys.argv[1:], prog_name="sftprep", standalone_mode=False)
except SystemExit:
    pass
print()
print(json.dumps(sorted(m for m in sys.modules if m in {heavy!r} or m.startswith("sftprep"))))
"""


def imported(*args: str, cwd: Path = ROOT, ours: bool = False) -> list[str]:
    """The heavy modules (and with ``ours``, sftprep's) a fresh ``sftprep ARGS`` has imported when it ends."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY), *args],
        capture_output=True, text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False,
    )  # fmt: skip
    assert result.stdout.strip(), result.stderr
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    return [m for m in modules if ours or not m.startswith("sftprep")]


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        *[
            [name, "--help"]
            for name in ("build", "inspect", "merge", "verify", "diff", "export", "templates")
        ],
    ],
)
def test_help_imports_nothing_heavy(args):
    assert imported(*args) == []


def test_importing_the_cli_imports_nothing_heavy():
    code = f"import sys, sftprep.cli; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert result.stdout.strip() == "[]"


def test_templates_reads_templates_without_the_pipeline():
    assert imported("templates") == []


def test_a_pair_build_does_not_import_the_viewer_or_the_hub(tmp_path):
    """A plain build imports the pipeline (numpy, pyarrow, tokenizers) but not inspect's rich,
    a progress bar it does not show (stderr is not a terminal here), or datasets/transformers/torch."""
    mods = imported(
        "build", str(ROOT / "sample_data" / "qa.jsonl"), "-o", str(tmp_path / "out"), "-q", ours=True
    )
    assert (tmp_path / "out" / "manifest.json").exists()
    assert {"numpy", "pyarrow", "tokenizers", "sftprep.build"} <= set(mods)
    assert not {"rich", "tqdm", "datasets", "transformers", "torch", "pandas", "ray"} & set(mods)
    # Only the build's own library: not inspect's viewer, verify, diff, merge, recipes or Ray.
    others = (
        "sftprep.view",
        "sftprep.verify",
        "sftprep.diff",
        "sftprep.merge",
        "sftprep.recipe",
        "sftprep.ray",
    )
    assert [m for m in mods if m.startswith(others)] == []
