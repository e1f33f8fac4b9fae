"""Chat data for current model families: Qwen3 (reasoning, tool calls, a template that is not
prefix-stable) and Llama-3.1, checked against transformers' ``apply_chat_template``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken

from sftprep.chat import ChatEncoder, load_chat_template, special_tokens
from sftprep.chat.formats import Conversation, to_messages
from sftprep.encode import EncodeOptions
from sftprep.errors import RecordError
from sftprep.readers import InputFile
from sftprep.tokenizer import TokenizerInfo, load_tokenizer

transformers = pytest.importorskip("transformers")
logging.getLogger("transformers").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def tokenizer(tokenizer_path):
    """tokenizer("qwen3") -> a TokenizerInfo, loaded once per module (do not add tokens to it)."""
    cache: dict[str, TokenizerInfo] = {}

    def get(name):
        if name not in cache:
            cache[name] = load_tokenizer(tokenizer_path(name))
        return cache[name]

    return get


@pytest.fixture(scope="module")
def hf(tokenizer, tokenizer_path):
    """hf("qwen3") -> the same tokenizer in transformers, with its chat template and special tokens."""
    cache = {}

    def get(name):
        if name not in cache:
            path = Path(tokenizer_path(name)) / "tokenizer.json"
            tok = transformers.PreTrainedTokenizerFast(
                tokenizer_file=str(path), **special_tokens(tokenizer(name))
            )
            tok.chat_template = tokenizer(name).config.get("chat_template")
            cache[name] = tok
        return cache[name]

    return get


def chat(*turns: tuple[str, str], **extra):
    return to_messages({"messages": [{"role": r, "content": c} for r, c in turns], **extra}, "t:1")


def reasons(batch) -> dict[str, int]:
    return dict(Counter(reason for _, reason, _ in batch.rejected))


# --- issue 16 item 10: added tokens that are not special are text ------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("qwen3", "What do <think> and </think> mean? And <tool_call> or <tool_response>?"),
        ("phi-3-mini", "what does </s> mean?"),  # special: false in phi-3's files
    ],
)
def test_added_tokens_that_are_not_special_are_text(name, text, tokenizer):
    info = tokenizer(name)
    conv = chat(("user", text), ("assistant", "They are markers."))
    batch = ChatEncoder(info, load_chat_template(None, info)).encode([conv])
    assert reasons(batch) == {}
    assert len(batch) == 1


def test_a_whitespace_run_added_as_text_is_text(tokenizer_path):
    info = load_tokenizer(tokenizer_path("smollm-135m"))
    info.tokenizer.add_tokens([AddedToken("\n\n", special=False, normalized=False)])
    conv = chat(("user", "Two lines\n\nof text"), ("assistant", "Yes.\n\nTwo."))
    batch = ChatEncoder(info, load_chat_template("chatml")).encode([conv])
    assert reasons(batch) == {}
    special = chat(("user", "what is <|im_end|>?"), ("assistant", "A marker."))
    assert reasons(ChatEncoder(info, load_chat_template("chatml")).encode([special])) == {
        "control_token_in_text": 1
    }


# --- conformance: rows equal apply_chat_template, trained tokens are the assistant turns --------


def gsm8k(data_path, n: int) -> list[tuple[str, str, str]]:
    """(question, worked solution as reasoning, the number after #### as the answer)."""
    out = []
    with open(data_path("qa", "gsm8k_test.jsonl"), encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            solution, _, number = record["answer"].rpartition("####")
            out.append((record["question"], solution.strip(), number.strip()))
            if len(out) == n:
                break
    return out


def reasoning_conversations(data_path, turns: int, inline: bool, n: int = 12) -> list[Conversation]:
    """gsm8k problems as reasoning conversations of ``turns`` user/assistant pairs."""
    problems = gsm8k(data_path, n * turns)
    out = []
    for c in range(n):
        messages = []
        for question, reasoning, answer in problems[c * turns : (c + 1) * turns]:
            messages.append({"role": "user", "content": question})
            if inline:
                messages.append(
                    {"role": "assistant", "content": f"<think>\n{reasoning}\n</think>\n\n{answer}"}
                )
            else:
                messages.append({"role": "assistant", "content": answer, "reasoning_content": reasoning})
        out.append(to_messages({"messages": messages}, f"gsm8k:{c + 1}"))
    return out


def real_conversations(data_path, name: str, limit: int | None = None, field_map=None) -> list[Conversation]:
    out = []
    with InputFile(data_path("chat", name)) as f:
        for record in f.records():
            out.append(to_messages(record.data, record.where, field_map=field_map))
            if limit is not None and len(out) == limit:
                break
    return out


def reference_mask(hf_tok, messages, tools, turn, ids_text) -> tuple[list[int], list[bool]]:
    """transformers' ids for the row, and which tokens are an assistant turn's (header excluded,
    end-of-turn marker included, whitespace after it not)."""
    text, offsets = ids_text
    inside = np.zeros(len(text) + 1, dtype=bool)
    targets = [turn] if turn >= 0 else [k for k, m in enumerate(messages) if m["role"] == "assistant"]
    for k in targets:
        header = hf_tok.apply_chat_template(
            messages[:k], tools=tools, tokenize=False, add_generation_prompt=True
        )
        alone = hf_tok.apply_chat_template(messages[: k + 1], tools=tools, tokenize=False)
        body = alone[len(header) :].rstrip()
        assert alone.startswith(header) and text[len(header) :].startswith(body)
        inside[len(header) : len(header) + len(body)] = True
    return [
        bool(inside[a:b].all() or any(inside[i] and not text[i].isspace() for i in range(a, b)))
        for a, b in offsets
    ]


def check_rows(info, hf_tok, conversations, batch) -> Counter:
    """Every row equals transformers' rendering of its conversation (or prefix); returns the
    rows per (conversation, turn kind)."""
    seen = Counter()
    for j in range(len(batch)):
        i, turn = int(batch.index[j]), int(batch.turns[j])
        conv = conversations[i]
        messages = list(conv.messages) if turn < 0 else list(conv.messages[: turn + 1])
        ids = batch.ids[batch.offsets[j] : batch.offsets[j + 1]].tolist()
        out = hf_tok.apply_chat_template(messages, tools=conv.tools, return_dict=True)
        assert ids == out["input_ids"], (i, turn)
        text = hf_tok.apply_chat_template(messages, tools=conv.tools, tokenize=False)
        offsets = info.tokenizer.encode(text, add_special_tokens=False).offsets
        trained = batch.trained[batch.offsets[j] : batch.offsets[j + 1]]
        expected = reference_mask(hf_tok, messages, conv.tools, turn, (text, offsets))
        assert trained.tolist() == expected, (i, turn)
        if info.bos_id is not None and "bos_token" in (info.config.get("chat_template") or ""):
            assert ids[0] == info.bos_id and ids.count(info.bos_id) == 1  # one BOS, never two
        seen["each" if turn >= 0 else "conversation"] += 1
    return seen


SOURCES = [
    ("lima.json", None, 40),
    ("multichallenge_benchmark_questions.jsonl", {"messages": "CONVERSATION"}, 40),
    ("glaive_toolcall_en_demo.json", None, None),
]


@pytest.mark.parametrize("name", ["qwen3", "llama-3.1"])
@pytest.mark.parametrize(("file", "field_map", "limit"), SOURCES)
def test_real_chat_rows_equal_apply_chat_template(name, file, field_map, limit, tokenizer, hf, data_path):
    info, hf_tok = tokenizer(name), hf(name)
    conversations = real_conversations(data_path, file, limit, field_map)
    batch = ChatEncoder(info, load_chat_template(None, info)).encode(conversations)
    found = reasons(batch)
    assert "template_not_prefix_stable" not in found
    if name == "llama-3.1" and file.startswith("glaive"):  # its template has no tools
        assert set(found) == {"tools_not_rendered"}
    else:
        assert found == {}
    check_rows(info, hf_tok, conversations, batch)
    written = set(batch.index.tolist())
    assert written | {i for i, _, _ in batch.rejected} == set(range(len(conversations)))


@pytest.mark.parametrize("name", ["qwen3", "llama-3.1"])
@pytest.mark.parametrize("turns", [1, 3])
@pytest.mark.parametrize("inline", [False, True])
def test_reasoning_rows_equal_apply_chat_template(name, turns, inline, tokenizer, hf, data_path):
    info, hf_tok = tokenizer(name), hf(name)
    conversations = reasoning_conversations(data_path, turns, inline)
    batch = ChatEncoder(info, load_chat_template(None, info)).encode(conversations)
    assert reasons(batch) == {}
    seen = check_rows(info, hf_tok, conversations, batch)
    if name == "qwen3" and turns > 1:  # earlier turns lose their reasoning: one row per turn
        assert seen == {"each": turns * len(conversations)}
        assert batch.counts["turn_rows"] == turns * len(conversations)
    else:
        assert seen == {"conversation": len(conversations)}
    if name == "qwen3":  # every trained turn shows its reasoning in its think block
        assert batch.counts["reasoning_dropped"] == 0
        for j in range(len(batch)):
            row = info.tokenizer.decode(
                batch.ids[batch.offsets[j] : batch.offsets[j + 1]][
                    batch.trained[batch.offsets[j] : batch.offsets[j + 1]]
                ].tolist(),
                skip_special_tokens=False,
            )
            assert row.startswith("<think>\n") and "</think>\n\n" in row and row.endswith("<|im_end|>")
    elif not inline:  # llama-3.1's template never reads reasoning_content
        assert batch.counts["reasoning_dropped"] == turns * len(conversations)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("search(x)", "is not JSON"),
        ('{"arguments": {}}', 'is not a {"name": ..., "arguments": ...} object'),
    ],
)
def test_function_call_turns_that_are_not_calls_are_reported(value, text):
    record = {"conversations": [{"from": "human", "value": "Go"}, {"from": "function_call", "value": value}]}
    with pytest.raises(RecordError) as info:
        to_messages(record, "g.json:3")
    assert info.value.reason == "bad_tool_call"
    assert str(info.value).startswith("g.json:3: 'conversations.1.value' ") and text in str(info.value)


