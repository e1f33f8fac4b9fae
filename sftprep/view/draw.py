"""Drawing helpers: colour or plain markers, line folding, rules and fixed-width cells."""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text


@dataclass(frozen=True)
class Look:
    """How to draw: colour (a terminal) or plain text with ``[[`` ``]]`` markers, and the width."""

    colour: bool = False
    width: int = 80

    def style(self, name: str, trained: bool = False) -> str:
        """A rich style for a part of the view ("" when plain); trained text gets a green background."""
        if not self.colour:
            return ""
        fg = {
            "prompt": "dim",
            "text": "black",
            "special": "bold magenta",
            "escape": "cyan",
            "header": "bold blue",
            "subheader": "blue",
            "warn": "bold red",
            "bar": "green",
            "trained": "bold green",
            "reasoning": "italic dark_orange3",
        }[name]
        if trained:
            fg = {"escape": "blue", "prompt": "black"}.get(name, fg)
            return f"{fg} on {_TRAINED_BACKGROUND}"
        return fg


# A light green that keeps black text and a leading or trailing space visible.
_TRAINED_BACKGROUND = "dark_sea_green2"

OPEN, CLOSE = "[[", "]]"
# A chat turn's think block (<think>...</think>), inside or outside the trained markers.
THINK_OPEN, THINK_CLOSE = "⟪", "⟫"


def _breaks(plain: str, width: int) -> list[int]:
    """Where to break a line of text so no piece is wider than ``width`` cells.

    Breaks go after a space when there is one in reach, else anywhere; no
    character is dropped, so joining the pieces gives back the line exactly.
    """
    cuts: list[int] = []
    start, used, after_space = 0, 0, -1
    for pos, ch in enumerate(plain):
        w = cell_len(ch)
        if used + w > width and pos > start:
            cut = after_space if after_space > start else pos
            cuts.append(cut)
            used = cell_len(plain[cut:pos])
            start, after_space = cut, -1
        used += w
        if ch == " ":
            after_space = pos + 1
    return cuts


def wrap(text: Text, width: int) -> list[Text]:
    """Split on newlines, then fold each line to ``width`` cells (styles kept)."""
    lines = text.split("\n", allow_blank=True)
    if len(lines) > 1 and not lines[-1].plain:
        lines.pop()  # the text ended with a newline: no empty line after it
    out: list[Text] = []
    for line in lines:
        out.extend(line.divide(_breaks(line.plain, width)) if line.plain else [line])
    return out


def rule(title: str, look: Look, line: str = "─", style: str = "header") -> list[Text]:
    """``── title ─────``, the title folded onto more lines when it is too long.

    ``subrule`` draws the lighter ``┄┄ title ┄┄┄`` that parts a row (its examples, padding).
    """
    style = look.style(style)
    lines = wrap(Text(line * 2 + " " + title + " ", style=style), look.width)
    if (
        look.width - lines[-1].cell_len < 2
    ):  # a fold that fills the last line: the rule ends on a line of its own
        lines.append(Text("", style=style))
    lines[-1].append(line * max(2, look.width - lines[-1].cell_len), style=style)
    return lines


def subrule(title: str, look: Look) -> list[Text]:
    """``┄┄ title ┄┄┄``: a part of a row (an example of a packed row, its padding)."""
    return rule(title, look, line="┄", style="subheader")


def fit(text: str, width: int) -> str:
    """Pad or cut to ``width`` cells: ``"ĠInternational"`` at 8 -> ``"ĠInter…"``."""
    if cell_len(text) <= width:
        return text + " " * (width - cell_len(text))
    out, used = "", 0
    for ch in text:
        if used + cell_len(ch) > width - 1:
            break
        out += ch
        used += cell_len(ch)
    return out + "…" + " " * (width - 1 - used)
