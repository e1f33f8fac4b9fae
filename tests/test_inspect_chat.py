"""``sftprep inspect`` on chat rows: each message behind its role, read again from the source."""

from __future__ import annotations

import itertools
import json
import re
import shutil
from pathlib import Path

import pytest
from inspect_support import (
    ROOT,
    load_tok,
    rows_of,
    run,
    shown,
    split_examples,
    split_rows,
)
from rich.cells import cell_len

from sftprep.build import BuildConfig, run_build

pytestmark = pytest.mark.usefixtures("repo_root")


# -- chat rows ---------------------------------------------------------------------------------

CHAT_BUILDS = {  # (tokenizer, build options, how each rendered message starts)
    "phi-3-mini": ("phi-3-mini", {}, "<|{role}|>"),
    "smollm-135m-chatml": ("smollm-135m", {"chat_template": "chatml"}, "<|im_start|>{role}\n"),
}
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


def conversation_roles(path: str) -> list[list[str]]:
    """Per record of a ShareGPT file, its messages' roles, read straight from the JSON."""
    records = json.loads(Path(path).read_text(encoding="utf-8"))
    return [[SHAREGPT_ROLES[m["from"]] for m in r["conversations"]] for r in records]


def split_turns(body: list[str]) -> list[tuple[str, str]]:
    """A chat row's text view as (role, text) per message: ``role │ text`` and ``     │ more``."""
    turns: list[tuple[str, str]] = []
    for line in body:
        label, bar, text = line.partition("│ ")
        assert bar, line
        if label.strip():
            turns.append((label.strip(), text))
        else:
            turns[-1] = (turns[-1][0], turns[-1][1] + text)
    return turns


@pytest.fixture(scope="session")
def chat_build(built, tok, data_path):
    """chat_build(name, **more) -> (output, data file) for a CHAT_BUILDS entry on dummy_conversation.json."""

    def build(name: str, **more):
        tokenizer, options, _ = CHAT_BUILDS[name]
        data = data_path("chat", "dummy_conversation.json")
        return built(tok(tokenizer), data, **options, **more), data

    return build


@pytest.mark.parametrize("name", sorted(CHAT_BUILDS))
def test_chat_rows_show_each_message_behind_its_role(chat_build, name):
    out, data = chat_build(name)
    roles = conversation_roles(data)
    ds = rows_of(out)
    result = run(out, "-n", 60)
    assert result.stderr == ""
    rows = split_rows(result.stdout)
    assert len(rows) == 60
    start = CHAT_BUILDS[name][2]
    for (header, body), row in zip(rows, ds, strict=False):
        turns = split_turns(body)
        assert [role for role, _ in turns] == roles[row["source_line"] - 1], header
        for role, text in turns:  # each message starts with its own header, in the template's words
            assert text.startswith(shown(start.format(role=role))), (role, text)
        for role, text in turns:  # trained text only in assistant messages, never across two
            assert text.count("[[") == text.count("]]") == (role == "assistant")


@pytest.mark.parametrize("name", sorted(CHAT_BUILDS))
def test_chat_turns_in_json_and_in_the_token_table(chat_build, name, tok):
    out, data = chat_build(name)
    roles = conversation_roles(data)
    tokenizer = load_tok(tok(CHAT_BUILDS[name][0]))
    start = CHAT_BUILDS[name][2]
    for line in run(out, "-n", 20, "--format", "json").stdout.splitlines():
        obj = json.loads(line)
        turns = obj["turns"]
        assert [t["role"] for t in turns] == roles[obj["source_line"] - 1]
        assert [t["message"] for t in turns] == list(range(len(turns)))
        assert turns[0]["start"] == 0 and turns[-1]["stop"] == len(obj["input_ids"])
        assert all(a["stop"] == b["start"] for a, b in itertools.pairwise(turns))
        for t in turns:  # decoded by the tokenizer itself: each range is one message, header first
            text = tokenizer.decode(obj["input_ids"][t["start"] : t["stop"]], skip_special_tokens=False)
            assert text.startswith(start.format(role=t["role"]))
    table = run(out, "--tokens", "-i", 0).stdout.splitlines()
    rules = [line for line in table if line.startswith("┄┄ ")]
    expected = roles[rows_of(out)[0]["source_line"] - 1]
    assert [r.split(" · ")[0].removeprefix("┄┄ ") for r in rules] == expected
    assert [int(r.split(" · message ")[1].split()[0]) for r in rules] == list(range(len(expected)))


@pytest.mark.parametrize("name", sorted(CHAT_BUILDS))
def test_chat_preview_gets_the_roles_directly(chat_build, tok, name):
    out, data = chat_build(name)
    tokenizer, options, _ = CHAT_BUILDS[name]
    flags = ["--chat-template", options["chat_template"]] if options else []
    preview = run("--preview", data, "--tokenizer", tok(tokenizer), *flags, "-n", 5, "--records", 10)
    assert preview.stdout == run(out, "-n", 5).stdout and "│ " in preview.stdout
    assert preview.stderr == ""