# --- what is trained: reasoning, conversation mode, the row budget ------------------------------


def trained_pieces(info, batch, j) -> list[str]:
    """The trained runs of row j, decoded."""
    a, b = batch.offsets[j], batch.offsets[j + 1]
    ids, flags = batch.ids[a:b], batch.trained[a:b]
    runs, start = [], None
    for t, on in enumerate([*flags.tolist(), False]):
        if on and start is None:
            start = t
        elif not on and start is not None:
            runs.append(info.tokenizer.decode(ids[start:t].tolist(), skip_special_tokens=False))
            start = None
    return runs


@pytest.mark.parametrize("inline", [False, True])
def test_train_reasoning_no_trains_the_answer_and_end_marker(inline, tokenizer, hf, data_path):
    info = tokenizer("qwen3")
    conversations = reasoning_conversations(data_path, 1, inline, n=4)
    template = load_chat_template(None, info)
    on = ChatEncoder(info, template).encode(conversations)
    off = ChatEncoder(info, template, train_reasoning=False).encode(conversations)
    assert np.array_equal(on.ids, off.ids)  # the think block stays in the row as context
    problems = gsm8k(data_path, 4)
    for j, (_, reasoning, answer) in enumerate(problems):
        assert trained_pieces(info, on, j) == [f"<think>\n{reasoning}\n</think>\n\n{answer}<|im_end|>"]
        assert trained_pieces(info, off, j) == [f"\n\n{answer}<|im_end|>"]


