"""Where a conversation's turns sit in its rendered text: the plans :class:`~sftprep.chat.encoder.ChatEncoder` tokenizes.

A :class:`TurnPlanner` renders a conversation and its prefixes through the chat template and
finds, for each row it becomes (one, or one per trained turn under ``--turns each``), the
character span of every trained assistant turn (:class:`~sftprep.chat.spans.Plan`). The
encoder's module docstring says how the spans are found; a conversation that cannot be planned
exactly raises :class:`~sftprep.encode.RowRejected` with a reason code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sftprep.chat.formats import Conversation
from sftprep.chat.reasoning import answer_of, reasoning_of
from sftprep.chat.spans import Plan, common_prefix
from sftprep.chat.template import ChatTemplate, special_tokens
from sftprep.encode import RowRejected
from sftprep.errors import TemplateError
from sftprep.tokenizer import TokenizerInfo

# What a conversation that is not prefix-stable raises on the one-row path.
_UNSTABLE = ("template_not_prefix_stable", "span_not_found")


class TurnPlanner:
    """Renders conversations and locates their turns (see the module docstring).

    Args:
        info / template: the tokenizer (its special tokens and EOS) and the chat template.
        train_on / turns / max_rows / check_generation: as :class:`~sftprep.chat.encoder.ChatEncoder`
            takes them (already checked there).
    """

    def __init__(
        self,
        info: TokenizerInfo,
        template: ChatTemplate,
        train_on: str,
        turns: str,
        max_rows: int | None,
        check_generation: bool,
    ):
        self.info = info
        self.template = template
        self.train_on = train_on
        self.turns = turns
        self.max_rows = max_rows
        self.check_generation = check_generation
        self.variables = special_tokens(info)
        # Only tokens marked special are control tokens. Added tokens with special: false (Qwen3's
        # <think> and <tool_call>, whitespace runs, phi-3's </s>) are text the tokenizer maps to one id.
        added = info.tokenizer.get_added_tokens_decoder().values()
        controls = sorted({t.content for t in added if t.special}, key=len)
        self._markers = [c for c in reversed(controls) if c.strip()]  # longest first
        self._prompt: str | bool | None = False  # see _generation_prompt; False: not probed yet
        # (renders by (prefix length, generation prompt), the messages, the tools) while a
        # conversation is planned; see _render
        self._memo: tuple[dict[tuple[int, bool], str], Sequence[dict[str, Any]], Any] | None = None
        self._controls = re.compile("|".join(map(re.escape, reversed(controls)))) if controls else None

    def display_ends(self, conversation: Conversation, plan: Plan) -> list[int | None]:
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

    def plans(self, conversation: Conversation, all_ends: bool = False) -> list[Plan]:
        """The rows of one conversation: one, or one per trained turn (see ``TURNS``).

        ``all_ends``: find where every message ends, for display (see :meth:`whole`).
        """
        self._memo = ({}, conversation.messages, conversation.tools)
        try:
            return self._plans_of(conversation, all_ends)
        finally:
            self._memo = None

    def _plans_of(self, conversation: Conversation, all_ends: bool) -> list[Plan]:
        if self.turns == "each":
            plans = self._each(conversation)
        else:
            try:
                plans = [self.whole(conversation, all_ends)]
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

    def whole(self, conversation: Conversation, all_ends: bool = False) -> Plan:
        """One row of the whole conversation (the template must be prefix-stable for it).

        Where a message that is not the assistant's ends is rendered for only with ``all_ends``
        (inspect shows it) or when every message is trained (``train_on=all``): the masks do
        not read it, and the header of each assistant turn already proves that the messages
        before it render as the whole conversation shows them (:meth:`_header`).
        """
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
            if message["role"] != "assistant" and not all_ends and self.train_on != "all":
                self._check_rendered(message, k, full)
                ends.append(None)
                soft.append(False)
                continue
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
        self._check_rendered(message, k, full)
        if shorter is None or end is None:
            return None, True
        return end, end < len(shorter)

    def _check_rendered(self, message: dict[str, Any], k: int, full: str) -> None:
        core = answer_of(message)
        if core and core not in full:
            raise RowRejected(
                "message_not_rendered",
                f"message {k} ({message['role']}): its text is not in the rendered conversation "
                f"(the template '{self.template.name}' drops or rewrites it)",
            )

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
