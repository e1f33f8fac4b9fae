"""The benchmark's routes, each run as ``python bench/routes.py ROUTE ...`` in its own process.

A route does its imports first, then times its work with ``time.perf_counter``
and prints one JSON line on stdout: ``{"seconds": ..., "rows": ..., "tokens": ...}``.
The parent (``run.py``) measures the process's memory and wall time around it.

Routes:

* ``raw``: the practical limit. ``tokenizers.Tokenizer.encode_batch_fast`` over the
  ``prompt + completion`` texts, already in memory, in batches of 4096. Only the
  encode calls are timed (no reading, no output).
* ``map``: the route users know. ``datasets.load_dataset("json")`` then
  ``Dataset.map`` tokenizing the prompt and ``prompt + completion`` with a
  ``transformers.PreTrainedTokenizerFast`` and building ``completion_mask``, as
  TRL's ``SFTTrainer`` prepares a prompt/completion dataset (``completion_only_loss``).
  ``--style trl`` copies TRL 1.x exactly: a map that appends the EOS token to the
  completion, then an unbatched tokenizing map. ``--style batched`` does the
  same work in one ``map(batched=True)``, which is faster than what TRL does
  (the fairer opponent). Loading the tokenizer and the data, and the maps, are timed.
* ``trl``: TRL's own ``SFTTrainer`` preparing the same prompt/completion
  dataset (``completion_only_loss=True``, ``max_length=None``, ``dataset_num_proc``),
  around a tiny random GPT-2 model built before the timer starts. The tokenizer,
  ``load_dataset`` and the trainer's constructor (which prepares the dataset)
  are timed.
* ``chat-raw``: the limit for chat builds. The conversations of a chat JSONL file rendered
  (untimed) with the tokenizer's own chat template through sftprep's renderer (which equals
  transformers' ``apply_chat_template``), each conversation once, or with ``--turns each`` each
  trained turn's prefix once (what a per-turn build writes); then ``encode_batch_fast`` over those
  texts without added special tokens (the template writes BOS), in batches of 4096. Only the
  encode calls are timed.
* ``sftprep``: ``sftprep.cli.main(ARGS)``, exactly what the ``sftprep`` command
  runs; timed from after the imports to the end of the build (tokenizer load,
  reading, writing the shards and the manifest included).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any


def _cpu() -> float:
    """CPU seconds of this process and of its children that have been waited for (workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def _read_pairs(path: str) -> tuple[list[str], list[str]]:
    prompts, completions = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            prompts.append(row["prompt"])
            completions.append(row["completion"])
    return prompts, completions


def _load_tokenizer(path: str):
    """A ``tokenizers.Tokenizer`` with stored padding/truncation off (sftprep does the same)."""
    from tokenizers import Tokenizer

    file = Path(path)
    tok = Tokenizer.from_file(str(file / "tokenizer.json" if file.is_dir() else file))
    tok.no_padding()
    tok.no_truncation()
    return tok


def route_raw(args: argparse.Namespace) -> None:
    prompts, completions = _read_pairs(args.input)
    texts = [p + c for p, c in zip(prompts, completions, strict=True)]
    del prompts, completions
    tok = _load_tokenizer(args.tokenizer)
    tokens = 0
    start, cpu_start = time.perf_counter(), _cpu()
    for i in range(0, len(texts), args.batch_size):
        for encoding in tok.encode_batch_fast(texts[i : i + args.batch_size], add_special_tokens=True):
            tokens += len(encoding.ids)
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu_start
    _emit({"seconds": seconds, "cpu_seconds": cpu, "rows": len(texts), "tokens": tokens})


def _rendered_chats(path: str, tokenizer: str, turns: str) -> list[str]:
    """The texts a chat build tokenizes: one per conversation, or one per assistant turn."""
    from sftprep.chat import load_chat_template, special_tokens
    from sftprep.chat.formats import to_messages
    from sftprep.tokenizer import load_tokenizer

    info = load_tokenizer(tokenizer)
    template, variables = load_chat_template(None, info), special_tokens(info)
    texts = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            conversation = to_messages(json.loads(line), f"{path}:{i + 1}")
            messages, tools = list(conversation.messages), conversation.tools
            ends = [k + 1 for k, m in enumerate(messages) if m["role"] == "assistant"]
            for end in ends if turns == "each" else [len(messages)]:
                texts.append(template.render(messages[:end], tools, False, variables))
    return texts


def route_chat_raw(args: argparse.Namespace) -> None:
    texts = _rendered_chats(args.input, args.tokenizer, args.turns)
    tok = _load_tokenizer(args.tokenizer)
    tokens = 0
    start, cpu_start = time.perf_counter(), _cpu()
    for i in range(0, len(texts), args.batch_size):
        for encoding in tok.encode_batch_fast(texts[i : i + args.batch_size], add_special_tokens=False):
            tokens += len(encoding.ids)
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu_start
    _emit({"seconds": seconds, "cpu_seconds": cpu, "rows": len(texts), "tokens": tokens})


# --- the datasets.map route -------------------------------------------------------------


class TokenizersAdapter:
    """The slice of the ``PreTrainedTokenizerFast`` call API the map route uses, over ``tokenizers``.

    Only used when transformers is not installed; the report says so.
    """

    def __init__(self, path: str, eos_token: str):
        self.tok = _load_tokenizer(path)
        self.eos_token = eos_token

    def __call__(self, text: str | list[str]) -> dict[str, Any]:
        if isinstance(text, str):
            return {"input_ids": self.tok.encode(text).ids}
        return {"input_ids": [e.ids for e in self.tok.encode_batch(text)]}


def _processing_class(path: str, eos_token: str) -> tuple[Any, str]:
    try:
        from transformers import PreTrainedTokenizerFast
    except ImportError:
        return TokenizersAdapter(path, eos_token), "tokenizers (transformers is not installed)"
    file = Path(path)
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(file / "tokenizer.json" if file.is_dir() else file), eos_token=eos_token
    )
    return tok, "transformers.PreTrainedTokenizerFast"