def test_empty_think_blocks_are_trained_and_counted(tokenizer):
    info = tokenizer("qwen3")
    conv = chat(("user", "Hi"), ("assistant", "Hello!"))
    batch = ChatEncoder(info, load_chat_template(None, info)).encode([conv])
    assert trained_pieces(info, batch, 0) == ["<think>\n\n</think>\n\nHello!<|im_end|>"]
    assert batch.counts["empty_reasoning"] == 1
    off = ChatEncoder(info, load_chat_template(None, info), train_reasoning=False).encode([conv])
    assert trained_pieces(info, off, 0) == ["\n\nHello!<|im_end|>"]


def test_conversation_mode_trains_turns_as_the_whole_render_shows_them(tokenizer, hf, data_path):
    info, hf_tok = tokenizer("qwen3"), hf("qwen3")
    conversations = reasoning_conversations(data_path, 3, inline=False, n=3)
    batch = ChatEncoder(info, load_chat_template(None, info), turns="conversation").encode(conversations)
    assert len(batch) == 3 and batch.turns.tolist() == [-1, -1, -1]
    assert batch.counts["reasoning_dropped"] == 2 * 3  # the earlier turns' reasoning is not in the row
    problems = gsm8k(data_path, 9)
    for j, conv in enumerate(conversations):
        ids = batch.ids[batch.offsets[j] : batch.offsets[j + 1]].tolist()
        assert ids == hf_tok.apply_chat_template(list(conv.messages), return_dict=True)["input_ids"]
        mine = problems[3 * j : 3 * j + 3]
        assert trained_pieces(info, batch, j) == [
            f"{mine[0][2]}<|im_end|>",
            f"{mine[1][2]}<|im_end|>",
            f"<think>\n{mine[2][1]}\n</think>\n\n{mine[2][2]}<|im_end|>",
        ]


