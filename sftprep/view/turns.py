"""Chat rows' messages: which message, and which role, each token of a row belongs to.

Built rows do not store roles. To show them exactly, a chat example's source
record (``source_file``:``source_line``) is read again, turned into a
conversation and rendered by the build's own chat transform (bound from the
manifest's config as the build bound it), and :meth:`ChatEncoder.layout
<sftprep.chat.ChatEncoder.layout>` says where each message sits in the
rendered text. The row's ids must then equal the layout's ids: all of them, or
what truncation kept (the start, or the end after an optional BOS). When they
do not (the file or the template changed since the build), or the file cannot
be read, the example is shown without roles and the reason is said once.

A preview has its records and its transform in memory and needs none of this.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from sftprep.chat import ChatLayout
from sftprep.chat.template import ChatTemplate
from sftprep.config import BuildConfig
from sftprep.errors import SftprepError
from sftprep.readers import STDIN_NAME, InputFile, Record
from sftprep.tokenizer import load_tokenizer
from sftprep.transform import ChatTransform, bind_transform, resolve_templates
from sftprep.view.rows import Row, Turn
from sftprep.view.source import Rows

_CACHE = 4096  # records kept after a file is read past them: a packed row's examples are close together


class _RecordFile:
    """One input file's records, read forward; looking back reopens it (unless the record is cached)."""

    def __init__(self, name: str, config: BuildConfig):
        self.name = name
        self.config = config
        self.file: InputFile | None = None
        self.records: Iterator[Record] = iter(())
        self.last = 0
        self.cache: OrderedDict[int, Record] = OrderedDict()

    def get(self, number: int) -> Record | None:
        if number in self.cache:
            return self.cache[number]
        if self.file is None or number < self.last:
            self.close()
            self.file = InputFile(
                self.name, max_record_bytes=self.config.max_record_bytes, format=self.config.input_format
            )
            self.records, self.last = self.file.records(), 0
        for record in self.records:
            self.last = record.number
            self.cache[record.number] = record
            if len(self.cache) > _CACHE:
                self.cache.popitem(last=False)
            if record.number >= number:
                return record if record.number == number else None
        return None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


@dataclass
class Turns:
    """Finds the messages of chat rows.

    Args:
        transform: the chat transform that made the rows, or None to bind it
            from the first record read (``bind``).
        bind: makes the transform from a record (a build's manifest config).
        config: how to read the input files again (None: only ``records``).
        records: records in memory by ``(source, number)`` (a preview).
        log: called once per kind of problem.
    """

    transform: ChatTransform | None = None
    bind: Callable[[Record], ChatTransform] | None = None
    config: BuildConfig | None = None
    records: dict[tuple[str, int], Record] = field(default_factory=dict)
    log: Callable[[str], None] = lambda message: None
    _files: dict[str, _RecordFile] = field(default_factory=dict)
    _said: set[str] = field(default_factory=set)

    def apply(self, row: Row) -> None:
        """Fill in ``turns`` for each example of ``row`` whose messages can be found."""
        for example in row.examples:
            ids = row.input_ids[example.start : example.stop]
            found = self._find(example.source_file, example.source_line, ids)
            if found is not None:
                example.turns = [
                    Turn(t.message, t.role, t.start + example.start, t.stop + example.start) for t in found
                ]

    def close(self) -> None:
        """Close the input files opened to read records again."""
        for f in self._files.values():
            f.close()

    def _say(self, kind: str, message: str) -> None:
        if kind not in self._said:
            self._said.add(kind)
            self.log(message)

    def _find(self, source: str, line: int, ids: np.ndarray) -> list[Turn] | None:
        record = self._record(source, line)
        if record is None or self._transform(record) is None:
            return None
        assert self.transform is not None
        try:
            layouts = self.transform.encoder.layouts(self.transform.prepare(record), record.where)
        except SftprepError as exc:
            self._say(
                "layout", f"{record.where}: cannot render the record again ({exc}): shown without roles"
            )
            return None
        # A conversation written one row per turn (--turns) has several layouts: the row's is the
        # one whose ids it holds.
        layout = next((lay for lay in layouts if _align(np.asarray(ids), lay.ids) is not None), layouts[0])
        if any(t.chars is None for t in layout.turns):
            self._say("chars", f"{record.where}: the template does not say where each message ends: no roles")
            return None
        turns = _turns(layout, ids)
        if turns is None:
            self._say(
                "ids",
                f"{record.where}: the row's ids differ from its record rendered again (has the file, the "
                "tokenizer or the template changed since the build?): such rows are shown without roles",
            )
        return turns

    def _transform(self, record: Record) -> ChatTransform | None:
        """The chat transform, bound from the first record read; after a failure, no more tries."""
        if self.transform is None and self.bind is not None:
            bind, self.bind = self.bind, None
            try:
                self.transform = bind(record)
            except SftprepError as exc:
                self.config, self.records = None, {}  # read nothing more: no row can get its roles
                self.log(f"cannot render the chat records again ({exc}): chat rows are shown without roles")
        return self.transform

    def _record(self, source: str, line: int) -> Record | None:
        if (source, line) in self.records or self.config is None:
            return self.records.get((source, line))
        if source == STDIN_NAME:
            self._say(
                source, "rows built from stdin: their records cannot be read again, so no roles are shown"
            )
            return None
        try:
            found = self._files.setdefault(source, _RecordFile(source, self.config)).get(line)
        except SftprepError as exc:
            self._say(source, f"cannot read {source} again ({exc}): its chat rows are shown without roles")
            return None
        if found is None or found.error is not None:
            self._say(f"{source}:missing", f"{source}: no record {line} there any more: shown without roles")
            return None
        return found


