"""The prompt/target boundary from token lengths (sftprep.boundary), on real tokenizers.

test_encode.py checks the whole encoder on real data; these check the length table and
the normalizer replica directly: a boundary on a token edge is found, one inside a token
is not, and tokenizers outside the two covered families get no table.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models

from sftprep.boundary import Normalizer, PieceLengths, normalizer_steps
from sftprep.tokenizer import load_tokenizer


def _counts(pieces: PieceLengths, tok: Tokenizer, rows: list[tuple[str, str]]) -> list[int]:
    """prompt_token_counts for rows tokenized jointly (prompt + target), as encode.py does."""
    ids = [tok.encode(prompt + target, add_special_tokens=False).ids for prompt, target in rows]
    starts = np.concatenate(([0], np.cumsum([len(r) for r in ids])))
    flat = np.array([i for r in ids for i in r], dtype=np.int64)
    return pieces.prompt_token_counts(flat, starts, [p for p, _ in rows], 0, 0).tolist()


@pytest.mark.parametrize("tokenizer", ["gpt2", "mistral-7b-v0.1"])
def test_boundary_on_a_token_edge_is_found_and_one_inside_a_token_is_not(tokenizer, tokenizer_path):
    info = load_tokenizer(tokenizer_path(tokenizer))
    tok = info.tokenizer
    pieces = PieceLengths.for_tokenizer(tok, info.source_json)
    assert pieces is not None
    rows = [("Question: What is the capital?", " Paris"), ("Question: Hel", "lo there"), ("", " only target")]
    counts = _counts(pieces, tok, rows)
    # On an edge: exactly the prompt's own tokens (the prompt tokenized alone).
    assert counts[0] == len(tok.encode(rows[0][0], add_special_tokens=False).ids)
    # "Hello" is one token in both vocabularies: the prompt ends inside it.
    assert counts[1] == -1
    assert counts[2] == 0


def test_tokenizers_outside_the_covered_families_get_no_table():
    word_level = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    assert PieceLengths.for_tokenizer(word_level) is None


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("prepend"), st.text("ab ▁", min_size=1, max_size=2), st.just("")),
            st.tuples(st.just("replace"), st.text("ab ", min_size=1, max_size=3), st.text("ab▁", max_size=2)),
        ),
        min_size=1,
        max_size=3,
    ),
    texts=st.lists(st.text("ab ▁c", max_size=12), min_size=1, max_size=5),
)
def test_normalizer_replica_matches_tokenizers_on_anynormalizer_steps(steps, texts):
    """Prepend and Replace(String) steps in any order, overlapping patterns included
    ("aa" in "aaa"): str.replace and Prepend's empty-text rule are what tokenizers does."""
    from tokenizers import normalizers

    parts = [
        normalizers.Prepend(a) if kind == "prepend" else normalizers.Replace(a, b) for kind, a, b in steps
    ]
    normalizer = normalizers.Sequence(parts)
    replica = Normalizer(steps)
    assert [replica(t) for t in texts] == [normalizer.normalize_str(t) for t in texts]


def test_normalizer_replica_is_dropped_when_it_disagrees(tokenizer_path):
    """A replica that does not reproduce the tokenizer is not used: lengths come from the tokenizer."""
    info = load_tokenizer(tokenizer_path("mistral-7b-v0.1"))
    good = PieceLengths.for_tokenizer(info.tokenizer, info.source_json)
    assert good is not None and good.replica is not None
    wrong = PieceLengths(info.tokenizer, good.lengths, good.fixed, True, [("replace", " ", "_")])
    assert wrong.replica is None
    assert wrong.text_bytes("a b") == good.text_bytes("a b") == len("▁a▁b".encode())
    assert normalizer_steps({"type": "Sequence", "normalizers": [{"type": "NFKC"}]}) is None