def test_each_on_a_prefix_stable_template_gives_the_same_turns(tokenizer, hf, data_path):
    info, hf_tok = tokenizer("llama-3.1"), hf("llama-3.1")
    conversations = real_conversations(data_path, "lima.json", 40)[-10:]
    whole = ChatEncoder(info, load_chat_template(None, info)).encode(conversations)
    each = ChatEncoder(info, load_chat_template(None, info), turns="each").encode(conversations)
    assert whole.counts["turn_rows"] == 0 and (whole.turns == -1).all()
    assistants = sum(c.roles.count("assistant") for c in conversations)
    assert len(each) == each.counts["turn_rows"] == assistants
    seen = check_rows(info, hf_tok, conversations, each)
    assert seen == {"each": assistants}
    # every row's one trained turn is trained as in the whole conversation's row
    for j in range(len(each)):
        i = int(each.index[j])
        row = next(r for r in range(len(whole)) if whole.index[r] == i)
        assert trained_pieces(info, each, j)[0] in trained_pieces(info, whole, row)
    order = list(zip(each.index.tolist(), each.turns.tolist(), strict=True))
    assert order == sorted(order)  # conversation order, then turn order


def test_too_many_turn_rows_are_rejected(tokenizer, data_path):
    info = tokenizer("qwen3")
    conversations = reasoning_conversations(data_path, 3, inline=True, n=2)
    encoder = ChatEncoder(info, load_chat_template(None, info), max_rows_per_conversation=2)
    batch = encoder.encode(conversations)
    assert len(batch) == 0 and reasons(batch) == {"too_many_turn_rows": 2}
    assert (
        "3 trained turns would become 3 rows, more than max_rows_per_conversation=2" in batch.rejected[0][2]
    )


def test_one_bad_turn_rejects_the_whole_conversation(tokenizer):
    info = tokenizer("qwen3")
    long = chat(("user", "a"), ("assistant", "short"), ("user", "b"), ("assistant", "word " * 200))
    options = EncodeOptions(max_length=60, truncation="target")
    batch = ChatEncoder(info, load_chat_template(None, info), options).encode([long])
    assert len(batch) == 0 and reasons(batch) == {"turn_truncated": 1}


