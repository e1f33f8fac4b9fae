"""Chat templates: loading, the sandbox they render in, and what they tell us about themselves.

A chat template is Jinja from a model repository, so it is untrusted code. It is rendered in a
sandbox with the globals and filters transformers gives it, so the text equals
``tokenizer.apply_chat_template(messages, tokenize=False)``. Templates come from the tokenizer
(``tokenizer_config.json`` or ``chat_template.jinja``), from ``configs/chat/*.jinja`` (shipped) or
from a file. :class:`ChatTemplate` also records the spans of ``{% generation %}`` blocks, the
control strings a shipped template lists as its markers, and a sha256 for the manifest.

Which tokens a conversation trains is worked out from these renders in :mod:`sftprep.chat.planner` and :mod:`sftprep.chat.encoder`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sftprep.errors import TemplateError
from sftprep.templates import configs_dir
from sftprep.tokenizer import TokenizerInfo

TOKENIZER_TEMPLATE = "tokenizer"  # the spec that names the tokenizer's own template

_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")
_MARKERS = re.compile(r"^\s*markers:(.*)$", re.MULTILINE)
# The keys transformers passes from tokenizer.special_tokens_map.
_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")


# --- the sandbox -------------------------------------------------------------------------------
# Chat templates come from model repositories: untrusted code. The environment is the one
# transformers builds (utils/chat_template_utils.py), so that renders are identical.


class _GenerationTracker(Extension):
    """``{% generation %}...{% endgeneration %}``: records the character span of its output."""

    tags = {"generation"}  # noqa: RUF012 - jinja's own class attribute

    def __init__(self, environment: jinja2.Environment):
        super().__init__(environment)
        self.blocks: list[str] | None = None
        self.spans: list[tuple[int, int]] = []

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_mark"), [], [], body).set_lineno(lineno)

    def _mark(self, caller: Any) -> str:
        text = caller()
        if self.blocks is not None:  # only while tracking: rendered output so far is in blocks
            start = sum(map(len, self.blocks))
            self.spans.append((start, start + len(text)))
        return text


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    # transformers replaces jinja's tojson, which HTML-escapes <, > and &.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _TemplateDict:
    """``dict(...)`` for templates, without the class's attributes to climb out through."""

    def __call__(self, *args, **kwargs):
        return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs):
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
    """``namespace(...)`` that refuses underscore names (a way into CPython internals)."""

    def __init__(*args, **kwargs):
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _TemplateNamespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
        _TemplateNamespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"namespace attribute {name!r} starts with an underscore")


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTracker, loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals.update(
        raise_exception=_raise_exception,
        strftime_now=_strftime_now,
        dict=_TemplateDict(),
        namespace=_TemplateNamespace,
    )
    return env


# --- templates ---------------------------------------------------------------------------------


