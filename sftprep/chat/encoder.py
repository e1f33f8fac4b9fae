"""Chat conversations -> token rows trained on the assistant's turns, for any chat template.

The template renders a conversation exactly as ``tokenizer.apply_chat_template(messages,
tokenize=False)`` does (:mod:`sftprep.chat_template`, whose names are importable from here too).
Which characters the model must write is found without trusting ``{% generation %}`` tags, by
rendering prefixes:

* an assistant turn starts where ``render(messages[:k], add_generation_prompt=True)`` ends -- the
  header (``<|im_start|>assistant\\n``) is the generation prompt, so it is never trained;
* it ends where ``render(messages[:k+1])`` stops agreeing with the whole conversation's render,
  so the end-of-turn marker (``<|im_end|>``, ``<|end|>``, ``</s>``) is trained, and for the last
  message whatever the template closes the conversation with (phi-3's EOS) too. Whitespace after
  the marker is not trained: the model stops at the marker and never writes it.

The full text is tokenized once, with offsets and ``add_special_tokens=False`` (the template writes
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

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from sftprep.chat.formats import Conversation
from sftprep.chat.reasoning import answer_of, reasoning_of, think_span
from sftprep.chat.spans import ChatBatch, ChatLayout, ChatTurn, Plan, TokenSpans, chat_batch, common_prefix
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
from sftprep.errors import ConfigError, RecordError, TemplateError
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

TRAIN_ON = ("assistant", "last", "all")
# How conversations become rows: ``conversation`` (one row, every turn as the whole render shows
# it), ``each`` (one row per trained turn, rendered as when it is the last), ``auto`` (one row
# where the template is prefix-stable for the conversation, ``each`` where it is not).
TURNS = ("auto", "conversation", "each")
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
# What a conversation that is not prefix-stable raises on the one-row path.
_UNSTABLE = ("template_not_prefix_stable", "span_not_found")

# Reason codes of rows rejected here (chat_formats.REASONS has those of bad records).
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
            :mod:`sftprep.chat_reasoning` says why templates differ).
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
        self.variables = special_tokens(info)
        self.tok = info.tokenizer
        self.bos = info.bos_id
        # Only tokens marked special are control tokens. Added tokens with special: false (Qwen3's
        # <think> and <tool_call>, whitespace runs, phi-3's </s>) are text the tokenizer maps to one id.
        added = self.tok.get_added_tokens_decoder().values()
        controls = sorted({t.content for t in added if t.special}, key=len)
        self._markers = [c for c in reversed(controls) if c.strip()]  # longest first
        self._prompt: str | bool | None = False  # see _generation_prompt; False: not probed yet
        # (renders by (prefix length, generation prompt), the messages, the tools) while a
        # conversation is planned; see _render
        self._memo: tuple[dict[tuple[int, bool], str], Sequence[dict[str, Any]], Any] | None = None
        self._controls = re.compile("|".join(map(re.escape, reversed(controls)))) if controls else None

    def encode(self, conversations: Sequence[Conversation]) -> ChatBatch:
        """Encode a batch; problems with one conversation become ``rejected``/``dropped`` entries."""
        rejected: list[tuple[int, str, str]] = []
        dropped: list[int] = []
        planned = encode_rows(enumerate(conversations), self._plans, rejected, dropped)
        plans = [(i, plan) for i, several in planned for plan in several]  # conversation, then turn order
        encodings = self.tok.encode_batch([p.text for _, p in plans], add_special_tokens=False)
        counts = dict.fromkeys(COUNTS, 0)

        def one_row(planned: tuple[Plan, Any]) -> tuple[np.ndarray, np.ndarray, bool, Plan]:
            plan, enc = planned
            tokens = TokenSpans(plan.text, enc.offsets)
            trained, turns = self._flags(plan, tokens)
            ids, trained, cut = self._truncate(np.asarray(enc.ids, dtype=np.int32), trained, turns, counts)
            if not trained[1:].any():
                raise RowRejected(*self._nothing_trained(cut, len(enc.ids)))
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
            plans = self._plans(conversation)
        except RowRejected as exc:
            raise RecordError(where, exc.reason, str(exc)) from None
        return [self._layout(conversation, plan, where) for plan in plans]

    def layout(self, conversation: Conversation, where: str = "") -> ChatLayout:
        """Render, tokenize and mask one conversation as one row, for display (no truncation).

        Raises:
            RecordError: the conversation would be rejected (same reasons as :meth:`encode`).
        """
        try:
            plan = self._plans(conversation)[0] if self.turns != "each" else self._plan(conversation)
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
        ends = plan.ends if known else self._display_ends(conversation, plan)
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

    def _display_ends(self, conversation: Conversation, plan: Plan) -> list[int | None]:
        """Where each message of a row that is not prefix-stable ends, for display only (the roles
        inspect shows): the render that stops after it agrees with the row up to there, and its
        answer and end marker, if the template rewrote it, follow."""
        messages, tools, text = list(conversation.messages), conversation.tools, plan.text
        ends: list[int | None] = []
        at = 0
        for j in range(len(plan.trained) - 1):
            try:
                end = common_prefix(self._render(messages[: j + 1], tools, False), text)
            except RowRejected:
                return [*ends, *plan.ends[len(ends) :]]
            core = answer_of(messages[j])
            found = text.find(core, at) if core else -1
            if found >= 0 and found + len(core) > end:
                end = found + len(core)
            if messages[j]["role"] == "assistant" and not text[:end].rstrip().endswith(tuple(self._markers)):
                # a turn the template rewrote (tool calls after a dropped think block): to its marker
                marks = [(i, m) for m in self._markers for i in [text.find(m, end)] if i >= 0]
                end = min(marks)[0] + len(min(marks)[1]) if marks else end
            ends.append(end)
            at = end
        return [*ends, plan.ends[-1]]

    # -- rendering and locating -------------------------------------------------------------------

    def _render(self, messages: Sequence[dict[str, Any]], tools, generation_prompt: bool) -> str:
        # The renders of one conversation's prefixes are kept while it is planned: auto's
        # per-turn rows need the very renders its one-row attempt made.
        memo: dict[tuple[int, bool], str] | None = None
        if self._memo is not None and tools is self._memo[2]:
            whole = self._memo[1]
            if len(messages) <= len(whole) and all(a is b for a, b in zip(messages, whole, strict=False)):
                memo = self._memo[0]
        key = (len(messages), generation_prompt)
        if memo is not None and key in memo:
            return memo[key]
        try:
            text = self.template.render(messages, tools, generation_prompt, self.variables)
            if memo is not None:
                memo[key] = text
            return text
        except TemplateError:
            raise
        except Exception as exc:  # raise_exception, undefined values, type errors: this data
            raise RowRejected(
                "template_error", f"the chat template failed: {type(exc).__name__}: {exc}"
            ) from None

    def _plans(self, conversation: Conversation) -> list[Plan]:
        """The rows of one conversation: one, or one per trained turn (see ``TURNS``)."""
        self._memo = ({}, conversation.messages, conversation.tools)
        try:
            return self._plans_of(conversation)
        finally:
            self._memo = None

    def _plans_of(self, conversation: Conversation) -> list[Plan]:
        if self.turns == "each":
            plans = self._each(conversation)
        else:
            try:
                plans = [self._plan(conversation)]
            except RowRejected as exc:
                if exc.reason not in _UNSTABLE or self.train_on == "all":
                    raise
                if self.turns == "conversation":
                    plans = [self._as_rendered(conversation)]
                else:
                    plans = self._each(conversation)
        for plan in plans:  # reasoning in the data that the row does not show
            plan.reasoning_dropped = sum(
                bool(r) and r not in plan.text[s:e]
                for k, (s, e, _) in plan.spans.items()
                if plan.trained[k]
                for r in [reasoning_of(conversation.messages[k])]
            )
        return plans

    def _each(self, conversation: Conversation) -> list[Plan]:
        """One row per trained assistant turn k: ``messages[:k+1]`` rendered, only turn k trained."""
        if self.train_on == "all":
            raise RowRejected(
                "template_not_prefix_stable",
                "the template renders earlier turns differently once later ones follow, and "
                "train_on=all needs one row per conversation (use --train-on assistant)",
            )
        self._check_text(conversation)
        chosen = [k for k, on in enumerate(self._trained_messages(conversation)) if on]
        if self.max_rows is not None and len(chosen) > self.max_rows:
            raise RowRejected(
                "too_many_turn_rows",
                f"{len(chosen)} trained turns would become {len(chosen)} rows, more than "
                f"max_rows_per_conversation={self.max_rows} (raise --max-rows-per-conversation)",
            )
        messages, tools = list(conversation.messages), conversation.tools
        plans = []
        for k in chosen:
            part = messages[: k + 1]
            full = self._render(part, tools, False)
            end, soft = self._message_end(part, k, tools, full, need=True)
            span = self._assistant_span(part, k, tools, full, end)
            only = [j == k for j in range(k + 1)]
            ends: list[int | None] = [None] * k
            plans.append(Plan(full, only, [*ends, end], [False] * k + [soft], {k: span}, turn=k))
        return plans

    def _as_rendered(self, conversation: Conversation) -> Plan:
        """One row for a template that is not prefix-stable: each assistant turn as the whole
        render shows it (earlier turns without their reasoning).

        A turn starts where the generation prompt of the messages before it ends, and ends
        with the first end-of-turn marker after its answer: the control token that ends the
        turn when it is rendered last (``<|im_end|>``), else the EOS.
        """
        messages, tools = list(conversation.messages), conversation.tools
        self._check_text(conversation)
        trained = self._trained_messages(conversation)
        full = self._render(messages, tools, False)
        ends: list[int | None] = [None] * len(messages)
        spans: dict[int, tuple[int, int, int]] = {}
        for k, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            header = self._header(messages, k, tools, full)
            core = answer_of(message)
            last = self._render(messages[: k + 1], tools, False).rstrip()
            eos = next((m for m in self._markers if last.endswith(m)), self.info.eos_token)
            found = full.find(core, len(header)) if core else len(header)
            close = full.find(eos, found + len(core)) if eos and found >= 0 else -1
            if close < 0:
                raise RowRejected(
                    "span_not_found",
                    f"message {k} (assistant): its text and the end-of-turn marker {eos!r} are not after "
                    f"its header (ending at character {len(header)})",
                )
            ends[k] = close + len(eos or "")
            spans[k] = (len(header), close + len(eos or ""), found + len(core))
        return Plan(full, trained, ends, [False] * len(messages), spans)

    def _plan(self, conversation: Conversation) -> Plan:
        messages = list(conversation.messages)
        if not messages:
            raise RowRejected("empty_conversation", "the conversation has no message")
        self._check_text(conversation)
        trained = self._trained_messages(conversation)
        tools = conversation.tools
        full = self._render(messages, tools, False)
        ends: list[int | None] = []
        soft: list[bool] = []
        spans: dict[int, tuple[int, int, int]] = {}
        for k, message in enumerate(messages):
            end = self._message_end(messages, k, tools, full, need=message["role"] == "assistant")
            ends.append(end[0])
            soft.append(end[1])
            if message["role"] == "assistant":
                spans[k] = self._assistant_span(messages, k, tools, full, end[0])
        if self.train_on == "all" and not all(trained) and None in ends:
            raise RowRejected(
                "span_not_found", "cannot tell where each message ends: a prefix does not render"
            )
        plan = Plan(full, trained, ends, soft, spans)
        if self.check_generation:
            text, plan.generation = self.template.generation_spans(messages, tools, self.variables)
            if text != full:  # only a template that reads the clock can do this
                raise RowRejected(
                    "template_not_prefix_stable", "the template rendered the conversation twice differently"
                )
        return plan

    def _check_text(self, conversation: Conversation) -> None:
        if conversation.tools and not self.template.uses_tools:
            raise RowRejected(
                "tools_not_rendered",
                f"the conversation has tools but the chat template '{self.template.name}' never reads "
                "'tools': the model would call functions it was never shown (use a template with tool "
                "support, or ignore the tools with --field tools=)",
            )
        calls = next((k for k, m in enumerate(conversation.messages) if m.get("tool_calls")), None)
        if calls is not None and not self.template.uses_tool_calls:
            raise RowRejected(
                "tools_not_rendered",
                f"message {calls} (assistant) calls a tool but the chat template '{self.template.name}' "
                "never reads 'tool_calls': the trained turn would not show the call",
            )
        if self._controls is None:
            return
        for k, message in enumerate(conversation.messages):
            found = self._controls.search(message["content"])
            if found:
                raise RowRejected(
                    "control_token_in_text",
                    f"message {k} ({message['role']}) contains the special token {found.group(0)!r}, "
                    "which would be tokenized as a control token, not as text",
                )

    def _trained_messages(self, conversation: Conversation) -> list[bool]:
        roles, weights = conversation.roles, conversation.weights
        if self.train_on == "all":
            trained = [w is not False for w in weights]
        else:
            chosen = [k for k, role in enumerate(roles) if role == "assistant"]
            chosen = chosen[-1:] if self.train_on == "last" else chosen
            trained = [k in chosen and weights[k] is not False for k in range(len(roles))]
        for k, message in enumerate(conversation.messages):
            empty = not message["content"].strip() and not message.get("tool_calls")
            if trained[k] and empty and roles[k] == "assistant":
                raise RowRejected(
                    "empty_assistant_turn", f"message {k} (assistant) is empty and would be trained"
                )
        if not any(trained):
            raise RowRejected(
                "no_trained_token",
                f"nothing to train with train_on={self.train_on}: no assistant message, or weight 0 on all",
            )
        return trained

    def _message_end(self, messages, k: int, tools, full: str, need: bool) -> tuple[int | None, bool]:
        """(end of message k's text in ``full``, is it a common-prefix estimate?).

        The end is where the render that stops after message k stops agreeing with the render
        that goes on: the whole conversation or, after the last message, the generation
        prompt. What follows it in the shorter render is the template's closing text.
        """
        message = messages[k]
        core = answer_of(message)
        last = k == len(messages) - 1
        shorter: str | None = full
        try:
            if last:
                longer = self._with_prompt(messages, tools, full)
            else:
                shorter, longer = self._render(messages[: k + 1], tools, False), full
        except RowRejected:
            if need and not last:
                raise
            # Some templates refuse some prefixes (one with no user message); after the last
            # message, without a generation prompt to compare with, the closing stays with it.
            shorter, longer = (full, full) if last else (None, full)
        end = None if shorter is None else common_prefix(shorter, longer)
        if need and not last and shorter is not None and end is not None:
            # The turn as the whole conversation shows it must be the turn as the model writes
            # it when it is the last one (Qwen3 adds a think block to that one only).
            alone = common_prefix(shorter, self._with_prompt(messages[: k + 1], tools, shorter))
            if end < alone:
                raise RowRejected(
                    "template_not_prefix_stable",
                    f"message {k} ({message['role']}) renders differently once later messages follow: "
                    f"{shorter[end : end + 40]!r} becomes {longer[end : end + 40]!r} (the template "
                    "rewrites earlier turns)",
                )
        # The message's text must lie in the part both renders share; if it is only beyond
        # it, the longer render changed it.
        if shorter is not None and end is not None and core in shorter and shorter.rfind(core, 0, end) < 0:
            raise RowRejected(
                "template_not_prefix_stable",
                f"message {k} ({message['role']}) renders differently once later messages follow: "
                f"{shorter[end : end + 40]!r} becomes {longer[end : end + 40]!r} (the template rewrites "
                "earlier turns, so no mask is exact)",
            )
        if core and core not in full:
            raise RowRejected(
                "message_not_rendered",
                f"message {k} ({message['role']}): its text is not in the rendered conversation "
                f"(the template '{self.template.name}' drops or rewrites it)",
            )
        if shorter is None or end is None:
            return None, True
        return end, end < len(shorter)

    def _with_prompt(self, messages, tools, rendered: str) -> str:
        """``render(messages, add_generation_prompt=True)``, given ``rendered`` without it.

        Most templates write the generation prompt after everything else: then it is appended
        instead of rendering again (one render less per turn). Templates that close a
        conversation differently without it (phi-3's EOS) are rendered.
        """
        prompt = self._generation_prompt()
        return rendered + prompt if prompt is not None else self._render(messages, tools, True)

    def _generation_prompt(self) -> str | None:
        """The text ``add_generation_prompt`` appends, when it is only appended (probed once)."""
        if self._prompt is False:
            probes = [
                [{"role": "user", "content": "Hi"}],
                [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
                [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"},
                 {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}],
            ]  # fmt: skip
            found: set[str | None] = set()
            for probe in probes:
                try:
                    plain, prompted = self._render(probe, None, False), self._render(probe, None, True)
                except RowRejected:
                    found.add(None)
                    continue
                found.add(prompted[len(plain) :] if prompted.startswith(plain) else None)
            only = found.pop() if len(found) == 1 else None
            self._prompt = only if only else None  # an empty prompt tells nothing: render
        return self._prompt if isinstance(self._prompt, str) else None

    def _header(self, messages, k: int, tools, full: str) -> str:
        """The text before assistant turn k: the messages before it with the generation prompt."""
        header = self._render(messages[:k], tools, True)
        if not full.startswith(header):
            at = common_prefix(header, full)
            raise RowRejected(
                "template_not_prefix_stable",
                f"message {k} (assistant): the conversation before it with the generation prompt renders "
                f"{header[at : at + 40]!r} where the whole conversation has {full[at : at + 40]!r}",
            )
        return header

    def _assistant_span(self, messages, k: int, tools, full: str, end: int | None) -> tuple[int, int, int]:
        start = len(self._header(messages, k, tools, full))
        assert end is not None, "an assistant message's end is always rendered"
        core = answer_of(messages[k])
        found = full.find(core, start, end) if core else start
        if found < 0 or end <= start:
            raise RowRejected(
                "span_not_found",
                f"message {k} (assistant): its text is not between its header (ending at character "
                f"{start}) and the end of its turn (character {end})",
            )
        return start, end, found + len(core)

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
