"""CSV and TSV (sftprep.readers.csv): physical line numbers, bad rows, bad headers."""

from __future__ import annotations

import pytest
from reader_support import LIMIT_HINT, UTF8_HINT, error, good, read, write

from sftprep.errors import InputError


def test_csv_quoted_newlines_keep_physical_line_numbers():
    write("d.csv", 'q,a\n"one",x\n"two\nlines",y\n\nthree,"say ""hi"""\n')
    records = read("d.csv")
    assert good(records) == [
        {"q": "one", "a": "x"},
        {"q": "two\nlines", "a": "y"},
        {"q": "three", "a": 'say "hi"'},
    ]
    assert [r.where for r in records] == ["d.csv:2", "d.csv:3", "d.csv:6"]
    assert records[1].raw == '"two\nlines",y'


def test_csv_bom_crlf_and_no_final_newline():
    write("d.csv", b'\xef\xbb\xbfq,a\r\n1,"x\r\ny"\r\n2,3')
    records = read("d.csv")
    assert good(records) == [{"q": "1", "a": "x\r\ny"}, {"q": "2", "a": "3"}]
    assert [r.number for r in records] == [2, 4]


def test_tsv_values_stay_strings():
    write("d.tsv", "id\ttext\n007\t1.50\n")
    assert good(read("d.tsv")) == [{"id": "007", "text": "1.50"}]


def test_csv_field_count():
    write("d.csv", "metadata,problem,answer\na,b,c\na,b,c,d\na\n")
    records = read("d.csv")
    expected = "expected 3 fields (metadata, problem, answer), found {}"
    assert error(records[1]) == ("d.csv:3", "csv_field_count", expected.format(4))
    assert error(records[2]) == ("d.csv:4", "csv_field_count", expected.format(1))
    assert records[1].raw == "a,b,c,d"


def test_csv_invalid_utf8_and_nul_byte_keep_csv_in_step():
    write("d.csv", b'q,a\n"caf\xe9\nau lait",x\nn\x00l,y\nok,z\n')
    records = read("d.csv")
    assert error(records[0]) == (
        "d.csv:2",
        "invalid_utf8",
        f"invalid UTF-8 at byte offset 8 of the file {UTF8_HINT}",
    )
    assert error(records[1]) == ("d.csv:4", "nul_byte", "NUL byte at byte offset 22")
    assert good(records[2:]) == [{"q": "ok", "a": "z"}]
    assert records[2].where == "d.csv:5"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            'q,a\n"x"y,z\nok,1\n',
            'text after the closing quote of a quoted field (a quote inside one is written "")',
        ),
        ('q,a\nok,1\n"x,z\n', "the file ends inside a quoted field (a quote is not closed)"),
    ],
)
def test_csv_malformed_quoting(content, message):
    records = read(write("d.csv", content))
    bad = [r for r in records if r.error]
    assert [error(r)[1:] for r in bad] == [("malformed_csv", f"malformed CSV: {message}")]
    assert {"q": "ok", "a": "1"} in [r.data for r in records]


def test_csv_line_over_the_limit():
    write("d.csv", "q,a\n" + "x" * 300 + ",y\nok,1\n")
    records = read("d.csv", max_record_bytes=100)
    assert error(records[0]) == (
        "d.csv:2",
        "record_too_large",
        f"record is 303 bytes, over the 100 bytes limit {LIMIT_HINT}",
    )
    assert good(records[1:]) == [{"q": "ok", "a": "1"}]
    assert records[1].where == "d.csv:3"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "d.csv: empty CSV file: no header row"),
        ("\n\n", "d.csv: empty CSV file: no header row"),
        ("q,,a\n1,2,3\n", "d.csv:1: empty column name in the header row (column 2)"),
        ("q,a,q\n1,2,3\n", "d.csv:1: duplicate column name 'q' in the header row (columns 1 and 3)"),
        (b"q,\xff\n", f"d.csv:1: invalid UTF-8 at byte offset 2 of the file {UTF8_HINT} in the header row"),
    ],
)
def test_csv_bad_header_is_an_input_error(content, message):
    write("d.csv", content)
    with pytest.raises(InputError) as exc:
        read("d.csv")
    assert str(exc.value) == message


def test_csv_header_only_has_no_records():
    assert read(write("d.csv", "q,a\n")) == []
