"""Chat conversations -> token rows trained on the assistant's turns, for any chat template.

The template renders a conversation exactly as ``tokenizer.apply_chat_template(messages,
tokenize=False)`` does (:mod:`sftprep.chat.template`, whose names are importable from here too).
Which characters the model must write is found without trusting ``{% generation %}`` tags, by
rendering prefixes (:mod:`sftprep.chat.planner` does the rendering and locating):

* an assistant turn starts where ``render(messages[:k], add_generation_prompt=True)`` ends -- the
  header (``<|im_start|>assistant\\n``) is the generation prompt, so it is never trained;
* it ends where ``render(messages[:k+1])`` stops agreeing with the whole conversation's render,
  so the end-of-turn marker (``<|im_end|>``, ``<|end|>``, ``</s>``) is trained, and for the last
  message whatever the template closes the conversation with (phi-3's EOS) too. Whitespace after
  the marker is not trained: the model stops at the marker and never writes it.

The full text is tokenized once, with offsets (computed from the ids where they tell them:
:mod:`sftprep.chat.offsets`) and ``add_special_tokens=False`` (the template writes
BOS itself, as apply_chat_template assumes), and the character spans become per-token ``trained``
flags. Where a template cannot be handled exactly the row is rejected with a reason code, never
mis-masked: a render of ``messages[:k]`` that is not a prefix of the whole render
(``template_not_prefix_stable``), an assistant message whose text is not found between its header
and the end of its turn (``span_not_found``), a token that crosses a span's edge
(``span_token_merge``; a token that crosses it only by whitespace, such as phi-3's
``<|assistant|>`` absorbing the content's leading spaces, is assigned by its other characters).
Templates with ``{% generation %}`` tags are also checked against transformers' assistant mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sftprep.chat.formats import Conversation
from sftprep.chat.offsets import byte_level_offsets
from sftprep.chat.planner import TurnPlanner
from sftprep.chat.reasoning import think_span
from sftprep.chat.spans import ChatBatch, ChatLayout, ChatTurn, Plan, TokenSpans, chat_batch
from sftprep.chat.template import (
    TOKENIZER_TEMPLATE,
    ChatTemplate,
    load_chat_template,
    shipped_chat_templates,
    special_tokens,
)

# Both encoders reject a row with a reason code, or drop it under --truncation drop.
from sftprep.encode import (
    TRUNCATE_DROP,
    TRUNCATE_TARGET,
    EncodeOptions,
    RowDropped,
    RowRejected,
    encode_rows,
)
from sftprep.errors import ConfigError, RecordError
from sftprep.options import TRAIN_ON, TURNS
from sftprep.tokenizer import TokenizerInfo

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

# TRAIN_ON and TURNS (the choices, declared in sftprep.options): how conversations become rows:
# ``conversation`` (one row, every turn as the whole render shows it), ``each`` (one row per
# trained turn, rendered as when it is the last), ``auto`` (one row where the template is
# prefix-stable for the conversation, ``each`` where it is not).
# What encode() counts (the manifest and summary report these).
COUNTS = (
    "truncated",
    "boundary_adjusted",
    "turns_dropped",
    "turn_rows",  # rows written one per trained turn (--turns each, or auto's fallback)
    "turn_tokens",  # tokens in those rows
    "conversations_by_turn",  # conversations written as one row per turn
    "reasoning_dropped",  # trained turns whose reasoning the rendered row does not show
    "empty_reasoning",  # trained turns rendered with an empty think block
)

# Reason codes of rows rejected here (sftprep.chat.formats.REASONS has those of bad records).
REASONS = (
    "template_error",  # the template raised (raise_exception, an undefined value, ...)
    "control_token_in_text",  # message text contains a special token's string, such as <|im_end|>
    "tools_not_rendered",  # the conversation has tools but the template never reads them
    "message_not_rendered",  # a message's text does not appear in the rendered conversation
    "template_not_prefix_stable",  # the template rewrites earlier turns when later ones follow
    "span_not_found",  # an assistant message's text is not between its header and its end
    "span_token_merge",  # a token crosses the edge of a trained span
    "empty_assistant_turn",  # a trained assistant message with no text and no tool calls
    "generation_mask_mismatch",  # our mask differs from the {% generation %} tags' mask
    "turn_truncated",  # no whole trained turn fits in max_length
    "no_trained_token",  # nothing left to train in the row
    "too_many_turn_rows",  # --turns each would write more rows than max_rows_per_conversation
)


# --- the encoder -------------------------------------------------------------------------------


class ChatEncoder:
    """Turns conversations into :class:`~sftprep.encode.EncodedBatch` rows with ``trained`` flags.

    Args:
        info: the tokenizer.
        template: the chat template.
        options: ``max_length`` and ``truncation`` (``prompt`` cuts from the left, keeping a
            leading BOS; ``target`` cuts from the right; ``drop``). A trained turn is never cut:
            the cut moves to the turn's edge, dropping the turn whole; a row left with no trained
            turn is rejected (``turn_truncated``). ``verify_prompts`` does not apply.
        train_on: ``assistant`` (every assistant message), ``last`` (the last assistant
            message) or ``all`` (every token). A message whose data says weight 0 is never trained.
        check_generation: compare with the ``{% generation %}`` mask where the template has tags.
        turns: one of ``TURNS``: how a conversation becomes rows (module docstring of
            :mod:`sftprep.chat.reasoning` says why templates differ).
        train_reasoning: train the think block of a trained turn (``False``: only its answer
            and end marker; the think block stays in the row as context).
        max_rows_per_conversation: reject a conversation (``too_many_turn_rows``) that ``each``
            would turn into more rows than this; None for no limit. Each row repeats the
            conversation before its turn, so the tokens written grow with the square of its length.
    """

    def __init__(
        self,
        info: TokenizerInfo,
        template: ChatTemplate,
        options: EncodeOptions | None = None,
        train_on: str = "assistant",
        check_generation: bool = True,
        turns: str = "auto",
        train_reasoning: bool = True,
        max_rows_per_conversation: int | None = None,
    ):
        if train_on not in TRAIN_ON:
            raise ConfigError(f"train_on must be one of {', '.join(TRAIN_ON)}, got '{train_on}'")
        if turns not in TURNS:
            raise ConfigError(f"turns must be one of {', '.join(TURNS)}, got '{turns}'")
        if turns == "each" and train_on == "all":
            raise ConfigError(
                "turns=each trains one assistant turn per row; it does not go with train_on=all"
            )
        self.turns = turns
        self.train_reasoning = train_reasoning
        self.max_rows = max_rows_per_conversation
        self.info = info
        self.template = template
        self.options = options or EncodeOptions()
        self.train_on = train_on
        self.check_generation = check_generation and template.has_generation_tags
        self.tok = info.tokenizer
        self.bos = info.bos_id
        self._offsets = byte_level_offsets(self.tok)
        self.planner = TurnPlanner(
            info, template, train_on, turns, max_rows_per_conversation, self.check_generation
        )

    def encode(self, conversations: Sequence[Conversation]) -> ChatBatch:
        """Encode a batch; problems with one conversation become ``rejected``/``dropped`` entries."""
        rejected: list[tuple[int, str, str]] = []
        dropped: list[int] = []
        planned = encode_rows(enumerate(conversations), self.planner.plans, rejected, dropped)
        plans = [(i, plan) for i, several in planned for plan in several]  # conversation, then turn order
        texts = [p.text for _, p in plans]
        # Offsets cost the tokenizer about as much again as the ids; where the ids tell them
        # (byte-level BPE, see chat/offsets.py) only the ids are asked for.
        fast = self._offsets is not None
        encode = self.tok.encode_batch_fast if fast else self.tok.encode_batch
        encodings = encode(texts, add_special_tokens=False)
        counts = dict.fromkeys(COUNTS, 0)

        def one_row(planned: tuple[Plan, Any]) -> tuple[np.ndarray, np.ndarray, bool, Plan]:
            plan, enc = planned
            ids = np.asarray(enc.ids, dtype=np.int32)
            offsets = self._offsets(plan.text, ids) if self._offsets is not None else enc.offsets
            if offsets is None:  # this row's offsets need the tokenizer
                enc = self.tok.encode(plan.text, add_special_tokens=False)
                ids, offsets = np.asarray(enc.ids, dtype=np.int32), enc.offsets
            tokens = TokenSpans(plan.text, offsets)
            trained, turns = self._flags(plan, tokens)
            ids, trained, cut = self._truncate(ids, trained, turns, counts)
            if not trained[1:].any():
                raise RowRejected(*self._nothing_trained(cut, len(tokens.starts)))
            return ids, trained, cut, plan

        pairs = ((i, (plan, enc)) for (i, plan), enc in zip(plans, encodings, strict=True))
        kept = encode_rows(pairs, one_row, rejected, dropped)
        # A conversation is written whole or not at all: one rejected turn row rejects it.
        rejected = sorted({i: (i, r, m) for i, r, m in reversed(rejected)}.values())
        dropped = sorted(set(dropped) - {i for i, _, _ in rejected})
        lost = {i for i, _, _ in rejected} | set(dropped)
        rows = [(i, *row) for i, row in kept if i not in lost]
        for _, ids, _, cut, plan in rows:
            counts["truncated"] += cut
            counts["reasoning_dropped"] += plan.reasoning_dropped
            counts["empty_reasoning"] += plan.empty_reasoning
            if plan.turn is not None:
                counts["turn_rows"] += 1
                counts["turn_tokens"] += len(ids)
        counts["conversations_by_turn"] = len({i for i, *_, plan in rows if plan.turn is not None})
        return chat_batch(rows, rejected, dropped, counts)

    def layouts(self, conversation: Conversation, where: str = "") -> list[ChatLayout]:
        """The rows :meth:`encode` makes of one conversation, for display (no truncation).

        Raises:
            RecordError: the conversation would be rejected (same reasons as :meth:`encode`).
        """
        try:
            plans = self.planner.plans(conversation, all_ends=True)
        except RowRejected as exc:
            raise RecordError(where, exc.reason, str(exc)) from None
        return [self._layout(conversation, plan, where) for plan in plans]

    def layout(self, conversation: Conversation, where: str = "") -> ChatLayout:
        """Render, tokenize and mask one conversation as one row, for display (no truncation).

        Raises:
            RecordError: the conversation would be rejected (same reasons as :meth:`encode`).
        """
        try:
            plan = (
                self.planner.plans(conversation, all_ends=True)[0]
                if self.turns != "each"
                else self.planner.whole(conversation, all_ends=True)
            )
        except RowRejected as exc:
            raise RecordError(where, exc.reason, str(exc)) from None
        return self._layout(conversation, plan, where)

    def _layout(self, conversation: Conversation, plan: Plan, where: str) -> ChatLayout:
        try:
            enc = self.tok.encode(plan.text, add_special_tokens=False)
            tokens = TokenSpans(plan.text, enc.offsets)
            trained, turns = self._flags(plan, tokens)
        except RowRejected as exc:
            raise RecordError(where, exc.reason, str(exc)) from None
        known = plan.turn is None and None not in plan.ends[:-1]
        ends = plan.ends if known else self.planner.display_ends(conversation, plan)
        bounds = [0, *(e if e is None else tokens.snap(e) for e in ends[:-1]), len(plan.text)]
        ranges = iter(turns)
        out = []
        for k, message in enumerate(conversation.messages[: len(plan.trained)]):
            a, b = bounds[k], bounds[k + 1]
            chars = None if a is None or b is None else (a, b)
            out.append(ChatTurn(k, message["role"], chars, next(ranges, None) if plan.trained[k] else None))
        ids = np.asarray(enc.ids, dtype=np.int32)
        reasoning = [
            r for k in plan.spans if plan.trained[k] for r in [self._think_tokens(plan, tokens, k)] if r
        ]
        return ChatLayout(plan.text, ids, tokens.offsets, trained, out, plan.turn, reasoning)

    # -- tokens -----------------------------------------------------------------------------------

    def _flags(self, plan: Plan, tokens: TokenSpans) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Per-token trained flags, and the token range of each trained message."""
        trained = np.zeros(len(tokens.starts), dtype=bool)
        turns = []
        plan.empty_reasoning = 0
        for k, (start, end) in self._trained_chars(plan, tokens):
            t0, t1 = tokens.range(start, end, f"message {k}")
            trained[t0:t1] = True
            turns.append((t0, t1))
            found = think_span(plan.text, *plan.spans[k][:2]) if k in plan.spans else None
            if found is not None:
                plan.empty_reasoning += found[2]
                think = self._think_tokens(plan, tokens, k)
                if think is not None and not self.train_reasoning:
                    trained[slice(*think)] = False  # the think block stays as context; the answer is trained
        if plan.generation is not None:
            self._check_generation(plan, tokens, trained)
        return trained, turns

    def _think_tokens(self, plan: Plan, tokens: TokenSpans, k: int) -> tuple[int, int] | None:
        """Tokens ``[a, b)`` wholly inside the think block of assistant turn k, markers included."""
        start, end, _ = plan.spans[k]
        found = think_span(plan.text, start, end)
        if found is None:
            return None
        a = int(np.searchsorted(tokens.starts, found[0], side="left"))
        b = int(np.searchsorted(tokens.ends, found[1], side="right"))
        return (a, b) if b > a else None

    def _trained_chars(self, plan: Plan, tokens: TokenSpans) -> list[tuple[int, tuple[int, int]]]:
        if self.train_on != "all":
            return [(k, self._span_chars(plan, tokens, k)) for k, on in enumerate(plan.trained) if on]
        known = [e for e in plan.ends[:-1] if e is not None]
        if len(known) < len(plan.ends) - 1:  # _plan let this through only if every message is trained
            return [(0, (0, len(plan.text)))]
        bounds = [0, *(tokens.snap(e) if soft else e for e, soft in zip(known, plan.soft, strict=False))]
        bounds.append(len(plan.text))
        return [(k, (bounds[k], bounds[k + 1])) for k, on in enumerate(plan.trained) if on]

    def _span_chars(self, plan: Plan, tokens: TokenSpans, k: int) -> tuple[int, int]:
        """An assistant message's trained characters.

        Whitespace after its end marker is not trained, nor what the template writes after the
        last message unless that is the EOS.
        """
        start, end, content_end = plan.spans[k]
        if plan.soft[k]:
            end = tokens.snap(end)  # the common prefix ran into the next header's first characters
        if k == len(plan.ends) - 1 and plan.text[end:].strip() == self.info.eos_token:
            end = len(plan.text)  # the template closes the conversation with EOS: the model stops
        trimmed = start + len(plan.text[start:end].rstrip())
        return start, max(trimmed, content_end)

    def _check_generation(self, plan: Plan, tokens: TokenSpans, trained: np.ndarray) -> None:
        """Our assistant mask must equal transformers' mask from the {% generation %} blocks."""
        ours = np.zeros_like(trained)
        for k in plan.spans:
            ours[slice(*tokens.range(*self._span_chars(plan, tokens, k), f"message {k}"))] = True
        theirs = np.zeros_like(trained)
        for start, end in plan.generation or []:  # every token overlapping a block, as transformers
            t0 = int(np.searchsorted(tokens.ends, start, side="right"))
            theirs[t0 : max(t0, int(np.searchsorted(tokens.starts, end, side="left")))] = True
        differ = np.flatnonzero(ours != theirs)
        if len(differ):
            t = int(differ[0])
            a, b = tokens.offsets[t]
            raise RowRejected(
                "generation_mask_mismatch",
                f"{len(differ)} token(s) differ from the template's {{% generation %}} mask, first token {t} "
                f"({plan.text[a:b]!r}), which the tags {'do' if theirs[t] else 'do not'} mark",
            )

    def _truncate(
        self, ids: np.ndarray, trained: np.ndarray, turns, counts
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        limit, policy = self.options.max_length, self.options.truncation
        if limit is None or len(ids) <= limit:
            return ids, trained, False
        if policy == TRUNCATE_DROP:
            raise RowDropped()
        if policy == TRUNCATE_TARGET:  # keep the start; a turn across the cut goes whole
            cut = limit
            for t0, t1 in turns:
                cut = t0 if t0 < cut < t1 else cut
            counts["turns_dropped"] += sum(t1 > cut for _, t1 in turns)
            return ids[:cut], trained[:cut], True
        head = 1 if self.bos is not None and ids[0] == self.bos else 0  # keep the template's BOS
        cut = len(ids) - (limit - head)
        for t0, t1 in turns:
            cut = t1 if t0 < cut < t1 else cut
        counts["turns_dropped"] += sum(t0 < cut for t0, _ in turns)
        keep = np.r_[0:head, cut : len(ids)]
        return ids[keep], trained[keep], True

    def _nothing_trained(self, cut: bool, n_tokens: int) -> tuple[str, str]:
        if cut:
            return (
                "turn_truncated",
                f"the row is {n_tokens} tokens; with --max-length {self.options.max_length} no whole trained "
                "turn fits, and a turn is never trained in part (raise --max-length)",
            )
        return "no_trained_token", "no token is trained (the only trained text is the row's first token)"
