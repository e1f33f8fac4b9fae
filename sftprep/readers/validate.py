"""Record validation shared by the JSON readers: a training record is a JSON object, not too deep.

Python's json parser and pickle recurse once per nesting level and give up near
``sys.getrecursionlimit()`` (1000); training records are never nested this deep, and a
record that would not pickle for a worker process must be rejected here, by name.
"""

from __future__ import annotations

from sftprep.readers.base import Record, bad_record

MAX_DEPTH = 200
TOO_DEEP = f"JSON nested too deeply (over {MAX_DEPTH} levels of arrays or objects)"


def too_deep(raw: str, data: object) -> bool:
    """Nested deeper than MAX_DEPTH: such a record would not pickle for a worker process.

    Counting brackets in the text is a fast upper bound on the depth (one C pass); only
    a record with many brackets is walked.
    """
    if raw.count("[") + raw.count("{") <= MAX_DEPTH:
        return False
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return False


def not_an_object(value: object) -> str:
    """The message of a JSON value that is not an object: ``expected a JSON object, found a list``."""
    kinds = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return f"expected a JSON object, found {kinds.get(type(value), 'null')}"


def checked(source: str, number: int, unit: str, value: object, raw: str) -> Record:
    """The record of a parsed JSON value: its data, or why it cannot be a training record.

    Args:
        source: the input's name in messages.
        number: the line or record number.
        unit: ``"line"`` or ``"record"``.
        value: the parsed JSON value.
        raw: its text (the JSONL line, or ``json.dumps`` of a JSON element).
    """
    if type(value) is not dict:
        return bad_record(source, number, "not_an_object", not_an_object(value), raw, unit)
    if too_deep(raw, value):
        return bad_record(source, number, "too_deeply_nested", TOO_DEEP, raw, unit)
    return Record(source, number, unit, value, None, raw)
