"""The per-batch transform: records -> token rows -> labelled Arrow rows.

A transform holds everything a batch needs (template, tokenizer, options) and
nothing that changes between batches, so the build can run it in this process
or in worker processes or on Ray (:mod:`sftprep.engines`) and get the same rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sftprep.chat import ChatEncoder, ChatTemplate, load_chat_template, shipped_chat_templates
from sftprep.chat.formats import Conversation, detect_format, to_messages
from sftprep.encode import EncodedBatch, EncodeOptions, Encoder
from sftprep.errors import RecordError
from sftprep.labels import exploded_batches, schema_for, sequence_batch
from sftprep.readers import Record, settle
from sftprep.templates import (
    Renderer,
    Template,
    bind_template,
    detect_template,
    load_template,
    shipped_templates,
)
from sftprep.tokenizer import TokenizerInfo

if TYPE_CHECKING:
    from sftprep.config import BuildConfig


@dataclass
class Counts:
    """What a build did, as the manifest and summary report it."""

    records_read: int = 0
    examples_written: int = 0
    rows_written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    dropped_too_long: int = 0
    truncated: int = 0
    boundary_adjusted: int = 0
    eos_in_text: int = 0
    double_bos_removed: int = 0
    turns_dropped: int = 0
    # Chat (--turns, --train-reasoning): see ChatEncoder and docs/chat-families.md.
    conversations_by_turn: int = 0
    turn_rows: int = 0
    turn_tokens: int = 0
    reasoning_dropped: int = 0
    empty_reasoning: int = 0
    tokens: int = 0
    trained_tokens: int = 0

    def add(self, part: Counts) -> None:
        """Add another batch's counts (skips are counted by the build's reject handler)."""
        for key, value in asdict(part).items():
            if key != "skipped":
                setattr(self, key, getattr(self, key) + value)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["skipped"] = dict(sorted(self.skipped.items()))
        data["skipped_total"] = sum(self.skipped.values())
        return data


# What a build may also ask of each batch, beside its rows: a function of the batch's records
# and what each became (its prepared item, None if it was not rendered), run where the transform
# runs; its result travels back with the batch (``BatchResult.examples``). Recipes key their
# examples this way (:mod:`sftprep.recipe_scan`) instead of rendering every record twice.
ExampleKeyer = Callable[[list[Record], list[Any]], Any]


class Examples(Protocol):
    """What a build learns about every record beside its rows (``run_build(examples=...)``)."""

    @property
    def keyer(self) -> ExampleKeyer:
        """Runs with the transform: pickled to worker processes and Ray."""

    def add(self, found: Any) -> None:
        """One batch's ``keyer`` result, in the build's process, batches in input order."""


@dataclass
class BatchResult:
    batches: list[pa.RecordBatch]
    rejects: list[tuple[Record, RecordError]]
    counts: Counts
    examples: Any = None  # what the transform's ``keyer`` made of the batch, if it has one


class BatchTransform:
    """One batch of records -> Arrow rows + rejected records. Stateless between batches.

    Subclasses say how a record becomes an item (:meth:`prepare`) and how a
    batch of items becomes token rows (:meth:`encode`); labelling and the
    Arrow rows are the same for every kind of data.
    """

    def __init__(self, mode: str, labels: str, schema: pa.Schema):
        self.mode = mode
        self.labels = labels
        self.schema = schema
        self.keyer: ExampleKeyer | None = None  # set by a build that asks for it (see ExampleKeyer)

    def prepare(self, record: Record) -> Any:
        raise NotImplementedError

    def encode(self, items: list[Any]) -> EncodedBatch:
        raise NotImplementedError

    def __call__(self, records: list[Record]) -> BatchResult:
        records = settle(records)
        counts = Counts(records_read=len(records))
        errors: dict[int, RecordError] = {}
        items: list[Any] = []
        good: list[int] = []
        for i, record in enumerate(records):
            if record.error is not None:
                errors[i] = record.error
                continue
            try:
                items.append(self.prepare(record))
            except RecordError as exc:
                errors[i] = exc
                continue
            good.append(i)
        examples = None
        if self.keyer is not None:
            prepared: list[Any] = [None] * len(records)
            for i, item in zip(good, items, strict=True):
                prepared[i] = item
            examples = self.keyer(records, prepared)
        enc = self.encode(items)
        for j, reason, message in enc.rejected:
            i = good[j]
            errors[i] = RecordError(records[i].where, reason, message)
        counts.dropped_too_long = len(enc.dropped)
        for key, value in enc.counts.items():
            setattr(counts, key, value)
        kept = [records[good[j]] for j in enc.index.tolist()]
        sources = [r.source for r in kept]
        lines = np.fromiter((r.number for r in kept), dtype=np.int64, count=len(kept))
        if self.mode == "exploded":
            out = list(exploded_batches(enc, sources, lines, self.schema))
        else:
            out = [sequence_batch(enc, sources, lines, self.labels, self.schema)]
        counts.examples_written = len(enc)
        counts.rows_written = sum(b.num_rows for b in out)
        counts.tokens = int(enc.offsets[-1])
        counts.trained_tokens = _trained(out, self.mode)
        rejects = [(records[i], errors[i]) for i in sorted(errors)]
        return BatchResult(out, rejects, counts, examples)


class PairTransform(BatchTransform):
    """(prompt, target) pairs through a template and :class:`~sftprep.encode.Encoder`."""

    def __init__(self, renderer: Renderer, encoder: Encoder, mode: str, labels: str, schema: pa.Schema):
        super().__init__(mode, labels, schema)
        self.renderer = renderer
        self.encoder = encoder

    def prepare(self, record: Record) -> tuple[str, str]:
        return self.renderer.render(record.fields, record.where)

    def encode(self, items: list[tuple[str, str]]) -> EncodedBatch:
        return self.encoder.encode([p for p, _ in items], [t for _, t in items])


class ChatTransform(BatchTransform):
    """Conversations through a chat template and :class:`~sftprep.chat.ChatEncoder`."""

    def __init__(self, encoder: ChatEncoder, fields: dict[str, str], roles: dict[str, str],
                 mode: str, labels: str, schema: pa.Schema, system: str | None = None):  # fmt: skip
        super().__init__(mode, labels, schema)
        self.encoder = encoder
        self.fields = fields
        self.roles = roles
        self.system = system

    def prepare(self, record: Record) -> Conversation:
        conversation = to_messages(record.fields, record.where, field_map=self.fields, role_map=self.roles)
        if self.system is not None and conversation.roles[:1] != ["system"]:
            # A recipe source's `system`: added only to conversations that have none.
            conversation = replace(
                conversation,
                messages=({"role": "system", "content": self.system}, *conversation.messages),
                weights=(None, *conversation.weights),
            )
        return conversation

    def encode(self, items: list[Conversation]) -> EncodedBatch:
        return self.encoder.encode(items)


def _trained(batches: list[pa.RecordBatch], mode: str) -> int:
    """Trained tokens in a batch's rows (an exploded row trains exactly one)."""
    if mode == "exploded":
        return sum(b.num_rows for b in batches)
    return sum(int(pc.sum(b.column("num_trained_tokens")).as_py() or 0) for b in batches)


