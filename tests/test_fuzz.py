"""Random and mutated input bytes: a build succeeds or fails in one line, never a traceback."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftprep.cli import cli
from sftprep.errors import EXIT_DATA, EXIT_IO, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[1]
SEED_JSONL = (ROOT / "sample_data" / "qa.jsonl").read_bytes()[:3000]
SEED_CSV = (ROOT / "sample_data" / "qa.csv").read_bytes()[:3000]
DOCUMENTED = {0, EXIT_USAGE, EXIT_DATA, EXIT_IO}


def mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    """The seed with a few bytes replaced, inserted or deleted, or cut short."""
    edit = st.tuples(
        st.integers(0, len(seed)),
        st.sampled_from(["put", "insert", "delete", "cut"]),
        st.binary(min_size=1, max_size=4),
    )

    def apply(edits) -> bytes:
        data = bytearray(seed)
        for pos, kind, value in edits:
            pos = min(pos, len(data))
            if kind == "put":
                data[pos : pos + len(value)] = value
            elif kind == "insert":
                data[pos:pos] = value
            elif kind == "delete":
                del data[pos : pos + len(value)]
            else:
                del data[pos:]
        return bytes(data)

    return st.lists(edit, min_size=1, max_size=6).map(apply)


inputs = st.one_of(
    st.tuples(st.just("d.jsonl"), mutated(SEED_JSONL)),
    st.tuples(st.just("d.csv"), mutated(SEED_CSV)),
    st.tuples(st.sampled_from(["d.jsonl", "d.csv", "d.json", "d.tsv"]), st.binary(max_size=300)),
)


def _build(name: str, content: bytes, *options: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        out = Path(tmp) / "out"
        result = CliRunner().invoke(cli, ["build", str(path), "-o", str(out), "-q", "--json", *options])
        manifest = json.loads((out / "manifest.json").read_text()) if result.exit_code == 0 else None
        return result, manifest


def _check_outcome(result) -> None:
    assert result.exit_code in DOCUMENTED, result.output
    assert "Traceback" not in result.output
    if result.exit_code != 0:
        errors = [line for line in result.output.splitlines() if line.startswith("sftprep: error: ")]
        assert len(errors) == 1, result.output


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(inputs)
def test_fail_mode_fails_in_one_line(case):
    result, _ = _build(*case, "--template", "qa")
    _check_outcome(result)


@FUZZ
@given(inputs)
def test_skip_mode_accounts_for_every_record(case):
    result, manifest = _build(*case, "--template", "qa", "--on-error", "skip")
    _check_outcome(result)
    if manifest is not None:
        counts = manifest["counts"]
        assert (
            counts["rows_written"] + counts["skipped_total"] + counts["dropped_too_long"]
            == counts["records_read"]
        )