def add_eos(example: dict[str, Any], eos_token: str) -> dict[str, Any]:
    """TRL's ``add_eos`` for prompt/completion rows."""
    if not example["completion"].endswith(eos_token):
        example["completion"] = example["completion"] + eos_token
    return example


def tokenize_example(example: dict[str, Any], processing_class: Any) -> dict[str, Any]:
    """TRL's ``tokenize_fn`` for a non-conversational prompt/completion row."""
    prompt_ids = processing_class(text=example["prompt"])["input_ids"]
    joint_ids = processing_class(text=example["prompt"] + example["completion"])["input_ids"]
    # TRL warns (once per row) when the prompt's ids are not a prefix; it keeps the row.
    completion_mask = [0] * len(prompt_ids) + [1] * (len(joint_ids) - len(prompt_ids))
    return {"input_ids": joint_ids, "completion_mask": completion_mask}


def tokenize_batch(batch: dict[str, list], processing_class: Any, eos_token: str) -> dict[str, list]:
    """The same rows as ``add_eos`` + ``tokenize_example``, a batch at a time."""
    completions = [c if c.endswith(eos_token) else c + eos_token for c in batch["completion"]]
    prompt_ids = processing_class(batch["prompt"])["input_ids"]
    joint = [p + c for p, c in zip(batch["prompt"], completions, strict=True)]
    joint_ids = processing_class(joint)["input_ids"]
    masks = [[0] * len(p) + [1] * (len(j) - len(p)) for p, j in zip(prompt_ids, joint_ids, strict=True)]
    return {"input_ids": joint_ids, "completion_mask": masks}


def route_map(args: argparse.Namespace) -> None:
    import datasets
    import pyarrow.compute as pc

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    start, cpu_start = time.perf_counter(), _cpu()
    tok, tokenizer_kind = _processing_class(args.tokenizer, args.eos_token)
    ds = datasets.load_dataset("json", data_files=args.input, split="train", cache_dir=args.cache_dir)
    if args.style == "trl":
        ds = ds.map(add_eos, fn_kwargs={"eos_token": args.eos_token}, num_proc=args.num_proc)
        ds = ds.map(tokenize_example, fn_kwargs={"processing_class": tok}, num_proc=args.num_proc)
    else:
        ds = ds.map(
            tokenize_batch,
            fn_kwargs={"processing_class": tok, "eos_token": args.eos_token},
            batched=True,
            num_proc=args.num_proc,
        )
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu_start
    lengths = pc.list_value_length(ds.data.table.column("input_ids"))
    tokens = int(pc.sum(lengths).as_py() or 0)
    _emit(
        {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "rows": len(ds),
            "tokens": tokens,
            "tokenizer": tokenizer_kind,
        }
    )


