"""Meta-tests: the README and docs/ are true of the code they describe.

- every command has help and appears in the README and in the manual;
- every ``sftprep`` command line shown in any block names a real command and real options;
- every ``console`` block is run: its ``$ `` commands run in order, in a scratch copy of the
  checkout with ../shared beside it, and what they print must match the block (a line ``...``
  stands for any number of lines; trailing spaces are ignored); a command shown with an
  ``error:`` line must fail, unless it handles the failure itself (``|| echo ...``);
- docs/cli.md is what scripts/gen_cli_docs.py generates from ``--help`` today;
- the README opens with the two commands a newcomer needs, and CI runs the second; ``make demo``
  installs the runtime package only, ``make test`` the dev extras (``make -n``, nothing installed).

So a block written as a transcript (```` ```console ````) is a promise the tests keep; a plain
block (```` ``` ````) is an illustration with placeholder paths, checked for its options only.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from sftprep.chat import load_chat_template, shipped_chat_templates
from sftprep.cli import cli
from sftprep.templates import load_template, shipped_templates

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CLI_PAGE = ROOT / "docs" / "cli.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MANUAL = [page for page in PAGES if page != CLI_PAGE]  # written by hand
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def read(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def fenced_blocks(page: Path) -> list[tuple[str, str]]:
    """(language, text) of every fenced block of a page, in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(read(page))]


def name(page: Path) -> str:
    return str(page.relative_to(ROOT))


# -- commands and options ------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_help_and_is_in_the_docs(command):
    assert cli.commands[command].help and len(cli.commands[command].help) > 20
    assert f"sftprep {command}" in read(README)
    assert any(f"sftprep {command}" in read(page) for page in MANUAL if page != README), (
        "documented in the manual, not only in the generated CLI reference"
    )


@pytest.mark.parametrize("option", [p for p in cli.commands["build"].params if isinstance(p, click.Option)],
                         ids=lambda p: p.name)  # fmt: skip
def test_every_build_option_has_help(option):
    assert option.help, option.name


def shown_command_lines(text: str) -> list[list[str]]:
    """The argument lists of every ``sftprep COMMAND ...`` in a block (after ``$``, a pipe, ``--``)."""
    found = []
    text = text.replace("\\\n", " ")  # continuation lines
    for line in text.splitlines():
        line = line.removeprefix("$ ")
        if "sftprep " not in line or line.lstrip().startswith(("import ", "from ")):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars="|;&")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        tokens = list(lexer)
        for i, token in enumerate(tokens[:-1]):
            if token == "sftprep" and tokens[i + 1] in cli.commands:
                args = []
                for arg in tokens[i + 1 :]:
                    if arg in {"|", ";", "&&", "||", "&"}:
                        break
                    args.append(arg)
                found.append(args)
    return found


def every_shown_command() -> list[tuple[str, list[str]]]:
    return [
        (name(page), args)
        for page in MANUAL
        for language, text in fenced_blocks(page)
        if language not in {"python", "toml", "json"}
        for args in shown_command_lines(text)
    ]


def test_commands_are_found_in_the_docs():
    """The scan below sees the commands the pages show (so that it is not vacuous)."""
    commands = {args[0] for _, args in every_shown_command()}
    assert {"build", "inspect", "merge"} <= commands


@pytest.mark.parametrize(
    ("page", "args"), every_shown_command(), ids=lambda x: x if isinstance(x, str) else None
)
def test_shown_commands_use_real_options(page, args):
    """Every option a shown command line uses exists (a renamed option fails here, not at a user's)."""
    command = cli.commands[args[0]]
    known = {"-h", "--help"}
    for param in command.params:
        known.update(getattr(param, "opts", ()), getattr(param, "secondary_opts", ()))
    for arg in args[1:]:
        if arg.startswith("-") and arg != "-":
            option = arg.split("=", 1)[0]
            assert option in known, f"{page}: `sftprep {' '.join(args)}`: no option {option}"


# -- console blocks: run them ----------------------------------------------------------------


def transcript(text: str) -> list[tuple[str, list[str]]]:
    """A console block as (command, expected output lines) pairs."""
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"output before the first command: {line!r}"
            steps[-1][1].append(line)
    return steps


