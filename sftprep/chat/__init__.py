"""Chat conversations -> token rows trained on the assistant's turns, for any chat template.

* :mod:`~sftprep.chat.formats`: records (messages, ShareGPT, Alpaca with history) -> a
  :class:`~sftprep.chat.formats.Conversation`, with a reason code for a bad record;
* :mod:`~sftprep.chat.template`: the sandboxed Jinja chat templates, rendered as transformers'
  ``apply_chat_template`` renders them;
* :mod:`~sftprep.chat.encoder`: :class:`ChatEncoder`, conversations -> rows with per-token
  ``trained`` flags found from prefix renders (its docstring says how);
* :mod:`~sftprep.chat.spans` (the plan and character spans of a row) and
  :mod:`~sftprep.chat.reasoning` (``<think>`` blocks), the pieces the encoder works with.

The encoder's public names are importable from here. They load on first use (PEP 562), so that
importing a light submodule such as :mod:`~sftprep.chat.formats` does not import the tokenizer
stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sftprep.chat.encoder import (
        REASONS,
        TOKENIZER_TEMPLATE,
        TRAIN_ON,
        TURNS,
        ChatBatch,
        ChatEncoder,
        ChatLayout,
        ChatTemplate,
        ChatTurn,
        load_chat_template,
        shipped_chat_templates,
        special_tokens,
    )

__all__ = [
    "REASONS",
    "TOKENIZER_TEMPLATE",
    "TRAIN_ON",
    "TURNS",
    "ChatBatch",
    "ChatEncoder",
    "ChatLayout",
    "ChatTemplate",
    "ChatTurn",
    "load_chat_template",
    "shipped_chat_templates",
    "special_tokens",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("sftprep.chat.encoder"), name)
    raise AttributeError(f"module 'sftprep.chat' has no attribute {name!r}")
