"""The dataset card: facts gathered while rows stream past, a Hugging Face ``README.md``, a histogram.

:class:`CardStats` watches the record batches on their way to a format's
writer (nothing is read twice, memory stays flat: counters and one length
count per possible length). :func:`facts` joins them with the manifest into
``card.json``; :func:`write_card` renders the Hugging Face dataset card (YAML
header with configs, splits and features, then a body) and draws
``length_histogram.png`` with matplotlib.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HISTOGRAM = "length_histogram.png"
README = "README.md"


class _SplitStats:
    def __init__(self) -> None:
        self.rows = 0
        self.examples = 0
        self.tokens = 0
        self.trained_tokens = 0
        self.lengths = np.zeros(0, np.int64)  # lengths[n]: rows of n tokens
        self.sources: Counter[str] = Counter()


class CardStats:
    """Counts per split, gathered from the batches passing through :meth:`feed`.

    Args:
        schema: the rows' schema (which columns there are to count).
    """

    def __init__(self, schema: pa.Schema):
        self.names = set(schema.names)
        self.splits: dict[str, _SplitStats] = {}

    def feed(self, split: str, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Yield ``batches`` unchanged, counting them under ``split``."""
        stats = self.splits.setdefault(split, _SplitStats())
        for batch in batches:
            self._count(stats, batch)
            yield batch

    def _count(self, s: _SplitStats, batch: pa.RecordBatch) -> None:
        s.rows += batch.num_rows
        ids = batch.column("input_ids")
        lengths = pc.list_value_length(ids).to_numpy(zero_copy_only=False).astype(np.int64)
        if "attention_mask" in self.names:  # padded rows: count the real tokens only
            mask = batch.column("attention_mask")
            offsets = mask.offsets.to_numpy() - mask.offsets[0].as_py()
            ones = np.concatenate(
                [[0], np.cumsum(mask.flatten().to_numpy(zero_copy_only=False), dtype=np.int64)]
            )
            lengths = ones[offsets[1:]] - ones[offsets[:-1]]
        s.tokens += int(lengths.sum())
        if lengths.size:
            counts = np.bincount(lengths)
            if counts.size > s.lengths.size:
                s.lengths = np.pad(s.lengths, (0, counts.size - s.lengths.size))
            s.lengths[: counts.size] += counts
        if "num_trained_tokens" in self.names:
            s.trained_tokens += int(pc.sum(batch.column("num_trained_tokens")).as_py() or 0)
        sources = batch.column("source_file")
        if pa.types.is_list(sources.type):  # packed rows: one name per example
            sources = sources.flatten()
        s.examples += len(sources)
        for value in pc.value_counts(sources).to_pylist():
            s.sources[value["values"]] += value["counts"]


