"""``sftprep inspect``'s golden outputs (tests/golden), and docs/inspect.md shows them verbatim.

Golden files: ``SFTPREP_UPDATE_GOLDEN=1 pytest tests/test_inspect_golden.py`` rewrites
them; review the diff like any other change to the view.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from inspect_support import (
    QA,
    ROOT,
    run,
)

pytestmark = pytest.mark.usefixtures("repo_root")

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE_GOLDEN = os.environ.get("SFTPREP_UPDATE_GOLDEN") == "1"


PACKED_40 = {"max_length": 40, "pack": True, "pad_to": "max-length"}
CHAT = ("chat", "dummy_conversation.json")
GOLDEN_CASES = {
    "qa-gpt2.txt": ("gpt2", QA, {}, ["-n", "3"]),
    "qa-gpt2-tokens.txt": ("gpt2", QA, {}, ["--tokens", "-i", "0"]),
    "qa-mistral-tokens.txt": ("mistral-7b-v0.1", QA, {}, ["--tokens", "-i", "1"]),
    "qa-gpt2-exploded.txt": ("gpt2", QA, {"mode": "exploded"}, ["-n", "2"]),
    "qa-gpt2-stats.txt": ("gpt2", QA, {}, ["--stats"]),
    "summarization-phi3-truncated.txt": (
        "phi-3-mini",
        "sample_data/summarization.jsonl",
        {"max_length": 96},
        ["-w", "truncated", "-n", "2"],
    ),
    "translation-phi3.txt": ("phi-3-mini", "sample_data/translation.jsonl", {}, ["-i", "0-2"]),
    "qa-gpt2-packed.txt": ("gpt2", QA, PACKED_40, ["-i", "1-2"]),
    "qa-gpt2-packed-tokens.txt": ("gpt2", QA, PACKED_40, ["--tokens", "-i", "1"]),
    "qa-gpt2-packed-unpack.txt": ("gpt2", QA, PACKED_40, ["--unpack", "-i", "1"]),
    "qa-gpt2-packed-stats.txt": ("gpt2", QA, PACKED_40, ["--stats"]),
    "chat-phi3.txt": ("phi-3-mini", CHAT, {}, ["-i", "0-1"]),
    "chat-smollm-chatml.txt": ("smollm-135m", CHAT, {"chat_template": "chatml"}, ["-i", "0"]),
    "chat-smollm-chatml-tokens.txt": (
        "smollm-135m",
        CHAT,
        {"chat_template": "chatml"},
        ["--tokens", "-i", "1"],
    ),
    "translation-phi3-tokens.txt": (
        "phi-3-mini",
        "sample_data/translation.jsonl",
        {},
        ["--tokens", "-i", "2"],
    ),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_golden_views(built, tok, data_path, name, monkeypatch):
    tokenizer, data, options, args = GOLDEN_CASES[name]
    if isinstance(data, tuple):  # a file in ../shared/data, named as from the checkout
        data = os.path.relpath(data_path(*data), ROOT)
    out = built(tok(tokenizer), data, **options)
    if "--stats" in args:  # its title is the output's path: name it the same on every machine
        monkeypatch.chdir(out.parent)
        out = Path(out.name)
    stdout = run(out, *args).stdout
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.write_text(stdout, encoding="utf-8")
    assert stdout == path.read_text(encoding="utf-8"), (
        f"the view changed: SFTPREP_UPDATE_GOLDEN=1 rewrites {path}"
    )


def test_docs_show_the_current_output():
    """docs/inspect.md's examples are the golden outputs, verbatim."""
    section = (ROOT / "docs" / "inspect.md").read_text(encoding="utf-8")
    for name in ("qa-gpt2.txt", "qa-gpt2-tokens.txt", "qa-gpt2-packed.txt", "chat-phi3.txt"):
        assert (GOLDEN / name).read_text(encoding="utf-8") in section, name
