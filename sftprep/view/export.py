"""Rows for scripts (``--format json``): ids, token strings, decoded pieces and the trained mask."""

from __future__ import annotations

from typing import Any

from sftprep.view.pieces import Pieces
from sftprep.view.rows import Row


def row_json(row: Row, pieces: Pieces) -> dict[str, Any]:
    """One stored row for scripts: ids, token strings, decoded pieces and the trained mask.

    ``trained[j]`` is 1 when token ``j`` is a trained target (predicted, with loss,
    from position ``j - 1``); the same in every label convention. A packed row
    adds its packing columns as stored (``position_ids``, ``seq_lengths``, and
    ``source_file``, ``source_line``, ``truncated``, ``boundary_adjusted``, ``turn``
    as lists), a padded row ``padding``, an example taken out of a packed row
    ``example`` (its index in the row), and a chat row whose messages are known
    ``turns``: ``{"example", "message", "role", "start", "stop"}`` token ranges.
    """
    ids = [int(i) for i in row.input_ids]
    out: dict[str, Any] = {
        "row": row.index,
        "source_file": row.source_file,
        "source_line": row.source_line,
        "truncated": row.truncated,
        "boundary_adjusted": row.boundary_adjusted,
        # The chat turn a --turns each row trains (null for pairs and whole conversations).
        "turn": row.examples[0].turn if len(row.examples) == 1 else None,
        "num_trained_tokens": row.num_trained_tokens,
        "input_ids": ids,
        "tokens": pieces.vocab(ids) if pieces.tok else None,
    }
    if row.target_id is None:
        out["text"] = _texts(row, pieces) if pieces.tok else None
        out["trained"] = row.trained_tokens.astype(int).tolist()
    else:
        texts = pieces.texts([*ids, row.target_id]) if pieces.tok else None
        out["text"] = texts[:-1] if texts else None
        out["position"] = len(ids)
        out["target_id"] = row.target_id
        out["target_token"] = pieces.vocab([row.target_id])[0] if pieces.tok else None
        out["target_text"] = texts[-1] if texts else None
    out.update(_parts(row))
    out.update(row.extra)
    return out


def _texts(row: Row, pieces: Pieces) -> list[str]:
    """Each example decoded on its own, as in the text view (and its unpacked row), then the padding."""
    texts = [t for e in row.examples for t in pieces.texts(row.input_ids[e.start : e.stop])]
    return texts + pieces.texts(row.input_ids[len(row.input_ids) - row.padding :])


def _parts(row: Row) -> dict[str, Any]:
    """What a row has beyond one example: packing, padding, its place in a packed row, chat turns."""
    out: dict[str, Any] = {}
    if row.packed:
        assert row.position_ids is not None
        out["position_ids"] = [int(p) for p in row.position_ids]
        out["seq_lengths"] = [e.stop - e.start for e in row.examples]
        for name in ("source_file", "source_line", "truncated", "boundary_adjusted", "turn"):
            out[name] = [getattr(e, name) for e in row.examples]
    if row.padding:
        out["padding"] = row.padding
    if row.example is not None:
        out["example"] = row.example[0]
    turns = [(k, t) for k, e in enumerate(row.examples) for t in (e.turns or [])]
    if turns:
        out["turns"] = [
            {"example": k, "message": t.message, "role": t.role, "start": t.start, "stop": t.stop}
            for k, t in turns
        ]
    return out
