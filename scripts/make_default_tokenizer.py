"""Build the demo tokenizer that ships with sftprep.

sftprep uses this tokenizer when no ``--tokenizer`` is given, so that the README's
first command works offline on a fresh machine. It is a small GPT-2-style byte-level
BPE tokenizer trained only on text the project wrote itself:

* every file in ``sample_data/`` (read as-is, in sorted order), and
* ``scripts/tokenizer_corpus.txt``.

Usage (from anywhere; paths are resolved relative to the repository):

    python scripts/make_default_tokenizer.py

It writes ``sftprep/assets/default-tokenizer.json`` and prints the file's sha256.
Running it twice with the same ``tokenizers`` version gives byte-identical output.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = ROOT / "sample_data"
CORPUS = ROOT / "scripts" / "tokenizer_corpus.txt"
OUTPUT = ROOT / "sftprep" / "assets" / "default-tokenizer.json"

VOCAB_SIZE = 4096
# The order fixes the ids: <|endoftext|> is 0 (EOS and pad), then the chat markers.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def training_files() -> list[Path]:
    """Return the training files in a fixed order.

    Sorting matters: the trainer sees the files in this order, and a different
    order could break ties between equally frequent pairs differently.
    """
    samples = sorted(p for p in SAMPLE_DIR.iterdir() if p.is_file())
    if not samples:
        raise SystemExit(f"error: no files in {SAMPLE_DIR}")
    if not CORPUS.is_file():
        raise SystemExit(f"error: missing corpus file {CORPUS}")
    return [*samples, CORPUS]


def build_tokenizer(files: list[Path]) -> Tokenizer:
    """Train a byte-level BPE tokenizer on ``files``.

    Args:
        files: Text files to train on, in the order the trainer should read them.

    Returns:
        The trained tokenizer, with no padding or truncation configured.
    """
    tokenizer = Tokenizer(models.BPE())
    # No normalizer: the tokenizer must round-trip any input exactly, and
    # offsets must be spans of the original string.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    # trim_offsets=False keeps the leading space inside a token's offsets, so
    # text[start:end] is exactly the text the token came from.
    tokenizer.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False)

    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        # All 256 byte symbols are in the vocabulary whether or not the corpus
        # uses them, so no input can ever be out of vocabulary.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train([str(p) for p in files], trainer=trainer)
    return tokenizer


def main() -> int:
    files = training_files()
    tokenizer = build_tokenizer(files)

    for token_id, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.token_to_id(token) == token_id, token

    data = (tokenizer.to_str() + "\n").encode("utf-8")
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_bytes(data)

    print(f"tokenizers {tokenizers.__version__}", file=sys.stderr)
    for p in files:
        print(f"trained on {p.relative_to(ROOT)}", file=sys.stderr)
    print(
        f"wrote {OUTPUT.relative_to(ROOT)}: vocab {tokenizer.get_vocab_size()}, {len(data)} bytes",
        file=sys.stderr,
    )
    print(f"{hashlib.sha256(data).hexdigest()}  {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