# --- the CLI ---------------------------------------------------------------------------------


def test_build_writes_turn_rows_with_their_turn_and_counts(tmp_path, data_path, tokenizer_path):
    from click.testing import CliRunner
    from datasets import load_from_disk

    from sftprep.cli import cli

    glaive = data_path("chat", "glaive_toolcall_en_demo.json")
    out = tmp_path / "out"
    args = ["build", glaive, "--tokenizer", tokenizer_path("qwen3"), "-o", str(out), "-w", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "turns auto: one row per conversation where the chat template renders every turn" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["records_read"] == 300 and counts["skipped_total"] == 0
    assert counts["conversations_by_turn"] == 261  # the multi-turn and tool-call conversations
    assert (
        f"261 conversations written one row per turn (--turns): {counts['turn_rows']:,} rows" in result.output
    )
    ds = load_from_disk(str(out))
    assert len(ds) == counts["rows_written"] == counts["turn_rows"] + 39
    keys = [
        (line, -1 if turn is None else turn) for line, turn in zip(ds["source_line"], ds["turn"], strict=True)
    ]
    assert keys == sorted(keys) and len(set(ds["source_line"])) == 300
    assert sum(t is not None for t in ds["turn"]) == counts["turn_rows"]

    stats = CliRunner().invoke(cli, ["inspect", str(out), "--stats", "--width", "200"])
    assert f"261 conversations one row per turn: {counts['turn_rows']:,} rows" in stats.stdout

    packed = tmp_path / "packed"
    args += ["--pack", "--max-length", "16384", "-o", str(packed)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    turns = [t for row in load_from_disk(str(packed))["turn"] for t in row]
    assert sorted(t for t in turns if t is not None) == sorted(t for t in ds["turn"] if t is not None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--turns", "each", "--train-on", "all"], "--turns each trains one assistant turn per row"),
        (["--turns", "every"], "Invalid value for '--turns'"),
    ],
)
def test_bad_turn_options(options, message, tmp_path, data_path):
    from click.testing import CliRunner

    from sftprep.cli import cli

    args = ["build", data_path("chat", "lima.json"), "-o", str(tmp_path / "o"), *options]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (1, 2) and message in result.output


def test_inspect_shows_the_turn_and_the_think_block(tmp_path, data_path, tokenizer_path):
    from click.testing import CliRunner

    from sftprep.cli import cli

    conversations = reasoning_conversations(data_path, 2, inline=False, n=1)
    path = tmp_path / "reasoning.jsonl"
    path.write_text(json.dumps({"messages": list(conversations[0].messages)}) + "\n")
    args = ["inspect", "--preview", str(path), "--tokenizer", tokenizer_path("qwen3"), "--width", "400"]
    result = CliRunner().invoke(cli, [*args, "--train-reasoning", "no"])
    assert result.exit_code == 0, result.output
    (_, reasoning, answer), (_, _, answer2) = gsm8k(data_path, 2)
    headers = [line for line in result.stdout.splitlines() if line.startswith("── row")]
    assert [h.split(" · ")[-1].split(" ")[:2] for h in headers] == [["turn", "1"], ["turn", "3"]]
    first_reasoning_line = reasoning.splitlines()[0]
    assert f"⟪<think>↵\n          │ {first_reasoning_line}" in result.stdout  # not trained: outside [[ ]]
    assert f"</think>⟫[[↵\n          │ ↵\n          │ {answer}<|im_end|>]]" in result.stdout
    trained = CliRunner().invoke(cli, args)
    assert f"[[⟪<think>↵\n          │ {first_reasoning_line}" in trained.stdout
    assert f"{answer2}<|im_end|>]]" in trained.stdout


@pytest.mark.parametrize(
    ("key", "field_map"),
    [("reasoning_content", None), ("thinking", None), ("reasoning", None), ("cot", {"reasoning": "cot"})],
)
def test_reasoning_fields_and_their_mapping(key, field_map, tokenizer, hf):
    record = {
        "messages": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4", key: "2+2 is 4."},
        ]
    }
    conv = to_messages(record, "r.jsonl:1", field_map=field_map)
    assert conv.messages[1] == {"role": "assistant", "content": "4", "reasoning_content": "2+2 is 4."}
    info = tokenizer("qwen3")
    batch = ChatEncoder(info, load_chat_template(None, info)).encode([conv])
    assert trained_pieces(info, batch, 0) == ["<think>\n2+2 is 4.\n</think>\n\n4<|im_end|>"]


