"""Finding and opening inputs (sftprep.readers.opening): globs, missing and unreadable files, stdin."""

from __future__ import annotations

import hashlib
import io
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reader_support import good, read, write

from sftprep.errors import InputError
from sftprep.readers import InputFile, expand_inputs, opening


def test_expand_inputs_sorts_each_glob_and_keeps_the_first_of_duplicates():
    os.makedirs("d/sub")
    for name in ("d/b.jsonl", "d/a.jsonl", "d/c.csv", "d/sub/e.jsonl"):
        write(name, "")
    patterns = ["d/c.csv", "d/*.jsonl", "-", "./d/a.jsonl", "d/**/*.jsonl"]
    assert expand_inputs(patterns) == ["d/c.csv", "d/a.jsonl", "d/b.jsonl", "-", "d/sub/e.jsonl"]


def test_expand_inputs_skips_directories_a_glob_matches():
    os.makedirs("d/sub.jsonl")
    write("d/a.jsonl", "")
    assert expand_inputs(["d/*.jsonl"]) == ["d/a.jsonl"]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("x.jsonl", "no such file: x.jsonl"),
        ("data/*.jsonl", "no file matches 'data/*.jsonl'"),
        (".", ".: is a directory (give files, or a glob such as './*.jsonl')"),
    ],
)
def test_expand_inputs_errors(pattern, message):
    with pytest.raises(InputError) as exc:
        expand_inputs([pattern])
    assert str(exc.value) == message


def test_unreadable_file_is_an_input_error(monkeypatch):
    write("secret.jsonl", "{}\n")
    if os.geteuid() == 0:
        # Root reads any file (as in CI containers): have the OS answer as it would a user.
        def deny(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
        monkeypatch.setattr(opening, "open", deny, raising=False)
    else:
        os.chmod("secret.jsonl", 0)
    with pytest.raises(InputError, match=r"^secret.jsonl: permission denied$"):
        expand_inputs(["secret.jsonl"])
    with pytest.raises(InputError, match=r"^secret.jsonl: permission denied$"):
        InputFile("secret.jsonl")


def test_missing_file_and_directory_are_input_errors():
    with pytest.raises(InputError, match=r"^no such file: gone.jsonl$"):
        InputFile("gone.jsonl")
    os.mkdir("dir")
    with pytest.raises(InputError, match=r"^dir: is a directory$"):
        InputFile("dir")


def test_stdin_is_sniffed_and_named():
    f = InputFile("-", stdin=io.BytesIO(b'{"a": 1}\n\n{"a": 2}\n'))
    records = list(f.records())
    assert (f.format, f.size, f.source) == ("jsonl", None, "<stdin>")
    assert [(r.where, r.data) for r in records] == [("<stdin>:1", {"a": 1}), ("<stdin>:3", {"a": 2})]
    assert f.sha256 == hashlib.sha256(b'{"a": 1}\n\n{"a": 2}\n').hexdigest()
    assert InputFile("-", stdin=io.BytesIO(b'[{"a": 1}]')).format == "json"
    assert good(read("-", stdin=io.BytesIO(b"q,a\n1,2\n"), format="csv")) == [{"q": "1", "a": "2"}]


@pytest.mark.parametrize("name", ["d.json.gz", "d.parquet"])
def test_url_inputs_read_like_files(name):
    """A file:// URL goes through fsspec: same records, size and sha256; Parquet is spooled."""
    rows = [{"question": "a", "answer": "b"}, {"question": "c", "answer": "d"}]
    if name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(rows), name)
    else:
        write(name, json.dumps(rows))
    url = f"file://{os.path.abspath(name)}"
    assert expand_inputs([url]) == [url]
    with open(name, "rb") as f:
        raw = f.read()
    f = InputFile(url)
    records = list(f.records())
    assert (f.source, f.size, f.format) == (url, len(raw), name.split(".")[1])
    assert good(records) == rows
    assert records[1].where == f"{url}: record 2"
    assert f.sha256 == hashlib.sha256(raw).hexdigest() and f.bytes_read == len(raw)
