"""Recipes (issue 14): many sources, one build -- built from real files in ../shared/data.

The counts are checked against the files themselves (records per file, each
example's (file, line) in the output), not against numbers copied from a run.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from sftprep.cli import cli
from sftprep.mixture import planned_total
from sftprep.recipe import load_recipe
from sftprep.recipe_build import run_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "configs" / "recipes"

# Four sources of four kinds: QA pairs (JSONL, an answer list), translation (a JSON array),
# summarization (template detected from the fields) and chat conversations.
MIXTURE = """
tokenizer = "{gpt2}"
max-length = 512
seed = 5
on-error = "skip"   # a chat record too long for any whole turn is rejected, and counted

[[sources]]
name = "nq"
path = "{data}/qa/NQ-open.dev.jsonl"
template = "qa"
fields = {{ answer = "answer.0" }}
weight = 2

[[sources]]
name = "alma"
path = "{data}/translation/alma_valid.de-en.json"
template = "translation"

[[sources]]
name = "dialogsum"
path = "{data}/summarization/dialogsum.dev.jsonl"
weight = 0.5

[[sources]]
name = "chat"
path = "{data}/chat/toy_chat_fine_tuning.jsonl"
chat-template = "chatml"

[split]
validation = 0.1

[dedup]
exact = true
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _mixture(tmp_path: Path, tokenizer_path, data_path, extra: str = "") -> Path:
    data = Path(data_path("qa", "NQ-open.dev.jsonl")).parents[1]
    return _write(tmp_path / "mix.toml", MIXTURE.format(gpt2=tokenizer_path("gpt2"), data=data) + extra)


def _table(directory: Path) -> pa.Table:
    shards = sorted(directory.glob("data-*.arrow"))
    return pa.concat_tables(pa.ipc.open_stream(pa.memory_map(str(s))).read_all() for s in shards)


def _records_in(path: str) -> int:
    """Records in a file, counted without sftprep: JSON array elements or non-blank lines."""
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return len(json.loads(text))
    return sum(1 for line in text.splitlines() if line.strip())


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, tokenizer_path, data_path):
    tmp = tmp_path_factory.mktemp("mixed")
    recipe = load_recipe(_mixture(tmp, tokenizer_path, data_path)).with_overrides({"workers": 1})
    result = run_recipe(recipe, str(tmp / "out"))
    return tmp / "out", result.manifest


def test_splits_are_a_dataset_dict(mixed):
    out, manifest = mixed
    assert json.loads((out / "dataset_dict.json").read_text()) == {"splits": ["train", "validation"]}
    for split in ("train", "validation"):
        table = _table(out / split)
        assert table.num_rows == manifest["splits"][split]["rows"]
        assert "source" in table.column_names
        assert (out / split / "state.json").exists() and (out / split / "dataset_info.json").exists()
    assert not (out / ".sources").exists()


def test_load_from_disk_opens_the_splits(mixed):
    datasets = pytest.importorskip("datasets")
    out, manifest = mixed
    loaded = datasets.load_from_disk(str(out))
    assert set(loaded) == {"train", "validation"}
    assert loaded["train"].num_rows == manifest["splits"]["train"]["rows"]


def test_every_record_is_accounted_for(mixed):
    _, manifest = mixed
    for s in manifest["sources"]:
        in_files = sum(_records_in(i["name"]) for i in s["inputs"])
        assert s["records_read"] == in_files
        kept = s["unique_train"] + s["validation"]["examples"]
        dropped = s["rejected"] + s["dropped_too_long"] + s["duplicates"] + s["contaminated"]
        assert kept + dropped == in_files, s["name"]