def test_conversation_mode_on_tool_calls_trains_each_turn_to_its_end_marker(tokenizer, hf, data_path):
    """Qwen3, glaive, --turns conversation: the whole rendering; each assistant turn (tool calls
    included) trained from its header to its <|im_end|>, tool responses never."""
    info, hf_tok = tokenizer("qwen3"), hf("qwen3")
    conversations = real_conversations(data_path, "glaive_toolcall_en_demo.json")
    batch = ChatEncoder(info, load_chat_template(None, info), turns="conversation").encode(conversations)
    assert len(batch) == len(conversations) and reasons(batch) == {}
    for j, conv in enumerate(conversations):
        messages = list(conv.messages)
        text = hf_tok.apply_chat_template(messages, tools=conv.tools, tokenize=False)
        ids = batch.ids[batch.offsets[j] : batch.offsets[j + 1]]
        assert (
            ids.tolist()
            == hf_tok.apply_chat_template(messages, tools=conv.tools, return_dict=True)["input_ids"]
        )
        inside = np.zeros(len(text), dtype=bool)
        for k, m in enumerate(messages):
            if m["role"] == "assistant":
                start = len(
                    hf_tok.apply_chat_template(
                        messages[:k], tools=conv.tools, tokenize=False, add_generation_prompt=True
                    )
                )
                inside[start : text.index("<|im_end|>", start) + len("<|im_end|>")] = True
        offsets = info.tokenizer.encode(text, add_special_tokens=False).offsets
        expected = [bool(inside[a:b].all()) for a, b in offsets]
        assert batch.trained[batch.offsets[j] : batch.offsets[j + 1]].tolist() == expected, j


PIECES = [*"ab 1\n<>/", "<think>", "</think>", "é", "  "]
WORDS = st.lists(st.sampled_from(PIECES), max_size=8).map("".join)


@st.composite
def qwen_turns(draw):
    """Conversations of 1-3 user/assistant pairs, with reasoning in either form or none."""
    messages = []
    for _ in range(draw(st.integers(1, 3))):
        messages.append({"role": "user", "content": draw(WORDS) + "q"})
        answer, reasoning = draw(WORDS).strip() + "a", draw(st.none() | WORDS)
        form = draw(st.sampled_from(["field", "inline"]))
        if reasoning is not None and form == "field":
            messages.append({"role": "assistant", "content": answer, "reasoning_content": reasoning})
        elif reasoning is not None:
            messages.append({"role": "assistant", "content": f"<think>\n{reasoning}\n</think>\n\n{answer}"})
        else:
            messages.append({"role": "assistant", "content": answer})
    return to_messages({"messages": messages}, "h:1")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conv=qwen_turns(), name=st.sampled_from(["qwen3", "llama-3.1"]))
def test_any_reasoning_conversation_equals_apply_chat_template(conv, name, tokenizer, hf):
    info = tokenizer(name)
    batch = ChatEncoder(info, load_chat_template(None, info)).encode([conv])
    if batch.rejected:  # only what an exact mask cannot be made of (a token across a turn's edge)
        assert batch.rejected[0][1] in {"span_token_merge", "span_not_found", "message_not_rendered"}, (
            batch.rejected
        )
        return
    check_rows(info, hf(name), [conv], batch)
