"""Reasoning (``<think>...</think>``) in assistant turns: where it is in a message and in a render.

Reasoning models (Qwen3, DeepSeek-R1) write a think block before their answer. Data carries it
either as a field on the assistant message (``reasoning_content``; ``reasoning`` and ``thinking``
are aliases) or inline at the start of ``content``::

    {"role": "assistant", "content": "<think>\\n2 + 2 is 4\\n</think>\\n\\nThe answer is 4."}

Templates that read reasoning render it as a think block on the turns the model generates
(Qwen3: the turns after the last user query, an empty block when there is none) and drop it from
earlier turns. Which characters of a rendered turn are the think block is found in the rendered
text itself, so it is exactly what the template wrote, whichever form the data used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")


def reasoning_of(message: Mapping[str, Any]) -> str:
    """The reasoning text of an assistant message (field or inline think block), or ``""``.

    Example: ``{"content": "<think>a</think>b"} -> "a"``.
    """
    for key in REASONING_KEYS:
        value = message.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    content = message.get("content") or ""
    if THINK_CLOSE in content:
        return content.split(THINK_CLOSE)[0].split(THINK_OPEN)[-1].strip()
    return ""


def answer_of(message: Mapping[str, Any]) -> str:
    """The text of a message without an inline think block, stripped.

    Example: ``{"content": "<think>a</think>\\n\\nb "} -> "b"``.
    """
    content = message.get("content") or ""
    if message.get("role") == "assistant" and THINK_CLOSE in content:
        content = content.split(THINK_CLOSE)[-1]
    return content.strip()


def think_span(text: str, start: int, end: int) -> tuple[int, int, bool] | None:
    """The think block at the start of the rendered turn ``text[start:end]``.

    Returns:
        ``(open, close_end, empty)``: the block from its ``<think>`` to the end of its
        ``</think>``, and whether only whitespace is between them; None when the turn has none.
    """
    body = text[start:end]
    lead = len(body) - len(body.lstrip())
    if not body[lead:].startswith(THINK_OPEN):
        return None
    close = text.find(THINK_CLOSE, start + lead, end)
    if close < 0:
        return None
    open_at = start + lead
    empty = not text[open_at + len(THINK_OPEN) : close].strip()
    return open_at, close + len(THINK_CLOSE), empty
