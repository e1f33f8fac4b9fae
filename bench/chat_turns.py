"""Chat encoding speed for --turns: conversations per second and rows/tokens written.

    python bench/chat_turns.py [--repeat 3]

Routes (each on the real data in ../shared, tokenizers with their own templates):

* ``llama-3.1 lima auto`` and ``multichallenge auto`` (multi-turn): a prefix-stable template, one row per conversation (issue 13 asks that
  ``auto`` be no slower here than before ``--turns`` existed: run this script with the old code on
  PYTHONPATH too and compare).
* ``qwen3 glaive auto``, ``qwen3 reasoning auto`` (3-turn gsm8k conversations): a template that is
  not prefix-stable, so most conversations become one row per turn.
* ``qwen3 reasoning each`` and ``conversation``: the two modes side by side.

Prints one line per route: conversations/s, rows, tokens written, and renders per conversation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sftprep.chat import ChatEncoder, load_chat_template
from sftprep.chat.formats import to_messages
from sftprep.tokenizer import load_tokenizer

MULTI = "multichallenge_benchmark_questions.jsonl"
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"


def _conversations(name: str, field_map: dict | None = None) -> list:
    path = SHARED / "data" / "chat" / name
    records = json.loads(path.read_text()) if path.suffix == ".json" else [json.loads(x) for x in path.open()]
    return [to_messages(r, f"{name}:{i + 1}", field_map=field_map) for i, r in enumerate(records)]


def _reasoning(turns: int, n: int) -> list:
    rows = [json.loads(x) for x in (SHARED / "data" / "qa" / "gsm8k_test.jsonl").open()][: turns * n]
    out = []
    for c in range(n):
        messages = []
        for row in rows[c * turns : (c + 1) * turns]:
            solution, _, number = row["answer"].rpartition("####")
            messages.append({"role": "user", "content": row["question"]})
            messages.append(
                {"role": "assistant", "content": number.strip(), "reasoning_content": solution.strip()}
            )
        out.append(to_messages({"messages": messages}, f"gsm8k:{c + 1}"))
    return out


def _route(tokenizer: str, conversations: list, repeat: int, **options) -> dict:
    info = load_tokenizer(str(SHARED / "tokenizers" / tokenizer))
    encoder = ChatEncoder(info, load_chat_template(None, info), **options)
    renders = 0
    render = encoder.template.render

    def counted(*args, **kwargs):
        nonlocal renders
        renders += 1
        return render(*args, **kwargs)

    encoder.template.render = counted  # type: ignore[method-assign]
    best = float("inf")
    for _ in range(repeat):
        renders = 0
        start = time.perf_counter()
        batch = encoder.encode(conversations)
        best = min(best, time.perf_counter() - start)
    return {
        "conversations/s": round(len(conversations) / best),
        "rows": len(batch),
        "tokens": int(batch.offsets[-1]),
        "renders/conversation": round(renders / len(conversations), 2),
        "rejected": len(batch.rejected),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    reasoning = _reasoning(3, 200)
    routes = [
        ("llama-3.1 lima auto", "llama-3.1", _conversations("lima.json"), {}),
        (
            "llama-3.1 multichallenge auto",
            "llama-3.1",
            _conversations(MULTI, {"messages": "CONVERSATION"}),
            {},
        ),
        ("qwen3 glaive auto", "qwen3", _conversations("glaive_toolcall_en_demo.json"), {}),
        ("qwen3 reasoning auto", "qwen3", reasoning, {}),
    ]
    try:  # absent before --turns: the old code runs only the routes above
        ChatEncoder.__init__.__code__.co_varnames.index("turns")
        routes += [
            ("qwen3 reasoning each", "qwen3", reasoning, {"turns": "each"}),
            ("qwen3 reasoning conversation", "qwen3", reasoning, {"turns": "conversation"}),
        ]
    except ValueError:
        pass
    for name, tokenizer, conversations, options in routes:
        print(f"{name:<30} {json.dumps(_route(tokenizer, conversations, args.repeat, **options))}")


if __name__ == "__main__":
    main()