@pytest.mark.parametrize(("name", "weight"), [("nq", 2.0), ("alma", 1.0), ("dialogsum", 0.5), ("chat", 1.0)])
def test_weights_give_exact_counts(mixed, name, weight):
    out, manifest = mixed
    (s,) = [s for s in manifest["sources"] if s["name"] == name]
    assert s["weight"] == weight
    train = _table(out / "train").filter(pa.compute.equal(_table(out / "train")["source"], name))
    keys = list(zip(train["source_file"].to_pylist(), train["source_line"].to_pylist(), strict=True))
    copies = Counter(keys)
    assert len(keys) == planned_total(weight, s["unique_train"]) == s["train"]["examples"]
    if weight == 2.0:
        assert set(copies.values()) == {2}
        assert len(copies) == s["unique_train"]
        # repeats are spread out: no example's two copies side by side
        assert all(a != b for a, b in itertools.pairwise(keys))
        # the first half is the first copies in input order
        assert keys[: len(copies)] == sorted(copies, key=lambda k: k[1])
    else:
        assert set(copies.values()) <= {1}
    if weight < 1:
        assert s["sampled_out"] == s["unique_train"] - len(keys) > 0


def test_no_example_in_both_splits(mixed):
    out, manifest = mixed
    train, val = _table(out / "train"), _table(out / "validation")

    def keys(t):
        return set(zip(t["source_file"].to_pylist(), t["source_line"].to_pylist(), strict=True))

    assert keys(train).isdisjoint(keys(val))
    for s in manifest["sources"]:
        unique = s["unique_train"] + s["validation"]["examples"]
        if unique >= 100:  # a 10% split by hash: near 10% on hundreds of examples
            assert 0.05 < s["validation"]["examples"] / unique < 0.15, s["name"]
    # validation keeps each example once, whatever the weight
    assert len(keys(val)) == val.num_rows


