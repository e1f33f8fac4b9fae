"""Bad input never crashes a build and never loses a row silently.

One test per error class, through the CLI as a user meets it: the exit code
and the exact one-line message (file:line, field, expected vs found).
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from datasets import load_from_disk

from sftprep.cli import cli
from sftprep.errors import EXIT_DATA, EXIT_IO, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, input: bytes | None = None):
    return CliRunner().invoke(cli, ["build", *args, "-q"], input=input)


def write(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


def error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("sftprep: error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0].removeprefix("sftprep: error: ")


GOOD = '{"question": "What?", "answer": "That."}\n'

RECORD_ERRORS = [
    # (file name, content, template, expected message after "sftprep: error: ")
    ("d.jsonl", GOOD + '{"question": "x" "answer": "y"}\n', "qa",
     "{f}:2: malformed JSON: Expecting ',' delimiter at column 18"),
    ("d.jsonl", GOOD + '["question", "answer"]\n', "qa",
     "{f}:2: expected a JSON object, found a list"),
    ("d.csv", "question,answer\nWhat?,That.\nWhy?,Because,extra\n", "qa",
     "{f}:3: expected 2 fields (question, answer), found 3"),
    ("d.jsonl", GOOD + '{"question": "Who?", "reply": "Me."}\n', "qa",
     "{f}:2: field 'answer': missing 'answer' (found: question, reply)"),
    ("d.jsonl", GOOD + '{"question": "Who?", "answer": null}\n', "qa",
     "{f}:2: field 'answer': 'answer' is null"),
    ("d.jsonl", GOOD + '{"question": "Who?", "answer": ["a", "b"]}\n', "qa",
     "{f}:2: field 'answer': 'answer' is a list, expected a string (select inside it, e.g. --field answer=answer.0)"),
    ("d.jsonl", GOOD + '{"question": "Who?", "answer": {"text": "a"}}\n', "qa",
     "{f}:2: field 'answer': 'answer' is an object with keys text, expected a string "
     "(select inside it, e.g. --field answer=answer.KEY)"),
    ("d.jsonl", GOOD + '{"question": "Who?", "answer": "  "}\n', "qa",
     "{f}:2: field 'answer': the target is empty"),
    ("d.jsonl", GOOD.encode() + b'{"question": "caf\xe9", "answer": "x"}\n', "qa",
     "{f}:2: invalid UTF-8 at byte offset 58 of the file "
     "(re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8)"),
    ("d.jsonl", GOOD.encode() + b'{"question": "a\x00b", "answer": "x"}\n', "qa",
     "{f}:2: NUL byte at byte offset 56"),
    ("d.jsonl", GOOD + '{"question": "a\\u0000b", "answer": "x"}\n', "qa",
     "{f}:2: field 'question': contains a NUL character (\\u0000)"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "template", "message"), RECORD_ERRORS)
def test_record_error_fails_with_one_line(tmp_path, name, content, template, message):
    path = write(tmp_path, name, content)
    result = run(path, "-t", template, "-o", str(tmp_path / "out"))
    assert result.exit_code == EXIT_DATA
    assert error_line(result) == message.format(f=path)
    assert not (tmp_path / "out").exists()


def test_record_too_large(tmp_path):
    path = write(tmp_path, "d.jsonl", GOOD + json.dumps({"question": "x" * 5000, "answer": "y"}) + "\n")
    result = run(path, "-t", "qa", "-o", str(tmp_path / "out"), "--max-record-bytes", "1KiB")
    assert result.exit_code == EXIT_DATA
    assert error_line(result).startswith(
        f"{path}:2: record is 4.9 KiB, over the 1 KiB limit (raise it with --max-record-bytes)"
    )


def test_truncation_that_leaves_nothing_to_train(tmp_path):
    path = write(tmp_path, "d.jsonl", json.dumps({"question": "q " * 50, "answer": "a"}) + "\n")
    result = run(path, "-t", "qa", "-o", str(tmp_path / "o"), "--max-length", "8", "--truncation", "target")
    assert result.exit_code == EXIT_DATA
    assert error_line(result).startswith(f"{path}:1: the prompt alone is ")
    assert "nothing to train" in error_line(result)


def test_numbers_and_booleans_become_json_text(tmp_path):
    path = write(
        tmp_path, "d.jsonl", '{"question": 12, "answer": 3.5}\n{"question": true, "answer": false}\n'
    )
    result = run(path, "-t", "qa", "-o", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["counts"]["rows_written"] == 2


def test_skip_writes_rejects_verbatim_and_counts_per_reason(tmp_path):
    lines = [GOOD, '{"question": "x" "answer": "y"}\n', '{"question": "Who?"}\n', GOOD, "[1]\n"]
    path = write(tmp_path, "d.jsonl", "".join(lines))
    result = run(path, "-t", "qa", "-o", str(tmp_path / "o"), "--on-error", "skip", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    counts = summary["counts"]
    assert counts["records_read"] == 5 and counts["rows_written"] == 2
    assert counts["skipped"] == {"malformed_json": 1, "missing_field": 1, "not_an_object": 1}
    rejects = [json.loads(line) for line in (tmp_path / "o" / "rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [2, 3, 5]
    assert [r["record"] + "\n" for r in rejects] == [lines[1], lines[2], lines[4]]
    assert rejects[1]["field"] == "answer" and rejects[1]["reason"] == "missing_field"


def test_max_errors_turns_skips_into_failure(tmp_path):
    path = write(tmp_path, "d.jsonl", GOOD + "{bad\n" * 3)
    out = str(tmp_path / "o")
    assert run(path, "-t", "qa", "-o", out, "--on-error", "skip", "--max-errors", "3").exit_code == 0
    result = run(path, "-t", "qa", "-o", out + "2", "--on-error", "skip", "--max-errors", "2")
    assert result.exit_code == EXIT_DATA
    assert error_line(result).startswith("3 records rejected, more than --max-errors 2; last: ")
    result = run(path, "-t", "qa", "-o", out + "3", "--on-error", "skip", "--max-errors", "50%")
    assert result.exit_code == EXIT_DATA
    assert error_line(result) == "3 of 4 records rejected (75.00%), more than --max-errors 50%"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["{tmp}/missing.jsonl"], EXIT_IO, "no such file: {tmp}/missing.jsonl"),
        (["{good}", "-t", "nope"], EXIT_USAGE,
         "unknown template 'nope': not a shipped template (alpaca, instruction, prompt-completion, qa, "
         "summarization, translation) nor a file"),
        (["{good}", "-t", "qa", "--field", "answr=a"], EXIT_USAGE,
         "template 'qa' has no field 'answr' (its fields: question, answer)"),
        (["{good}", "--field", "answer"], EXIT_USAGE, "--field expects NAME=VALUE, got 'answer'"),
        (["{good}", "--on-error", "skip", "--max-errors", "lots"], EXIT_USAGE,
         "--max-errors must be a count (10) or a rate from 0% to 100% (0.5%), got 'lots'"),
        (["{good}", "--on-error", "skip", "--max-errors", "-1"], EXIT_USAGE,
         "--max-errors must be a count (10) or a rate from 0% to 100% (0.5%), got '-1'"),
        (["{good}", "--on-error", "skip", "--max-errors", "150%"], EXIT_USAGE,
         "--max-errors must be a count (10) or a rate from 0% to 100% (0.5%), got '150%'"),
        (["{good}", "--on-error", "skip", "--max-errors", "nan%"], EXIT_USAGE,
         "--max-errors must be a count (10) or a rate from 0% to 100% (0.5%), got 'nan%'"),
        (["{good}", "--max-errors", "5"], EXIT_USAGE,
         "--max-errors needs --on-error skip (with --on-error fail the first bad record stops the build)"),
        (["{good}", "-t", "qa", "--max-length", "20", "--pad-to-multiple-of", "16"], EXIT_USAGE,
         "--pad-to-multiple-of 16 would pad rows of up to --max-length 20 tokens to 32: "
         "give a --max-length that is a multiple of 16 (e.g. 16)"),
    ],
)  # fmt: skip
def test_whole_build_problems(tmp_path, args, code, message):
    good = write(tmp_path, "good.jsonl", GOOD)
    args = [a.format(tmp=tmp_path, good=good) for a in args]
    result = run(*args, "-o", str(tmp_path / "o"))
    assert result.exit_code == code
    assert error_line(result) == message.format(tmp=tmp_path)


def test_broken_tokenizer(tmp_path, tokenizer_path):
    good = write(tmp_path, "good.jsonl", GOOD)
    broken = tokenizer_path("_broken/llama-2-nbsp-corrupted")
    result = run(good, "--tokenizer", broken, "-o", str(tmp_path / "o"))
    assert result.exit_code == EXIT_USAGE
    assert error_line(result).startswith(
        f"{broken}/tokenizer.json: tokenizer does not load: Merges text file invalid"
    )


def test_unknown_tokenizer_says_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    good = write(tmp_path, "good.jsonl", GOOD)
    result = run(good, "--tokenizer", "nobody/no-such-model", "-o", str(tmp_path / "o"))
    assert result.exit_code == EXIT_USAGE
    line = error_line(result)
    assert line.startswith("cannot find tokenizer 'nobody/no-such-model': tried a file or folder named")
    assert "the local Hugging Face cache" in line


def test_existing_output_needs_overwrite(tmp_path):
    good = write(tmp_path, "good.jsonl", GOOD)
    out = str(tmp_path / "o")
    assert run(good, "-o", out).exit_code == 0
    result = run(good, "-o", out)
    assert result.exit_code == EXIT_USAGE
    assert error_line(result) == f"output {out} exists; pass --overwrite to replace it"
    assert run(good, "-o", out, "--overwrite").exit_code == 0


def test_full_disk_is_an_io_error(tmp_path):
    """A write that fails (here: a file size limit, as a full disk would) exits 4, no traceback, no output."""
    rows = "".join(json.dumps({"question": f"q{i} " * 20, "answer": "a " * 20}) + "\n" for i in range(3000))
    data = write(tmp_path, "d.jsonl", rows)
    out = tmp_path / "o"

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    proc = subprocess.run(
        [sys.executable, "-m", "sftprep", "build", data, "-o", str(out), "-q"],
        preexec_fn=limit_file_size, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == EXIT_IO, proc.stderr
    assert proc.stderr.startswith("sftprep: error: cannot write to ")
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".sftprep-tmp-*"))


def test_stdin_streams_jsonl(tmp_path):
    result = run("-", "-t", "qa", "-o", str(tmp_path / "o"), input=(GOOD * 3).encode())
    assert result.exit_code == 0, result.output
    assert len(load_from_disk(str(tmp_path / "o"))) == 3


# -- outcomes: what a build that writes nothing returns (issue 16, items 7 and 12) --------


@pytest.mark.parametrize("template", [[], ["-t", "qa"], ["--chat-template", "chatml"]])
@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_input_is_no_records_with_or_without_a_template(tmp_path, template, content):
    path = write(tmp_path, "empty.jsonl", content)
    result = run(path, *template, "-o", str(tmp_path / "o"))
    assert result.exit_code == EXIT_DATA, result.output
    assert error_line(result) == "the input holds no records"
    assert not (tmp_path / "o").exists()


def test_every_record_rejected_is_no_records_unless_max_errors_allows_it(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"question": "a"}\n{bad\n')
    result = run(path, "-t", "qa", "--on-error", "skip", "-o", str(tmp_path / "o"))
    assert result.exit_code == EXIT_DATA, result.output
    # No build is written, so no rejects.jsonl: the line names the first rejected record itself.
    assert error_line(result) == (
        f"all 2 records rejected (missing_field 1, malformed_json 1); the first: {path}:1: field 'answer': "
        "missing 'answer' (found: question); nothing written (--max-errors 100% accepts an empty build and "
        "keeps rejects.jsonl)"
    )
    assert not (tmp_path / "o").exists()
    result = run(
        path, "-t", "qa", "--on-error", "skip", "--max-errors", "100%", "-o", str(tmp_path / "o"), "--json"
    )
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["counts"]
    assert counts["records_read"] == 2 and counts["rows_written"] == 0 and counts["skipped_total"] == 2


def test_pad_to_multiple_of_a_divisor_of_max_length_keeps_rows_within_it(tmp_path):
    path = write(tmp_path, "d.jsonl", json.dumps({"question": "q " * 40, "answer": "a b c"}) + "\n" + GOOD)
    result = run(
        path, "-t", "qa", "--max-length", "32", "--pad-to-multiple-of", "16", "-o", str(tmp_path / "o")
    )
    assert result.exit_code == 0, result.output
    lengths = sorted(len(ids) for ids in load_from_disk(str(tmp_path / "o"))["input_ids"])
    assert lengths == [16, 32]


# -- messages name the option and agree in number (issue 16, item 12) --------------------

CHAT = {"messages": [{"role": "user", "content": "hello there how are you doing today my friend"},
                     {"role": "bot", "content": "I am fine thank you very much for asking me that"}]}  # fmt: skip


def test_unknown_target_role_is_named(tmp_path):
    path = write(tmp_path, "chat.jsonl", json.dumps(CHAT) + "\n")
    result = run(path, "--chat-template", "chatml", "--role", "bot=robot", "-o", str(tmp_path / "o"))
    assert result.exit_code == EXIT_USAGE, result.output
    assert error_line(result) == (
        "--role bot=robot: 'robot' is not a chat template role (one of assistant, system, tool, user)"
    )


def test_turn_truncated_names_the_option(tmp_path):
    path = write(tmp_path, "chat.jsonl", json.dumps(CHAT) + "\n")
    args = ["--chat-template", "chatml", "--role", "bot=assistant", "--max-length", "12"]
    result = run(path, *args, "-o", str(tmp_path / "o"))
    assert result.exit_code == EXIT_DATA, result.output
    assert error_line(result) == (
        f"{path}:1: the row is 39 tokens; with --max-length 12 no whole trained turn fits, "
        "and a turn is never trained in part (raise --max-length)"
    )


def test_summary_counts_agree_in_number(tmp_path):
    path = write(tmp_path, "d.jsonl", GOOD)
    result = CliRunner().invoke(cli, ["build", path, "-t", "qa", "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert f"sftprep: wrote 1 row to {tmp_path / 'o'} (1 shard): " in lines[-2]
    assert lines[-1].startswith("sftprep: read 1 record; skipped: none;")
    result = run(write(tmp_path, "e.jsonl", GOOD + "{bad\n"), "-t", "qa", "--on-error", "skip",
                 "--max-errors", "0", "-o", str(tmp_path / "o2"))  # fmt: skip
    assert error_line(result).startswith("1 record rejected, more than --max-errors 0; last: ")