def console_pages() -> list[Path]:
    return [page for page in MANUAL if any(lang == "console" for lang, _ in fenced_blocks(page))]


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` is ``expected`` with each ``...`` line standing for any number of lines."""
    expected = [line.rstrip() for line in expected]
    actual = [line.rstrip() for line in actual]
    chunks, chunk = [], []
    for line in expected:
        if line == "...":
            chunks.append(chunk)
            chunk = []
        else:
            chunk.append(line)
    chunks.append(chunk)
    if len(chunks) == 1:
        return actual == expected
    first, *middle, last = chunks
    if actual[: len(first)] != first or (last and actual[-len(last) :] != last):
        return False
    at, end = len(first), len(actual) - len(last)
    for part in middle:
        found = next((i for i in range(at, end - len(part) + 1) if actual[i : i + len(part)] == part), None)
        if found is None:
            return False
        at = found + len(part)
    return at <= end


def test_matches_with_ellipses():
    assert matches(["a", "b"], ["a", "b  "])
    assert not matches(["a", "b"], ["a", "b", "c"])
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["...", "c", "..."], ["a", "b", "c", "d"])
    assert not matches(["a", "...", "c", "...", "b"], ["a", "b", "c"])
    assert not matches(["a", "...", "a"], ["a"])


def run_in_shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a shown command as a user's shell would, with ``sftprep`` this checkout's code."""
    env = {k: v for k, v in os.environ.items() if k not in {"COLUMNS", "LINES", "FORCE_COLOR"}}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")  # unbuffered: stdout and stderr in order
    script = f'set -o pipefail\nsftprep() {{ "{sys.executable}" -m sftprep "$@"; }}\n{command}\n'
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.slow
@pytest.mark.parametrize("page", console_pages(), ids=name)
def test_console_blocks_print_what_they_show(page, tmp_path, shared_dir):
    """Each page's transcripts, run in order in a scratch checkout (../shared beside it)."""
    checkout = tmp_path / "sftprep"
    checkout.mkdir()
    for part in ("sample_data", "configs"):
        (checkout / part).symlink_to(ROOT / part)
    (tmp_path / "shared").symlink_to(shared_dir)
    for language, text in fenced_blocks(page):
        if language != "console":
            continue
        for command, expected in transcript(text):
            result = run_in_shell(command, checkout)
            # Shown to fail (an error line), unless the command handles the failure itself (`|| echo`).
            fails = any("error:" in line for line in expected) and "||" not in command
            assert (result.returncode != 0) == fails, f"{name(page)}: $ {command}\n{result.stdout}"
            assert matches(expected, result.stdout.splitlines()), (
                f"{name(page)}: `$ {command}` printed:\n{result.stdout}\nthe page shows:\n"
                + "\n".join(expected)
            )


# -- the generated reference, the README's opening, shipped templates --------------------------


def test_the_cli_reference_is_up_to_date():
    """docs/cli.md is what scripts/gen_cli_docs.py writes from the current ``--help``."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_cli_reference_covers_every_command():
    page = read(CLI_PAGE)
    for command in cli.commands:
        assert f"$ sftprep {command} --help\nUsage: sftprep {command} " in page, command


def test_readme_opens_with_the_two_commands():
    first_block = fenced_blocks(README)[0][1]
    assert first_block.splitlines()[0].startswith("make demo")
    assert first_block.splitlines()[1].startswith("make test")


def test_readme_is_an_overview():
    """The README is read in five minutes; the manual is docs/, and the README links every page."""
    text = read(README)
    assert len(text.splitlines()) <= 200
    for page in PAGES[1:]:
        if page.name != "index.md":  # the site's home page: the README plays its part on GitHub
            assert f"(docs/{page.name})" in text, page.name


def test_the_site_shows_every_page():
    """mkdocs.yml's nav lists every page of docs/, so `mkdocs serve` shows the whole manual."""
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]
    listed = {file for entry in nav for file in entry.values()}
    assert listed == {page.name for page in PAGES[1:]}


def make_dry_run(target: str, tmp_path: Path) -> list[str]:
    """The commands ``make TARGET`` would run from nothing (``make -n``, venvs and output in tmp_path)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    variables = [f"VENV={tmp_path}/.venv", f"DEMO_VENV={tmp_path}/.venv-demo", f"OUT={tmp_path}/out"]
    # Under `make test` (as CI runs it) this make is nested: without the parent's MAKELEVEL it does
    # not print "make[1]: Entering directory" lines around the commands.
    env = {k: v for k, v in os.environ.items() if k not in {"MAKELEVEL", "MAKEFLAGS", "MFLAGS"}}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", target, *variables],
        cwd=ROOT, capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    return result.stdout.splitlines()


def test_make_demo_installs_the_runtime_package_only(tmp_path):
    """Issue 16: the demo installs `pip install -e .` into a venv of its own, not the dev extras."""
    commands = make_dry_run("demo", tmp_path)
    installs = [c for c in commands if " install " in c and "--upgrade pip" not in c]
    assert installs == [f"{tmp_path}/.venv-demo/bin/pip install --quiet -e ."]
    runs = [c for c in commands if "bin/sftprep " in c and not c.startswith("echo")]
    assert runs and all(c.startswith(f"{tmp_path}/.venv-demo/bin/sftprep ") for c in runs)
    assert "sftprep build sample_data/qa.jsonl" in "\n".join(runs)


def test_make_test_installs_the_dev_extras(tmp_path):
    commands = make_dry_run("test", tmp_path)
    assert f"{tmp_path}/.venv/bin/pip install --quiet -e '.[dev]'" in commands
    assert commands[-1].startswith(f"{tmp_path}/.venv/bin/pytest")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


@pytest.mark.parametrize("name", sorted(shipped_templates()))
def test_every_shipped_template_loads(name):
    template = load_template(name)
    assert template.name == name and template.required


@pytest.mark.parametrize("name", sorted(shipped_chat_templates()))
def test_every_shipped_chat_template_loads(name):
    variables = {"bos_token": "<s>", "eos_token": "</s>"}
    rendered = load_chat_template(name).render(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, variables=variables
    )
    assert "hi" in rendered