def test_truncated_chat_rows_keep_their_roles(chat_build):
    """--truncation prompt cuts the start (whole trained turns, context in part): the rest keeps its roles."""
    out, data = chat_build("phi-3-mini", max_length=30, on_error="skip")
    roles = conversation_roles(data)
    result = run(out, "-w", "truncated", "-n", 20)
    rows = split_rows(result.stdout)
    assert len(rows) == 20 and result.stderr == ""
    dropped = 0
    for header, body in rows:
        line = int(re.search(r":(\d+) · ", header[0]).group(1))
        shown_roles = [role for role, _ in split_turns(body)]
        assert shown_roles and shown_roles == roles[line - 1][-len(shown_roles) :]
        dropped += len(shown_roles) < len(roles[line - 1])
    assert dropped > 0


def test_packed_chat_rows_show_roles_per_example(chat_build):
    out, data = chat_build("smollm-135m-chatml", max_length=256, pack=True)
    roles = conversation_roles(data)
    ds = rows_of(out)
    ((_, body),) = split_rows(run(out, "-i", 0).stdout)
    examples = split_examples(body)
    assert len(examples) == len(ds[0]["seq_lengths"])
    for (rule, text), line in zip(examples, ds[0]["source_line"], strict=True):
        assert [role for role, _ in split_turns(text)] == roles[line - 1], rule
    for width, args in ((80, []), (80, ["--tokens"]), (80, ["--unpack"]), (40, []), (40, ["--unpack"])):
        lines = run(out, "-n", 2, "--width", width, *args).stdout.splitlines()  # rules and gutters fold
        assert max(cell_len(line) for line in lines) <= width, (width, args)
    unpacked, _ = chat_build("smollm-135m-chatml", max_length=256)
    plain = {
        o["source_line"]: o
        for o in map(json.loads, run(unpacked, "-a", "--format", "json").stdout.splitlines())
    }
    for line in run(out, "-i", "0-2", "--unpack", "--format", "json").stdout.splitlines():
        obj = json.loads(line)
        assert obj == dict(plain[obj["source_line"]], row=obj["row"], example=obj["example"])


def test_chat_rows_without_their_records_are_shown_plain(tmp_path, tok, data_path):
    """The data file changed or is gone: plain rows, and why, once."""
    data = tmp_path / "conversations.json"
    shutil.copy(data_path("chat", "dummy_conversation.json"), data)
    out = tmp_path / "out"
    run_build(BuildConfig(inputs=(str(data),), output=str(out), tokenizer=tok("phi-3-mini")))
    with_roles = split_rows(run(out, "-n", 3).stdout)
    records = json.loads(data.read_text())
    records[1]["conversations"][1]["value"] = "Something else."
    data.write_text(json.dumps(records))
    changed = run(out, "-n", 3)
    assert changed.stderr.count("sftprep: ") == 1
    assert f"{data}: record 2: the row's ids differ from its record rendered again" in changed.stderr
    rows = split_rows(changed.stdout)
    assert rows[0] == with_roles[0] and rows[2] == with_roles[2]
    plain = rows[1][1]
    assert not any("│ " in line for line in plain)
    assert "".join(plain) == "".join(text for _, text in split_turns(with_roles[1][1]))
    data.unlink()
    gone = run(out, "-n", 3)
    assert (
        gone.stderr
        == f"sftprep: cannot read {data} again (no such file: {data}): its chat rows are shown without roles\n"
    )
    assert not any("│ " in line for line in gone.stdout.splitlines())


def test_chat_rows_of_a_changed_template_are_shown_plain(tmp_path, tok, data_path):
    template = tmp_path / "mine.jinja"
    template.write_text((ROOT / "configs" / "chat" / "chatml.jinja").read_text())
    out = tmp_path / "out"
    config = BuildConfig(
        inputs=(data_path("chat", "dummy_conversation.json"),),
        output=str(out),
        tokenizer=tok("smollm-135m"),
        chat_template=str(template),
    )
    run_build(config)
    assert "│ " in run(out, "-n", 1).stdout
    template.write_text(template.read_text() + "{# edited after the build #}")
    result = run(out, "-n", 2)
    assert "│ " not in result.stdout and len(split_rows(result.stdout)) == 2
    assert result.stderr == (
        f"sftprep: cannot render the chat records again (the chat template '{template}' is not the one "
        "the build used (sha256)): chat rows are shown without roles\n"
    )


def test_json_rows_name_their_turn(built, tok, data_path):
    """--format json carries the ``turn`` column: the trained turn of a --turns each row, null otherwise."""
    data = data_path("chat", "dummy_conversation.json")
    each = built(tok("smollm-135m"), data, chat_template="chatml", turns="each")
    stored = rows_of(each)
    shown_rows = [json.loads(line) for line in run(each, "-a", "--format", "json").stdout.splitlines()]
    assert [o["turn"] for o in shown_rows] == stored["turn"]
    assert all(isinstance(t, int) for t in stored["turn"])
    whole = built(tok("smollm-135m"), data, chat_template="chatml", turns="conversation")
    assert {
        json.loads(line)["turn"] for line in run(whole, "-a", "--format", "json").stdout.splitlines()
    } == {None}
