"""Benchmark inputs: prompt/completion JSONL rendered with sftprep's own templates.

Every route of the benchmark reads the same file, so they all tokenize exactly
the same texts: ``prompt + completion`` is what sftprep's ``prompt-completion``
template joins, what TRL's SFTTrainer tokenizes for a prompt/completion
dataset, and what the raw tokenizer limit encodes.

The rows come from the Alpaca files in ``../shared/data`` (rendered with the
``alpaca`` template), or, on a machine without shared/, from ``sample_data/``
(rendered with the template sftprep detects for each file). They are cycled to
the requested row count and written line by line, so even a 2,000,000-row file
never sits in memory: only the few thousand distinct rendered lines do.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from sftprep.errors import RecordError
from sftprep.readers import InputFile
from sftprep.templates import Template, bind_template, detect_template, load_template

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
ALPACA_FILES = ("instruction/alpaca_5000.json", "instruction/alpaca_en_demo.json")
SAMPLE_FILES = ("qa.jsonl", "summarization.jsonl", "translation.jsonl")


@dataclass(frozen=True)
class Source:
    """Where the benchmark rows come from.

    Attributes:
        description: one line for the report (``shared/data: alpaca_5000.json + ...``).
        lines: the distinct rendered rows, each a JSON line ending in a newline.
        skipped: source records that render to no row (an empty target).
    """

    description: str
    lines: tuple[str, ...]
    skipped: int


def _render_file(path: Path, template: Template | None) -> tuple[list[str], int]:
    """Render every record of one file into prompt/completion JSON lines."""
    lines: list[str] = []
    skipped = 0
    renderer = None
    with InputFile(str(path)) as f:
        for record in f.records():
            if record.error is not None:
                raise record.error
            if renderer is None:
                chosen = template or detect_template(record.data, record.where)
                renderer = bind_template(chosen, first_record=record.data)
            try:
                prompt, completion = renderer.render(record.data, record.where)
            except RecordError:
                skipped += 1  # e.g. the two alpaca_5000 rows with an empty output
                continue
            row = {"prompt": prompt, "completion": completion}
            lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    return lines, skipped


def load_source(shared_data: Path = SHARED_DATA) -> Source:
    """Render the benchmark's distinct rows, from shared/ if it is there.

    Raises:
        FileNotFoundError: neither shared/data nor sample_data/ is readable.
    """
    if all((shared_data / name).is_file() for name in ALPACA_FILES):
        paths = [shared_data / name for name in ALPACA_FILES]
        template: Template | None = load_template("alpaca")
        where = f"{shared_data}: " + " + ".join(Path(n).name for n in ALPACA_FILES) + " (alpaca template)"
    else:
        paths = [REPO / "sample_data" / name for name in SAMPLE_FILES]
        template = None
        where = "sample_data/ (shared/data is missing): " + " + ".join(SAMPLE_FILES) + " (detected templates)"
    lines: list[str] = []
    skipped = 0
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"benchmark data not found: {path}")
        file_lines, file_skipped = _render_file(path, template)
        lines += file_lines
        skipped += file_skipped
    return Source(where, tuple(lines), skipped)


def write_rows(source: Source, rows: int, path: Path) -> int:
    """Write ``rows`` rows to ``path``, cycling through the source. Returns the bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for line in itertools.islice(itertools.cycle(source.lines), rows):
            out.write(line)
            written += len(line.encode("utf-8"))
    return written