def route_trl(args: argparse.Namespace) -> None:
    import datasets
    import pyarrow.compute as pc
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    hf_logging.set_verbosity_error()
    file = Path(args.tokenizer)
    tokenizer_file = str(file / "tokenizer.json" if file.is_dir() else file)
    vocab = PreTrainedTokenizerFast(tokenizer_file=tokenizer_file, eos_token=args.eos_token)
    # The model is never run: TRL needs one to build a trainer. Not timed.
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=len(vocab)))
    config = SFTConfig(
        output_dir=str(Path(args.cache_dir) / "trainer"),
        report_to=[],
        use_cpu=True,
        completion_only_loss=True,
        max_length=None,
        dataset_num_proc=args.num_proc,
    )
    start, cpu_start = time.perf_counter(), _cpu()
    tok = PreTrainedTokenizerFast(
        tokenizer_file=tokenizer_file, eos_token=args.eos_token, pad_token=args.eos_token
    )
    ds = datasets.load_dataset("json", data_files=args.input, split="train", cache_dir=args.cache_dir)
    trainer = SFTTrainer(model=model, args=config, train_dataset=ds, processing_class=tok)
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu_start
    prepared = trainer.train_dataset
    lengths = pc.list_value_length(prepared.data.table.column("input_ids"))
    tokens = int(pc.sum(lengths).as_py() or 0)
    _emit({"seconds": seconds, "cpu_seconds": cpu, "rows": len(prepared), "tokens": tokens})


# --- sftprep ----------------------------------------------------------------------------


def route_sftprep(args: argparse.Namespace) -> None:
    from sftprep.cli import main

    start, cpu_start = time.perf_counter(), _cpu()
    try:
        main(["build", *args.build_args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu_start
    if code:
        _emit({"seconds": seconds, "error": f"sftprep build exited with {code}"})
        sys.exit(code)
    output = Path(args.build_args[args.build_args.index("-o") + 1])
    manifest = json.loads((output / "manifest.json").read_text(encoding="utf-8"))
    counts = manifest["counts"]
    _emit(
        {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "rows": counts["rows_written"],
            "examples": counts["examples_written"],
            "tokens": counts["tokens"],
            "trained_tokens": counts["trained_tokens"],
            "shards": [s["sha256"] for s in manifest["shards"]],
        }
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="route", required=True)
    raw = sub.add_parser("raw")
    raw.add_argument("--input", required=True)
    raw.add_argument("--tokenizer", required=True)
    raw.add_argument("--batch-size", type=int, default=4096)
    chat_raw = sub.add_parser("chat-raw")
    chat_raw.add_argument("--input", required=True)
    chat_raw.add_argument("--tokenizer", required=True)
    chat_raw.add_argument("--turns", choices=["conversation", "each"], default="conversation")
    chat_raw.add_argument("--batch-size", type=int, default=4096)
    dmap = sub.add_parser("map")
    dmap.add_argument("--input", required=True)
    dmap.add_argument("--tokenizer", required=True)
    dmap.add_argument("--eos-token", required=True)
    dmap.add_argument("--num-proc", type=int, default=None)
    dmap.add_argument("--style", choices=["trl", "batched"], default="trl")
    dmap.add_argument("--cache-dir", required=True)
    trl = sub.add_parser("trl")
    trl.add_argument("--input", required=True)
    trl.add_argument("--tokenizer", required=True)
    trl.add_argument("--eos-token", required=True)
    trl.add_argument("--num-proc", type=int, default=None)
    trl.add_argument("--cache-dir", required=True)
    sft = sub.add_parser("sftprep")
    sft.add_argument("build_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.route in ("map", "trl") and args.num_proc == 1:
        args.num_proc = None  # what num_proc=1 means to datasets: no worker processes
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    routes = {
        "raw": route_raw,
        "chat-raw": route_chat_raw,
        "map": route_map,
        "trl": route_trl,
        "sftprep": route_sftprep,
    }
    routes[args.route](args)


if __name__ == "__main__":
    main()
