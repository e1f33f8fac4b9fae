"""Chat records -> one normalised :class:`Conversation` (a list of ``role``/``content`` messages).

Three layouts are read, told apart by the record's keys:

* ``messages`` (OpenAI): ``{"messages": [{"role": "user", "content": "Hi"}, ...]}``. ``content`` may
  be a string, a list of text parts (OpenAI ``{"type": "text", "text": ...}``, LLaMA-Factory
  ``{"type": "text", "value": ...}``), or null on an assistant message that has ``tool_calls``;
* ``sharegpt``: ``{"conversations": [{"from": "human", "value": "Hi"}, ...]}`` with the roles
  ``human``/``gpt``/``system``/``function_call``/``observation``, and optional top-level ``system``;
* ``alpaca`` with history: ``{"instruction", "input", "output", "history": [[user, assistant], ...]}``.

``tools`` (a list, or a JSON string as in glaive), a per-message ``weight``/``loss_weight``
(0 = do not train this message) and an assistant message's reasoning (``reasoning_content``, or
``reasoning``/``thinking``; the message carries it as ``reasoning_content``) are read in every layout. Every key and role name can be remapped:
``field_map={"messages": "CONVERSATION"}``, ``role_map={"bot": "assistant"}``; mapping a field to
``""`` switches it off (``{"tools": ""}`` ignores the tools).

Example::

    >>> to_messages({"conversations": [{"from": "human", "value": "Hi"},
    ...                                {"from": "gpt", "value": "Hello!"}]}, "a.json:1").messages
    ({'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello!'})

Problems with one record raise :class:`~sftprep.errors.RecordError` with one of the stable
reason codes in ``REASONS``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sftprep.errors import RecordError

FORMATS = ("messages", "sharegpt", "alpaca")

# Reason codes raised here (the manifest counts rejected records under them).
REASONS = (
    "unknown_chat_format",  # no messages/conversations list and no instruction/output pair
    "not_a_list",  # the messages or history field is not a list
    "bad_message",  # a message that is not an object, or lacks its role
    "unknown_role",  # a role name that the role map does not know
    "missing_content",  # a message without content (and without tool calls)
    "unsupported_content",  # a content part that is not text (an image, audio, ...)
    "bad_weight",  # a weight that is not a number >= 0
    "bad_tools",  # tools that are neither a list of objects nor a JSON string of one
    "bad_tool_call",  # a ShareGPT function_call turn that is not a JSON {"name", "arguments"} object
    "bad_history",  # an alpaca history entry that is not a [user, assistant] pair of strings
    "duplicate_system",  # a top-level system prompt and a system message in the list
    "empty_conversation",  # no message at all
)

# Our field name -> record keys tried in order.
DEFAULT_FIELDS: dict[str, tuple[str, ...]] = {
    "messages": ("messages", "conversations", "conversation"),
    "role": ("role", "from"),
    "content": ("content", "value"),
    "system": ("system",),
    "tools": ("tools",),
    "weight": ("weight", "loss_weight"),
    # An assistant message's reasoning (DeepSeek, Qwen); passed to templates as reasoning_content.
    "reasoning": ("reasoning_content", "reasoning", "thinking"),
    "instruction": ("instruction",),
    "input": ("input",),
    "output": ("output",),
    "history": ("history",),
}

# Role names found in the wild -> the roles chat templates know. function_call is an assistant
# turn (the model writes the call, so it is trained) whose JSON value becomes OpenAI-style
# ``tool_calls``, as templates with tool support read them; observation is the tool's answer.
DEFAULT_ROLES: dict[str, str] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "function_call": "assistant",
    "tool": "tool",
    "observation": "tool",
    "function": "tool",
}


@dataclass(frozen=True)
class Conversation:
    """One conversation, ready for a chat template.

    Attributes:
        messages: the messages as the template sees them: ``role`` and ``content`` (a string),
            plus any other keys the data had (``tool_calls``, ``name``, ...), without nulls.
        weights: per message, what the data says about training it: ``False`` for a weight of
            0, ``True`` for a positive weight, ``None`` when the data gives no weight.
        tools: the tool schemas passed to the template, or None.
        format: the layout it was read from (one of ``FORMATS``).
    """

    messages: tuple[dict[str, Any], ...]
    weights: tuple[bool | None, ...]
    tools: list[dict[str, Any]] | None = None
    format: str = "messages"

    @property
    def roles(self) -> list[str]:
        return [m["role"] for m in self.messages]


def _keys_for(name: str, field_map: Mapping[str, str]) -> tuple[str, ...]:
    if name in field_map:
        return (field_map[name],) if field_map[name] else ()
    return DEFAULT_FIELDS[name]


def _pick(record: Mapping[str, Any], name: str, field_map: Mapping[str, str]) -> str | None:
    """The first key for field ``name`` that the record has, or None."""
    return next((k for k in _keys_for(name, field_map) if k in record), None)


def _found(record: Mapping[str, Any]) -> str:
    return ", ".join(map(str, record)) or "none"


def detect_format(record: Mapping[str, Any], field_map: Mapping[str, str] | None = None) -> str | None:
    """The layout of ``record`` (one of ``FORMATS``), or None when it is not a chat record."""
    field_map = field_map or {}
    key = _pick(record, "messages", field_map)
    if key is not None:
        turns = record[key]
        first = turns[0] if isinstance(turns, list) and turns else None
        role_keys = _keys_for("role", field_map)
        sharegpt = isinstance(first, Mapping) and "from" in first and "from" in role_keys
        return "sharegpt" if sharegpt else "messages"
    if _pick(record, "instruction", field_map) and _pick(record, "output", field_map):
        return "alpaca"
    return None


def to_messages(
    record: Mapping[str, Any],
    where: str,
    fmt: str | None = None,
    field_map: Mapping[str, str] | None = None,
    role_map: Mapping[str, str] | None = None,
) -> Conversation:
    """Normalise one chat record.

    Args:
        record: the parsed record.
        where: ``file:line`` for error messages.
        fmt: one of ``FORMATS``, or None to detect it from the record's keys.
        field_map: our field name (a key of ``DEFAULT_FIELDS``) -> the record's key; ``""``
            switches the field off.
        role_map: extra or overriding role names -> template roles (added to ``DEFAULT_ROLES``).

    Returns:
        The conversation.

    Raises:
        RecordError: the record is not a usable conversation (see ``REASONS``).
    """
    field_map = dict(field_map or {})
    roles = {**DEFAULT_ROLES, **(role_map or {})}
    fmt = fmt or detect_format(record, field_map)
    if fmt is None:
        raise RecordError(
            where,
            "unknown_chat_format",
            f"no list of messages ({', '.join(DEFAULT_FIELDS['messages'])}) and no instruction/output "
            f"pair (found: {_found(record)}); map the field with --field messages=KEY",
        )
    if fmt == "alpaca":
        messages, weights = _alpaca(record, where, field_map)
    else:
        messages, weights = _turns(record, where, field_map, roles)
    messages, weights = _with_system(record, where, field_map, messages, weights)
    if not messages:
        raise RecordError(where, "empty_conversation", "the conversation has no message")
    return Conversation(tuple(messages), tuple(weights), _tools(record, where, field_map), fmt)


def _turns(
    record: Mapping[str, Any], where: str, field_map: Mapping[str, str], roles: Mapping[str, str]
) -> tuple[list[dict[str, Any]], list[bool | None]]:
    key = _pick(record, "messages", field_map)
    if key is None:
        wanted = "/".join(_keys_for("messages", field_map)) or "messages"
        raise RecordError(where, "unknown_chat_format", f"missing '{wanted}' (found: {_found(record)})")
    turns = record[key]
    if not isinstance(turns, list):
        raise RecordError(where, "not_a_list", f"'{key}' is {type(turns).__name__}, expected a list", key)
    messages, weights = [], []
    for i, turn in enumerate(turns):
        message, weight = _message(turn, f"{key}.{i}", where, field_map, roles)
        messages.append(message)
        weights.append(weight)
    return messages, weights


def _message(
    turn: Any, path: str, where: str, field_map: Mapping[str, str], roles: Mapping[str, str]
) -> tuple[dict[str, Any], bool | None]:
    """One turn -> (message dict for the template, trained-by-the-data flag)."""
    if not isinstance(turn, Mapping):
        raise RecordError(where, "bad_message", f"'{path}' is {type(turn).__name__}, expected an object")
    role_key = _pick(turn, "role", field_map)
    if role_key is None or not isinstance(turn[role_key], str):
        raise RecordError(where, "bad_message", f"'{path}' has no role (found: {_found(turn)})")
    name = turn[role_key]
    role = roles.get(name)
    if role is None:
        raise RecordError(
            where,
            "unknown_role",
            f"'{path}' has role '{name}' (known: {', '.join(sorted(roles))}); "
            "map it with a role mapping such as NAME=assistant",
        )
    content_key = _pick(turn, "content", field_map)
    weight_key = _pick(turn, "weight", field_map)
    reasoning_key = _pick(turn, "reasoning", field_map)
    used = {role_key, content_key, weight_key, reasoning_key}
    extra = {k: v for k, v in turn.items() if k not in used and v is not None}
    if reasoning_key is not None and turn[reasoning_key] is not None:
        extra["reasoning_content"] = _text(turn[reasoning_key], f"{path}.{reasoning_key}", where)
    content = turn.get(content_key) if content_key else None
    if content is None and not (role == "assistant" and extra.get("tool_calls")):
        raise RecordError(
            where, "missing_content", f"'{path}' ({name}) has no content (found: {_found(turn)})"
        )
    text = "" if content is None else _text(content, f"{path}.{content_key}", where)
    weight = _weight(turn[weight_key], f"{path}.{weight_key}", where) if weight_key else None
    if name == FUNCTION_CALL and role == "assistant" and "tool_calls" not in extra:
        extra["tool_calls"] = _tool_calls(text, f"{path}.{content_key}", where)
        text = ""
    return {"role": role, "content": text, **extra}, weight


FUNCTION_CALL = "function_call"  # the ShareGPT/glaive role of a turn that calls a tool


def _tool_calls(text: str, path: str, where: str) -> list[dict[str, Any]]:
    """A function_call turn's JSON (one call or a list) -> OpenAI-style ``tool_calls``.

    Example: ``'{"name": "f", "arguments": {"x": 1}}'`` ->
    ``[{"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]``.
    """
    try:
        calls = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(where, "bad_tool_call", f"'{path}' is not JSON: {exc}") from None
    calls = calls if isinstance(calls, list) else [calls]
    if not calls or not all(isinstance(c, Mapping) and isinstance(c.get("name"), str) for c in calls):
        raise RecordError(
            where,
            "bad_tool_call",
            f'\'{path}\' is not a {{"name": ..., "arguments": ...}} object (or a list of them)',
        )
    return [
        {"type": "function", "function": {"name": c["name"], "arguments": c.get("arguments", {})}}
        for c in calls
    ]


def _text(content: Any, path: str, where: str) -> str:
    """Content as one string: a string, or a list of text parts joined without a separator."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise RecordError(
            where,
            "missing_content",
            f"'{path}' is {type(content).__name__}, expected text or a list of parts",
        )
    pieces = []
    for i, part in enumerate(content):
        if isinstance(part, str):
            pieces.append(part)
            continue
        kind = part.get("type", "text") if isinstance(part, Mapping) else type(part).__name__
        text = part.get("text", part.get("value")) if isinstance(part, Mapping) else None
        if kind != "text" or not isinstance(text, str):
            raise RecordError(
                where,
                "unsupported_content",
                f"'{path}.{i}' is a '{kind}' part; only text parts are supported",
            )
        pieces.append(text)
    return "".join(pieces)


def _weight(value: Any, path: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value >= 0:
        return value > 0
    raise RecordError(where, "bad_weight", f"'{path}' is {value!r}, expected a number >= 0 (0 = not trained)")


def _alpaca(
    record: Mapping[str, Any], where: str, field_map: Mapping[str, str]
) -> tuple[list[dict[str, Any]], list[bool | None]]:
    """instruction (+ input on a new line) -> user; output -> assistant; history first."""

    def text(name: str, required: bool) -> str:
        key = _pick(record, name, field_map)
        value = record.get(key) if key else None
        if value is None and not required:
            return ""
        if not isinstance(value, str):
            what = "missing" if key is None else f"{type(value).__name__}, expected a string"
            raise RecordError(where, "missing_content", f"'{name}' is {what} (found: {_found(record)})", name)
        return value

    messages: list[dict[str, Any]] = []
    key = _pick(record, "history", field_map)
    history = record.get(key) if key else None
    if history is not None and not isinstance(history, list):
        raise RecordError(where, "not_a_list", f"'{key}' is {type(history).__name__}, expected a list", key)
    for i, pair in enumerate(history or []):
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise RecordError(where, "bad_history", f"'{key}.{i}' is not a [user, assistant] pair of strings")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    query = "\n".join(t for t in (text("instruction", True), text("input", False)) if t)
    messages += [{"role": "user", "content": query}, {"role": "assistant", "content": text("output", True)}]
    return messages, [None] * len(messages)


def _with_system(
    record: Mapping[str, Any],
    where: str,
    field_map: Mapping[str, str],
    messages: list[dict[str, Any]],
    weights: list[bool | None],
) -> tuple[list[dict[str, Any]], list[bool | None]]:
    """Put a top-level system prompt (ShareGPT, alpaca) in front as a system message."""
    key = _pick(record, "system", field_map)
    system = record.get(key) if key else None
    if not system:
        return messages, weights
    if not isinstance(system, str):
        raise RecordError(where, "missing_content", f"'{key}' is {type(system).__name__}, expected a string")
    if any(m["role"] == "system" for m in messages):
        raise RecordError(
            where, "duplicate_system", f"a top-level '{key}' and a system message in the conversation"
        )
    return [{"role": "system", "content": system}, *messages], [None, *weights]


def _tools(
    record: Mapping[str, Any], where: str, field_map: Mapping[str, str]
) -> list[dict[str, Any]] | None:
    key = _pick(record, "tools", field_map)
    tools = record.get(key) if key else None
    if isinstance(tools, str):
        if not tools.strip():
            return None
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as exc:
            raise RecordError(where, "bad_tools", f"'{key}' is a string but not JSON: {exc}", key) from None
    if not tools:
        return None
    if not isinstance(tools, Sequence) or not all(isinstance(t, Mapping) for t in tools):
        raise RecordError(where, "bad_tools", f"'{key}' is not a list of tool objects", key)
    return [dict(t) for t in tools]