class ChatTemplate:
    """A compiled chat template.

    Attributes:
        name: ``tokenizer``, a shipped name (``chatml``) or the file's path.
        source: the Jinja text (hashed into the manifest).
        markers: control strings the template writes, for ``--markers special`` (shipped
            templates list them in their header; empty otherwise).

    Raises:
        TemplateError: the text is not valid Jinja, or includes/imports other templates.
    """

    def __init__(self, source: str, name: str):
        self.name = name
        self.source = source
        self._env = _environment()
        try:
            tree = self._env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{name}:{exc.lineno}: invalid chat template: {exc.message}") from None
        if any(True for _ in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends))):
            raise TemplateError(f"{name}: a chat template may not include, import or extend other files")
        self._names = {node.name for node in tree.find_all(nodes.Name)}
        self._template = self._env.from_string(tree)
        self._tracker = next(e for e in self._env.extensions.values() if isinstance(e, _GenerationTracker))
        header = re.match(r"\s*\{#-?(.*?)-?#\}", source, re.DOTALL)
        found = _MARKERS.search(header.group(1)) if header else None
        self.markers = tuple(found.group(1).split()) if found else ()

    def __reduce__(self):
        # A compiled template does not pickle; rebuilding it from the text does (spawned workers).
        return ChatTemplate, (self.source, self.name)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()

    @property
    def has_generation_tags(self) -> bool:
        return bool(_GENERATION_TAG.search(self.source))

    @property
    def uses_tools(self) -> bool:
        return "tools" in self._names

    @property
    def uses_tool_calls(self) -> bool:
        """True when the template reads an assistant message's ``tool_calls``."""
        return "tool_calls" in self.source

    @property
    def reads_clock(self) -> bool:
        """True when the template calls ``strftime_now``: its output depends on the date."""
        return "strftime_now" in self._names

    def render(
        self,
        messages: Sequence[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        variables: dict[str, Any] | None = None,
    ) -> str:
        """Render like ``apply_chat_template(..., tokenize=False)``.

        Args:
            messages: the messages (``Conversation.messages``).
            tools: tool schemas, or None.
            add_generation_prompt: end with the header that starts an assistant turn.
            variables: more template variables: the special tokens (:func:`special_tokens`).

        Raises:
            TemplateError: the sandbox refused an operation (the template is unsafe).
            jinja2.TemplateError and others: the template failed on this conversation.
        """
        with self._sandboxed():
            return self._template.render(_context(messages, tools, add_generation_prompt, variables))

    def generation_spans(
        self,
        messages: Sequence[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        variables: dict[str, Any] | None = None,
    ) -> tuple[str, list[tuple[int, int]]]:
        """Render and return the character spans of the ``{% generation %}`` blocks."""
        blocks: list[str] = []
        self._tracker.blocks, self._tracker.spans = blocks, []
        try:
            with self._sandboxed():
                for block in self._template.generate(_context(messages, tools, False, variables)):
                    blocks.append(block)  # the tracker measures where a span starts from these
            return "".join(blocks), self._tracker.spans
        finally:
            self._tracker.blocks = None

    @contextlib.contextmanager
    def _sandboxed(self) -> Iterator[None]:
        """Name the template when the sandbox refuses one of its operations."""
        try:
            yield
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(
                f"{self.name}: the sandbox refused an operation of the template: {exc}"
            ) from None


def _context(
    messages: Sequence[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    add_generation_prompt: bool,
    variables: dict[str, Any] | None,
) -> dict[str, Any]:
    """The variables a template renders with, as apply_chat_template passes them."""
    return {
        "messages": _aliased(messages),
        "tools": tools,
        "documents": None,
        "add_generation_prompt": add_generation_prompt,
        **(variables or {}),
    }


def _aliased(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """transformers (v5) copies a message's reasoning under every name templates read it by."""
    out = []
    for m in messages:
        reasoning = next((m[k] for k in _REASONING_KEYS if m.get(k) is not None), None)
        out.append(m if reasoning is None else {"thinking": reasoning, **m, "reasoning_content": reasoning})
    return out


def shipped_chat_templates() -> dict[str, Path]:
    """Names of the shipped chat templates (``configs/chat/*.jinja``) and their files."""
    return {p.stem: p for p in sorted((configs_dir() / "chat").glob("*.jinja"))}


def _tokenizer_folder(info: TokenizerInfo) -> Path | None:
    path = Path(info.name).expanduser()
    return path if path.is_dir() else path.parent if path.is_file() else None


def _own_template(info: TokenizerInfo, which: str | None) -> tuple[str, str] | None:
    """The tokenizer's own template (name, text): tokenizer_config.json or chat_template.jinja."""
    value = info.config.get("chat_template")
    if isinstance(value, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        text = named.get(which or "default")
        return (f"{TOKENIZER_TEMPLATE}:{which or 'default'}", text) if isinstance(text, str) else None
    if isinstance(value, str) and which is None:
        return TOKENIZER_TEMPLATE, value
    folder = _tokenizer_folder(info)
    if which is None and folder is not None and (folder / "chat_template.jinja").is_file():
        return TOKENIZER_TEMPLATE, (folder / "chat_template.jinja").read_text(encoding="utf-8")
    return None


def load_chat_template(spec: str | None, info: TokenizerInfo | None = None) -> ChatTemplate:
    """Load a chat template.

    Args:
        spec: None or ``"tokenizer"`` for the tokenizer's own template; ``"tokenizer:NAME"``
            for one of several named templates in tokenizer_config.json; a shipped template's
            name (``chatml``, ``llama3``, ``mistral-inst``, ``phi3``); or a path to a Jinja file.
        info: the tokenizer (needed for its own template).

    Raises:
        TemplateError: no such template, or it does not compile.
    """
    shipped = shipped_chat_templates()
    if spec is None or spec == TOKENIZER_TEMPLATE or spec.startswith(TOKENIZER_TEMPLATE + ":"):
        which = spec.partition(":")[2] or None if spec else None
        own = _own_template(info, which) if info is not None else None
        if own is None:
            tokenizer = info.name if info is not None else "the tokenizer"
            raise TemplateError(
                f"{tokenizer} has no chat template{f' named {which!r}' if which else ''}; choose a "
                f"shipped one ({', '.join(shipped)}) or a .jinja file with --chat-template"
            )
        return ChatTemplate(own[1], own[0])
    path = shipped.get(spec) or Path(spec).expanduser()
    if not path.is_file():
        raise TemplateError(
            f"unknown chat template '{spec}': not a shipped one ({', '.join(shipped)}), "
            f"'{TOKENIZER_TEMPLATE}', nor a file"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{path}: cannot read chat template: {exc}") from None
    return ChatTemplate(text, spec if spec in shipped else str(path))


def special_tokens(info: TokenizerInfo) -> dict[str, str]:
    """The special-token variables a template sees, as transformers passes them.

    sftprep's bos/eos/pad win (the EOS may come from ``--eos`` or be inferred); unk, sep, cls
    and mask come from tokenizer_config.json. Tokens that are not set are left out, so a
    template's ``bos_token is defined`` test behaves as with transformers.
    """
    out: dict[str, str] = {}
    for key in _SPECIAL_KEYS:
        value = info.config.get(key)
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str) and value:
            out[key] = value
    for key, value in (
        ("bos_token", info.bos_token),
        ("eos_token", info.eos_token),
        ("pad_token", info.pad_token),
    ):
        if value:
            out[key] = value
    return out