@dataclass
class Bound:
    """What :func:`bind_transform` decided: the transform and the template behind it."""

    transform: BatchTransform
    template: Template | ChatTemplate
    renderer: Renderer | None = None


def bind_transform(
    config: BuildConfig,
    info: TokenizerInfo,
    first: Record,
    schema: pa.Schema | None = None,
    template: Template | ChatTemplate | None = None,
    chat_spec: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Bound:
    """Choose the template for the data whose first good record is ``first``; build the transform.

    The build and ``sftprep inspect --preview`` both come through here, so a
    preview shows exactly the rows a build would write.

    Args:
        config: the build options.
        info: the tokenizer (markers may be added to it).
        first: the first record that parsed.
        schema: the unpacked row schema (default: from the config's mode and labels).
        template / chat_spec: what ``--template`` / ``--chat-template`` chose (see
            :func:`resolve_templates`); both None means: detect from ``first``.
        log: called with a line saying what was chosen.
    """
    log = log or (lambda message: None)
    schema = schema if schema is not None else schema_for(config.mode, config.labels)
    options = EncodeOptions(config.max_length, config.truncation, config.verify_prompts)
    add_markers = config.markers == "special"
    if chat_spec is not None or (template is None and _looks_like_chat(first, config)):
        chat = load_chat_template(chat_spec, info)
        how = "the tokenizer's own" if chat.name == "tokenizer" else "as chosen"
        log(f"chat data ({first.where}): chat template '{chat.name}' ({how}), train on {config.train_on}")
        if chat.reads_clock:
            log("warning: the chat template reads the clock: rows depend on the build date")
        if add_markers and chat.markers:
            info.add_special_tokens(list(chat.markers))
        encoder = ChatEncoder(
            info,
            chat,
            options,
            train_on=config.train_on,
            turns=config.turns,
            train_reasoning=config.train_reasoning in (True, "yes"),
            max_rows_per_conversation=config.max_rows_per_conversation,
        )
        if config.turns == "auto":
            log(
                "turns auto: one row per conversation where the chat template renders every turn as "
                "when it is the last, one row per trained turn where it does not (--turns)"
            )
        chat_transform = ChatTransform(
            encoder,
            dict(config.fields),
            dict(config.roles),
            config.mode,
            config.labels,
            schema,
            config.system,
        )
        return Bound(chat_transform, chat)
    if template is None:
        template = detect_template(first.fields, first.where)
        log(f"template '{template.name}' chosen from the fields of {first.where} ({', '.join(first.fields)})")
    assert isinstance(template, Template)
    renderer = bind_template(template, config.fields, config.variables, first.fields)
    if add_markers and template.markers:
        info.add_special_tokens(list(template.markers))
    renderer = renderer.with_control_tokens(info.control_tokens(), info.eos_token, info.bos_token)
    transform = PairTransform(renderer, Encoder(info, options), config.mode, config.labels, schema)
    return Bound(transform, template, renderer)


def resolve_templates(config: BuildConfig) -> tuple[Template | None, str | None]:
    """The pair template given with --template, or the chat template spec, or neither (detect)."""
    if config.chat_template is not None:
        return None, config.chat_template
    spec = config.template
    if spec is None:
        return None, None
    if spec not in shipped_templates() and (
        spec in shipped_chat_templates() or spec.endswith((".jinja", ".j2"))
    ):
        return None, spec
    return load_template(spec), None


def _looks_like_chat(first: Record, config: BuildConfig) -> bool:
    """A list of messages, or an alpaca record with a conversation history."""
    return detect_format(first.fields, config.fields) in ("messages", "sharegpt") or "history" in first.fields