def _turns(layout: ChatLayout, ids: np.ndarray) -> list[Turn] | None:
    """The messages of a row made from ``layout``, as token ranges of the row; None if the ids disagree."""
    where = _align(np.asarray(ids, dtype=np.int64), layout.ids.astype(np.int64))
    if where is None:
        return None
    ends = np.array([t.chars[1] for t in layout.turns if t.chars is not None])
    message = np.searchsorted(ends, layout.offsets[where, 0], side="right")  # the message holding each token
    message = np.minimum(message, len(layout.turns) - 1)
    cuts = np.flatnonzero(np.diff(message)) + 1
    out = []
    for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), len(where)], strict=True):
        turn = layout.turns[int(message[a])]
        out.append(Turn(turn.index, turn.role, a, b))
    return out


def _align(row: np.ndarray, whole: np.ndarray) -> np.ndarray | None:
    """Where each token of ``row`` is in ``whole``: all of it, its start, or its end after a kept BOS.

    ``[5, 6, 7]`` in ``[1, 5, 6, 7]`` -> ``[1, 2, 3]``; ``[1, 7]`` in ``[1, 5, 6, 7]`` -> ``[0, 3]``.
    """
    n, m = len(row), len(whole)
    if n > m:
        return None
    if np.array_equal(row, whole[:n]):  # whole, cut at the end (--truncation target), or a prefix
        return np.arange(n)
    for head in (0, 1):  # cut at the start (--truncation prompt), keeping the template's BOS
        if (
            head <= n
            and np.array_equal(row[:head], whole[:head])
            and np.array_equal(row[head:], whole[m - n + head :])
        ):
            return np.concatenate([np.arange(head), np.arange(m - n + head, m)])
    return None


def open_turns(
    rows: Rows, tokenizer: str | None = None, log: Callable[[str], None] | None = None
) -> Turns | None:
    """How to find the messages of a build's chat rows; None if the build is not of chat data.

    Args:
        rows: the build (its manifest says the template and the options).
        tokenizer: a tokenizer to render with instead of the build's (``--tokenizer``).
        log: called with each reason rows are shown without roles (once a reason).
    """
    say = log or (lambda message: None)
    if rows.turns is not None:
        return rows.turns
    manifest = rows.manifest or {}
    template = manifest.get("template") or {}
    if template.get("kind") != "chat":
        return None
    try:
        recorded = dict(manifest["config"])
        config = BuildConfig(**{**recorded, "inputs": tuple(recorded["inputs"]), "output": "-"})
    except (KeyError, TypeError) as exc:
        say(f"{rows.name}: the manifest's config cannot be read ({exc}): chat rows are shown without roles")
        return None

    def bind(record: Record) -> ChatTransform:
        info = load_tokenizer(tokenizer or config.tokenizer, eos=config.eos)
        _, spec = resolve_templates(config)
        bound = bind_transform(config, info, record, chat_spec=spec or template.get("name"))
        chat = bound.template
        if (
            not isinstance(bound.transform, ChatTransform)
            or not isinstance(chat, ChatTemplate)
            or chat.sha256 != template.get("sha256")
        ):
            raise _Changed(
                f"the chat template '{template.get('name')}' is not the one the build used (sha256)"
            )
        return bound.transform

    return Turns(bind=bind, config=config, log=say)


class _Changed(SftprepError):
    """The build cannot be reproduced: its template changed."""