def _histogram(lengths: np.ndarray) -> dict[str, Any]:
    """Length counts in at most 50 equal bins: ``{"edges": [...], "counts": [...]}``."""
    if not lengths.any():
        return {"edges": [], "counts": []}
    top = int(np.flatnonzero(lengths)[-1]) + 1
    width = max(1, -(-top // 50))
    edges = list(range(0, top + width, width))
    counts = [int(lengths[a:b].sum()) for a, b in itertools.pairwise(edges)]
    return {"edges": edges, "counts": counts}


def _quantile(lengths: np.ndarray, q: float) -> int | None:
    total = int(lengths.sum())
    if total == 0:
        return None
    return int(np.searchsorted(np.cumsum(lengths), q * total, side="left"))


def facts(manifest: dict[str, Any], stats: CardStats) -> dict[str, Any]:
    """The card's facts: what was built from what, and counts per split and source."""
    splits = {}
    for name, s in stats.splits.items():
        splits[name] = {
            "rows": s.rows, "examples": s.examples, "tokens": s.tokens,
            "trained_tokens": s.trained_tokens,
            "length": {"min": int(np.flatnonzero(s.lengths)[0]) if s.lengths.any() else None,
                       "median": _quantile(s.lengths, 0.5), "p99": _quantile(s.lengths, 0.99),
                       "max": int(np.flatnonzero(s.lengths)[-1]) if s.lengths.any() else None},
            "length_histogram": _histogram(s.lengths),
            "sources": dict(sorted(s.sources.items())),
            "num_bytes": sum(f["num_bytes"] for f in manifest["shards"] if f.get("split") == name),
        }  # fmt: skip
    return {
        "output_format": manifest.get("output_format"),
        "sftprep_version": manifest.get("sftprep_version"),
        "inputs": manifest.get("inputs"),
        "tokenizer": manifest.get("tokenizer"),
        "template": manifest.get("template"),
        "config": manifest.get("config"),
        "label_convention": manifest.get("label_convention"),
        "columns": manifest.get("columns"),
        "counts": manifest.get("counts"),
        "content_sha256": manifest.get("content_sha256"),
        "splits": splits,
    }


def _features(schema_features: dict[str, Any]) -> list[dict[str, Any]]:
    """datasets' features dict -> the card's ``dataset_info.features`` list."""

    def kind(feature: dict[str, Any]) -> Any:
        if feature.get("_type") in ("List", "Sequence", "LargeList"):
            return {"list": kind(feature["feature"])}
        return feature.get("dtype")

    out = []
    for name, feature in schema_features.items():
        k = kind(feature)
        out.append({"name": name, **({"list": k["list"]} if isinstance(k, dict) else {"dtype": k})})
    return out


def _header(facts_: dict[str, Any], features: dict[str, Any]) -> str:
    import yaml

    splits = facts_["splits"]
    header = {
        "configs": [{"config_name": "default",
                     "data_files": [{"split": n, "path": f"{n}/*.parquet"} for n in splits]}],
        "dataset_info": {
            "features": _features(features),
            "splits": [{"name": n, "num_bytes": s["num_bytes"], "num_examples": s["rows"]}
                       for n, s in splits.items()],
        },
        "tags": ["sftprep", "sft", "tokenized"],
    }  # fmt: skip
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n"


def _body(f: dict[str, Any]) -> str:
    tok, tpl, conv, counts = (
        f["tokenizer"] or {},
        f["template"] or {},
        f["label_convention"] or {},
        f["counts"] or {},
    )
    lines = ["# Tokenized SFT rows (built by sftprep)", "",
             f"Built with sftprep {f['sftprep_version']} from {len(f['inputs'] or [])} input file(s); "
             f"rows hash (`content_sha256`): `{f['content_sha256']}`.", "",
             "## Inputs", "", "| file | format | bytes | sha256 |", "|---|---|---|---|"]  # fmt: skip
    for i in f["inputs"] or []:
        lines.append(f"| `{i.get('name')}` | {i.get('format')} | {i.get('bytes')} | `{i.get('sha256')}` |")
    lines += ["", "## How it was built", "",
              f"- tokenizer: `{tok.get('name')}` (sha256 `{tok.get('sha256')}`), EOS `{conv.get('eos_token')}`",
              f"- template: {tpl.get('kind')} `{tpl.get('name')}` (sha256 `{tpl.get('sha256')}`)",
              f"- mode `{conv.get('mode')}`, labels `{conv.get('labels')}`, packed {conv.get('packed')}, "
              f"padded {conv.get('padded')}, max length {(f['config'] or {}).get('max_length')}",
              f"- options: `{_options(f['config'] or {})}`",
              "", "## Label convention", "",
              f"Columns: {', '.join(f'`{c}`' for c in f['columns'] or [])}. Ignored positions hold "
              f"{conv.get('ignore_index')}; shifted: {conv.get('shifted')}. Trained: {conv.get('trained')}. "
              f"BOS: {conv.get('bos_policy')}.",
              "", "## Counts", "",
              f"Records read {counts.get('records_read')}, skipped {sum((counts.get('skipped') or {}).values())}.",
              "", "| split | rows | examples | tokens | trained tokens | min / median / p99 / max length |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for name, s in f["splits"].items():
        ln = s["length"]
        lines.append(f"| {name} | {s['rows']} | {s['examples']} | {s['tokens']} | {s['trained_tokens']} | "
                     f"{ln['min']} / {ln['median']} / {ln['p99']} / {ln['max']} |")  # fmt: skip
    lines += ["", "Examples per source file:", "", "| split | source | examples |", "|---|---|---|"]
    for name, s in f["splits"].items():
        lines += [f"| {name} | `{src}` | {n} |" for src, n in s["sources"].items()]
    lines += ["", "## Row lengths", "", f"![length histogram]({HISTOGRAM})", "",
              "## Loading", "", "```python", "from datasets import load_dataset",
              'ds = load_dataset("path/to/this/folder")  # the YAML header above names the files',
              "```", ""]  # fmt: skip
    return "\n".join(lines)


def _options(config: dict[str, Any]) -> str:
    skip = {"inputs", "fields", "variables", "roles"}
    return " ".join(f"{k}={v}" for k, v in config.items() if k not in skip and v not in (None, {}, False))


def write_card(directory: Path, facts_: dict[str, Any], features: dict[str, Any]) -> None:
    """Write ``README.md`` (the Hugging Face card) and ``length_histogram.png`` into ``directory``."""
    (directory / README).write_text(_header(facts_, features) + "\n" + _body(facts_), encoding="utf-8")
    _plot(directory / HISTOGRAM, facts_["splits"])


def _plot(path: Path, splits: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display; the same bytes on every machine
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.5), dpi=100)
    axes = figure.subplots()
    for name, s in splits.items():
        h = s["length_histogram"]
        if h["counts"]:
            axes.stairs(h["counts"], h["edges"], label=f"{name} ({s['rows']} rows)", fill=True, alpha=0.6)
    axes.set_xlabel("row length (tokens)")
    axes.set_ylabel("rows")
    axes.legend()
    figure.tight_layout()
    # No date or version in the file, so a build and an export write the same bytes.
    figure.savefig(path, format="png", metadata={"Software": None})