def test_rebuild_from_manifest_is_byte_identical(mixed, tmp_path):
    out, manifest = mixed
    again = tmp_path / "again"
    result = CliRunner().invoke(
        cli, ["build", "--config", str(out / "manifest.json"), "-o", str(again), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((again / "manifest.json").read_text())["content_sha256"] == manifest["content_sha256"]
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        assert (again / path.relative_to(out)).read_bytes() == path.read_bytes(), path


def test_two_workers_and_other_weights_keep_the_split(mixed, tmp_path):
    out, manifest = mixed
    recipe = load_recipe(out / "manifest.json").with_overrides({"workers": 2})
    two = run_recipe(recipe, str(tmp_path / "two")).manifest
    assert two["content_sha256"] == manifest["content_sha256"]
    # Another weight for nq changes train, not which examples are in validation.
    sources = tuple(replace(s, weight=1.0) if s.name == "nq" else s for s in recipe.sources)
    reweighted = run_recipe(replace(recipe, sources=sources), str(tmp_path / "w1")).manifest
    assert (
        reweighted["splits"]["validation"]["content_sha256"]
        == manifest["splits"]["validation"]["content_sha256"]
    )
    assert reweighted["splits"]["train"]["content_sha256"] != manifest["splits"]["train"]["content_sha256"]


@pytest.mark.slow
def test_ray_engine_builds_the_same_rows(mixed, tmp_path):
    pytest.importorskip("ray", reason="Ray is in the test extra")
    out, manifest = mixed
    recipe = load_recipe(out / "manifest.json").with_overrides({"engine": "ray", "workers": 2})
    assert run_recipe(recipe, str(tmp_path / "ray")).manifest["content_sha256"] == manifest["content_sha256"]


def test_changed_input_stops_a_rebuild(tmp_path, data_path, tokenizer_path):
    copy = _write(
        tmp_path / "qa.jsonl",
        Path(data_path("qa", "NQ-open.dev.jsonl")).read_text()[:5000].rsplit("\n", 1)[0],
    )
    recipe = f'tokenizer = "{tokenizer_path("gpt2")}"\n[[sources]]\npath = "qa.jsonl"\nfields = {{answer = "answer.0"}}\n'
    first = run_recipe(load_recipe(_write(tmp_path / "r.toml", recipe)), str(tmp_path / "one")).manifest
    with open(copy, "a", encoding="utf-8") as f:
        f.write('\n{"question": "added later", "answer": ["yes"]}\n')
    runner = CliRunner()
    result = runner.invoke(
        cli, ["build", "--config", str(tmp_path / "one" / "manifest.json"), "-o", str(tmp_path / "two")]
    )
    assert result.exit_code == 4
    assert (
        "qa.jsonl has changed since the build" in result.output and "--allow-changed-inputs" in result.output
    )
    assert not (tmp_path / "two").exists()
    result = runner.invoke(cli, ["build", "--config", str(tmp_path / "one" / "manifest.json"), "-o",
                                 str(tmp_path / "two"), "--allow-changed-inputs", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["counts"]["records_read"] == (
        first["counts"]["records_read"] + 1
    )


def test_duplicates_across_sources_are_dropped_and_listed(tmp_path, data_path, tokenizer_path):
    nq = Path(data_path("qa", "NQ-open.dev.jsonl"))
    _write(tmp_path / "nq-head.jsonl", "".join(nq.read_text(encoding="utf-8").splitlines(True)[:100]))
    recipe = _write(
        tmp_path / "dup.toml",
        f"""
tokenizer = "{tokenizer_path("gpt2")}"
fields = {{ answer = "answer.0" }}
template = "qa"
[[sources]]
path = "{nq}"
[[sources]]
name = "again"
path = "nq-head.jsonl"
[dedup]
exact = true
""",
    )
    manifest = run_recipe(load_recipe(recipe), str(tmp_path / "out")).manifest
    nq_stats, again = manifest["sources"]
    assert again["records_read"] == 100 and again["duplicates"] == 100 and again["train"]["examples"] == 0
    listed = [json.loads(line) for line in (tmp_path / "out" / "duplicates.jsonl").read_text().splitlines()]
    from_again = [e for e in listed if e["source"] == "again"]
    assert [e["line"] for e in from_again] == list(range(1, 101))
    assert {e["reason"] for e in from_again} == {"duplicate"}
    # Within NQ itself, a repeated question with the same first answer is a duplicate too.
    assert nq_stats["duplicates"] == sum(1 for e in listed if e["source"] == "NQ-open.dev")
    assert nq_stats["train"]["examples"] + nq_stats["duplicates"] == _records_in(str(nq))


def test_decontamination_drops_examples_sharing_an_ngram(tmp_path, data_path, tokenizer_path):
    dialogsum = Path(data_path("summarization", "dialogsum.dev.jsonl"))
    lines = dialogsum.read_text(encoding="utf-8").splitlines(True)
    (tmp_path / "eval").mkdir()
    _write(tmp_path / "eval" / "held-out.jsonl", "".join(lines[:10]))
    recipe = _write(
        tmp_path / "decon.toml",
        f"""
tokenizer = "{tokenizer_path("gpt2")}"
[[sources]]
path = "{dialogsum}"
[dedup]
decontaminate = ["eval/*.jsonl"]
""",
    )
    manifest = run_recipe(load_recipe(recipe), str(tmp_path / "out")).manifest
    (stats,) = manifest["sources"]
    listed = [json.loads(line) for line in (tmp_path / "out" / "duplicates.jsonl").read_text().splitlines()]
    assert stats["contaminated"] == len(listed) >= 10
    assert {e["line"] for e in listed} >= set(range(1, 11))
    assert all(e["reason"] == "contaminated" and "13-gram" in e["message"] for e in listed)
    assert stats["train"]["examples"] == len(lines) - stats["contaminated"]
    assert manifest["decontamination"]["eval_texts"] == 20  # 10 prompts and 10 targets


@pytest.mark.parametrize("recipe", sorted(RECIPES.glob("*.*")), ids=lambda p: p.name)
def test_shipped_recipes_build(recipe, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["build", "--config", str(recipe), "-o", str(out), "-w", "1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    names = [s.name for s in load_recipe(recipe).sources]
    assert [s["name"] for s in manifest["sources"]] == names
    assert "source" in result.output and all(n in result.output for n in names)  # the per-source table
    train = _table(out / "train")
    assert set(train["source"].to_pylist()) <= set(names)


def test_pairs_recipe_drops_the_csv_copy_of_qa(tmp_path):
    run_recipe(load_recipe(RECIPES / "pairs.toml"), str(tmp_path / "out"))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    by_name = {s["name"]: s for s in manifest["sources"]}
    assert by_name["qa-csv"]["duplicates"] == by_name["qa-csv"]["records_read"] == 42


def test_system_prompt_goes_to_conversations_without_one(tmp_path):
    from tokenizers import Tokenizer

    run_recipe(load_recipe(RECIPES / "chat-mix.yaml"), str(tmp_path / "out"))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    table = pa.concat_tables([_table(tmp_path / "out" / s) for s in ("train", "validation")])
    chat = table.filter(pa.compute.equal(table["source"], "chat"))
    tokenizer = Tokenizer.from_file(str(ROOT / "sftprep" / "assets" / "default-tokenizer.json"))
    lines = Path(ROOT / "sample_data" / "chat.jsonl").read_text().splitlines()
    for ids, line in zip(chat["input_ids"].to_pylist(), chat["source_line"].to_pylist(), strict=True):
        text = tokenizer.decode(ids, skip_special_tokens=False)
        has_own = json.loads(lines[line - 1])["messages"][0]["role"] == "system"
        assert ("You are a helpful assistant." in text) != has_own, text
    assert manifest["recipe"]["sources"][0]["system"] == "You are a helpful assistant."


def test_command_line_overrides_the_recipe(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["build", "--config", str(RECIPES / "pairs.toml"), "-o", str(out),
                                      "--max-length", "64", "--truncation", "drop", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe"]["max-length"] == 64
    assert {s["name"]: s["dropped_too_long"] for s in manifest["sources"]}["summarization"] == 25
    assert max(len(r) for r in _table(out / "train")["input_ids"].to_pylist()) <= 64


def test_packing_never_mixes_splits(tmp_path):
    out = tmp_path / "out"
    args = ["build", "--config", str(RECIPES / "pairs.toml"), "-o", str(out), "--pack", "-q"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    for split in ("train", "validation"):
        table = _table(out / split)
        examples = sum(len(s) for s in table["seq_lengths"].to_pylist())
        assert examples == sum(s[split]["examples"] for s in manifest["sources"])
        assert all(len(src) == len(lens) for src, lens in zip(table["source"].to_pylist(),
                                                              table["seq_lengths"].to_pylist(), strict=True))  # fmt: skip


def test_plain_build_is_unchanged(tmp_path, monkeypatch):
    """A single-file build without --config: the same bytes as before recipes.

    Recorded at 1e94505 plus issue 13's ``turn`` column (all null here; every other column was
    checked equal to 1e94505's rows) and its options in the fingerprint.
    """
    monkeypatch.chdir(ROOT)  # rows name their file as given: sample_data/qa.jsonl
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["build", "sample_data/qa.jsonl", "-o", str(out), "-q", "-w", "1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["content_sha256"] == "a0d96bb8c7989b215d22669b2b418fef9d21c7f40ebc49844dafdcd9f0bc83e5"
    assert json.loads((out / "state.json").read_text())["_fingerprint"] == "c185cc7bb9593d6f"
    assert "source" not in manifest["columns"] and "system" not in manifest["config"]


BAD = [
    ("r.toml", 'seed = 1\n[[sources]]\npath = "d.jsonl"\nweigth = 2\n',
     "r.toml: sources[0]: unknown key 'weigth' (did you mean 'weight'?)"),
    ("r.toml", 'max_lenght = 5\n[[sources]]\npath = "d.jsonl"\n',
     "r.toml: unknown key 'max_lenght' (did you mean 'max-length'?)"),
    ("r.toml", '[[sources]]\nname = "a"\npath = "nothing/*.jsonl"\n',
     "r.toml: sources[0] (a): key 'path': no file matches"),
    ("r.toml", '[[sources]]\nname = "a"\npath = "d.jsonl"\nweight = -1\n',
     "r.toml: sources[0] (a): key 'weight': must be 0 or more, got -1"),
    ("r.toml", '[[sources]]\npath = "d.jsonl"\n[split]\nvalidation = 1.5\n',
     "r.toml: [split]: key 'validation': a fraction must be in (0, 1)"),
    ("r.toml", '[[sources]]\nname = "a"\npath = "d.jsonl"\n[[sources]]\nname = "a"\npath = "d.jsonl"\n',
     "r.toml: sources[1] (a): key 'name': 'a' is also the name of sources[0]"),
    ("r.toml", "[[sources]\npath = 1\n", "r.toml: not valid TOML:"),
    ("r.yaml", "sources:\n  - path: [d.jsonl\n", "r.yaml: not valid YAML:"),
    ("r.yaml", "pack: true\nsources:\n  - path: d.jsonl\n", "r.yaml: --pack needs --max-length"),
    ("r.yaml", "sources:\n  - path: d.jsonl\n    name: q\n    train-on: everything\n",
     "r.yaml: sources[0] (q): --train-on must be one of"),
    ("r.yaml", "sources:\n  - path: d.jsonl\ndedup:\n  exakt: true\n",
     "r.yaml: [dedup]: unknown key 'exakt' (did you mean 'exact'?)"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "message"), BAD, ids=[b[2].split(": ", 1)[1][:40] for b in BAD])
def test_bad_recipes_exit_2_with_one_line(tmp_path, name, text, message):
    _write(tmp_path / "d.jsonl", '{"question": "q", "answer": "a"}\n')
    _write(tmp_path / name, text)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["build", "--config", str(tmp_path / name), "-o", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert str(tmp_path) in lines[0]
    assert not out.exists()


def test_inspect_shows_sources_and_selects_one(tmp_path):
    out = tmp_path / "out"
    run_recipe(load_recipe(RECIPES / "pairs.toml"), str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    runner = CliRunner()
    stats = runner.invoke(cli, ["inspect", str(out / "train"), "--stats"])
    assert stats.exit_code == 0, stats.output
    table = [line.split() for line in stats.stdout.splitlines() if line.startswith(("qa ", "summarization "))]
    assert [row[0] for row in table] == ["qa", "summarization"]
    by_name = {s["name"]: s for s in manifest["sources"]}
    assert table[1][7] == f"{by_name['summarization']['sampled_out']}"
    assert table[1][8] == f"{by_name['summarization']['train']['examples']}"
    chosen = runner.invoke(
        cli, ["inspect", str(out / "train"), "--source", "translation", "--all", "--format", "json"]
    )
    assert chosen.exit_code == 0, chosen.output
    rows = [json.loads(line) for line in chosen.stdout.splitlines()]
    assert len(rows) == by_name["translation"]["train"]["examples"]
    assert {Path(r["source_file"]).name for r in rows} == {"translation.jsonl"}
    whole = runner.invoke(cli, ["inspect", str(out), "--stats"])
    assert whole.exit_code == 4 and "a build with splits: inspect" in whole.output


def test_one_source_without_weights_is_the_plain_build_plus_a_source_column(
    tmp_path, data_path, tokenizer_path
):
    from sftprep.build import BuildConfig, run_build

    data = data_path("summarization", "dialogsum.dev.jsonl")
    recipe = _write(
        tmp_path / "one.toml", f'tokenizer = "{tokenizer_path("gpt2")}"\n[[sources]]\npath = "{data}"\n'
    )
    run_recipe(load_recipe(recipe), str(tmp_path / "mix"))
    run_build(BuildConfig(inputs=(data,), output=str(tmp_path / "plain"), tokenizer=tokenizer_path("gpt2")))
    mixed, plain = _table(tmp_path / "mix"), _table(tmp_path / "plain")
    assert mixed.drop(["source"]).equals(plain)
    assert set(mixed["source"].to_pylist()) == {"dialogsum.dev"}
    assert not (tmp_path / "mix" / "dataset_dict.json").exists()


def test_a_bad_record_stops_the_build_and_writes_nothing(tmp_path):
    _write(tmp_path / "good.jsonl", '{"question": "q", "answer": "a"}\n')
    _write(tmp_path / "bad.jsonl", '{"question": "q2", "answer": "a2"}\n{"question": "q3"\n')
    recipe = _write(
        tmp_path / "r.toml", '[[sources]]\npath = "good.jsonl"\n[[sources]]\npath = "bad.jsonl"\n'
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["build", "--config", str(recipe), "-o", str(out)])
    assert result.exit_code == 3, result.output
    assert "bad.jsonl:2: malformed JSON" in result.output
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    skipped = CliRunner().invoke(
        cli, ["build", "--config", str(recipe), "-o", str(out), "--on-error", "skip", "-q"]
    )
    assert skipped.exit_code == 0, skipped.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["rejected"] for s in manifest["sources"]] == [0, 1]
    assert json.loads((out / "rejects.jsonl").read_text())["line"] == 2
