"""The RAW format checker of simplement-e (connectors/raw_csv.py): each rule, its line number,
and rules_off."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from vendor_import.connectors.raw_csv import MAX_LINE_BYTES, RULES, check_raw
from vendor_import.errors import InputError

FILES = Path(__file__).resolve().parents[2] / "events" / "files" / "simplemente"

HEADER = '"Code";"Libelle";"Prix";"Actif";"DateMaj"'
ROW = '"A1";"Chaise";12.5;true;2024-03-01T08:00:00Z'


def raw(*lines: str, end: str = "\r\n") -> bytes:
    return "".join(line + end for line in lines).encode("utf-8")


def check(data: bytes, rules_off=()):
    return check_raw(io.BufferedReader(io.BytesIO(data)), rules_off)


def refused(data: bytes, rules_off=()) -> InputError:
    with pytest.raises(InputError) as info:
        check(data, rules_off)
    return info.value


def test_valid_file_summary():
    summary = check(raw(HEADER, ROW, '"A2";"Table ""basse""";-3;0;', '"A3";"";7;FALSE;2024-03-01'))
    assert (summary.records, summary.columns, summary.lines) == (3, 5, 4)
    assert summary.header == ["Code", "Libelle", "Prix", "Actif", "DateMaj"]


def test_sample_files():
    assert check((FILES / "articles-clean.csv").read_bytes()).records == 5
    assert check((FILES / "articles-with-errors.csv").read_bytes()).records == 5
    error = refused((FILES / "articles-bad-format.csv").read_bytes())
    assert error.detail == {"line": 1, "rule": "crlf"}


def test_last_line_may_have_no_line_end():
    assert check(raw(HEADER) + ROW.encode()).records == 1


def test_quoted_value_may_span_lines_and_hold_separators():
    data = raw(HEADER, '"A1";"Chaise\r\nsur deux lignes; avec ;";1;true;', ROW)
    summary = check(data)
    assert (summary.records, summary.lines) == (2, 4)


# -- one test per rule: the message names the line and the rule ------------------------------------
@pytest.mark.parametrize("data, line, rule, words", [
    (raw(HEADER, ROW, ROW, end="\n"), 1, "crlf", "expected CRLF line end"),
    (raw(HEADER, ROW) + raw(ROW, end="\n") + raw(ROW), 3, "crlf", "found LF only"),
    (raw(HEADER) + ROW.encode() + b"\r" + ROW.encode(), 2, "crlf", "carriage return"),
    (b"\xef\xbb\xbf" + raw(HEADER, ROW), 1, "bom", "byte order mark"),
    (raw(HEADER, ROW) + b'"A2";"caf\xe9";1;true;\r\n', 3, "utf8", "invalid UTF-8 at byte 10"),
    ("\ufeff".encode("utf-16-le") + raw(HEADER).decode().encode("utf-16-le"), 1, "utf8", "UTF-16"),
    (raw("Code,Libelle,Prix", "A1,Chaise,12"), 1, "separator", "single column"),
    (raw(HEADER, ROW, '"A2";"Chaise";12.5;true'), 3, "separator", "4 columns where the header has 5"),
    (raw(HEADER, ROW, "", ROW), 3, "separator", "empty line"),
    (raw(HEADER, '"A1";Chaise;12.5;true;'), 2, "quoting", "column 2: text value 'Chaise'"),
    (raw(HEADER, '"A1";"Chaise";12,5;true;'), 2, "quoting", "decimal numbers use a point"),
    (raw(HEADER, '"A1";"Lampe "Atelier"";1;true;'), 2, "quoting", "must be doubled"),
    (raw(HEADER, '"A1";Lam"pe;1;true;', '"A2";"x";1;true;'), 2, "quoting", "column 2: double quote inside"),
    (raw(HEADER, ROW, '"A3";"never closed;1;true;'), 3, "quoting", "column 2: the double-quoted value is not"),
    (raw('Code;Libelle;Prix;Actif;DateMaj', ROW), 1, "quoting", "column 1: text value 'Code'"),
    (raw('"Code";"";"Prix";"Actif";"DateMaj"', ROW), 1, "header", "column 2 of the first line is empty"),
    (raw(ROW, ROW), 1, "header", "looks like data (column 3 is '12.5')"),
])
def test_rule_violation_names_line_and_rule(data, line, rule, words):
    error = refused(data)
    assert error.detail == {"line": line, "rule": rule}
    assert str(error).startswith(f"line {line}: ")
    assert str(error).endswith(f"(rule {rule})")
    assert words in str(error)


def test_line_of_an_error_inside_a_multi_line_record():
    data = raw(HEADER, '"A1";"sur\r\ndeux lignes";1;true;', '"A2";"x";1;oui;')
    assert refused(data).detail == {"line": 4, "rule": "quoting"}


def test_crlf_message_format():
    assert str(refused(raw(HEADER, ROW) + raw(ROW, end="\n"))) == (
        "line 3: expected CRLF line end, found LF only (after column 5): save the file with Windows (CRLF) "
        "line ends (rule crlf)")


# -- issue 13/14: record boundaries by the CSV rules; every message names line, column, fault, fix -------
def test_a_line_feed_inside_a_quoted_value_is_not_a_line_end():
    # the value holds a bare LF (a line break typed in a spreadsheet cell): the record ends at CRLF
    data = raw(HEADER, '"A1";"Chaise\nsur deux lignes";1;true;', ROW)
    summary = check(data)
    assert (summary.records, summary.lines) == (2, 4)


def test_a_quote_inside_an_unquoted_value_does_not_swallow_the_next_lines():
    # an inch mark: the csv rules end the record at the line end; RAW then refuses that very cell
    error = refused(raw(HEADER, '"A1";"x";1;true;', '"A2";TV 55" screen;1;true;', ROW, ROW))
    assert str(error) == (
        'line 3: column 2: double quote inside an unquoted value: put the whole value in double quotes '
        'and double the quote inside it ("") (rule quoting)')


@pytest.mark.parametrize("data, message", [
    (raw(HEADER, ROW) + b'"A2";"caf\xe9";1;true;\r\n',
     "line 3: column 2: invalid UTF-8 at byte 10 of the line (byte 0xE9; latin-1/Windows-1252 text?): save "
     "the file encoded as UTF-8 (without BOM) (rule utf8)"),
    (b"\xef\xbb\xbf" + raw(HEADER, ROW),
     "line 1: column 1: the file starts with a UTF-8 byte order mark (BOM): save it as UTF-8 without BOM "
     "(rule bom)"),
    (raw(HEADER, ROW, '"A2";"Chaise";12.5;true'),
     "line 3: 4 columns where the header has 5 (column 5 is missing): separate columns with ; and put "
     "values containing ; in double quotes (rule separator)"),
    (raw(HEADER, ROW, '"A2";"Chaise";12.5;true;;'),
     "line 3: 6 columns where the header has 5 (column 6 is one too many): separate columns with ; and put "
     "values containing ; in double quotes (rule separator)"),
    (raw(HEADER, ROW, "", ROW), "line 3: column 1: empty line: remove empty lines from the file (rule separator)"),
    (raw(HEADER) + ROW.encode() + b"\r" + ROW.encode(),
     "line 2: carriage return (CR) without line feed after column 5 (a lone CR ends a line): save the file "
     "with Windows (CRLF) line ends (rule crlf)"),
    (raw(HEADER, '"A1";"Lampe "Atelier"";1;true;'),
     'line 2: column 2: a double quote inside a quoted value must be doubled (""), and the closing quote '
     "must be followed by ; or the line end (rule quoting)"),
])
def test_each_message_names_line_column_violation_and_fix(data, message):
    assert str(refused(data)) == message


# -- always checked --------------------------------------------------------------------------------
@pytest.mark.parametrize("data, words", [
    (b"", "the file is empty"),
    (b"\xef\xbb\xbf", "the file is empty"),
    (raw(HEADER), "no data row"),
])
def test_empty_files_are_refused_whatever_rules_off(data, words):
    error = refused(data, rules_off=RULES)
    assert words in str(error)
    assert error.detail["rule"] == "empty"


def test_line_without_end_longer_than_the_limit_is_refused():
    data = raw(HEADER) + b'"' + b"x" * (MAX_LINE_BYTES + 10)
    error = refused(data, rules_off=RULES)
    assert error.detail == {"line": 2, "rule": "line-length"}


# -- rules_off --------------------------------------------------------------------------------------
@pytest.mark.parametrize("rule, data", [
    ("crlf", raw(HEADER, ROW, end="\n")),
    ("bom", b"\xef\xbb\xbf" + raw(HEADER, ROW)),
    ("utf8", raw(HEADER) + b'"A2";"caf\xe9";1;true;\r\n'),
    ("separator", raw(HEADER, ROW, '"A2";"Chaise";12.5;true')),
    ("quoting", raw(HEADER, '"A1";Chaise;12,5;true;')),
    ("header", raw(ROW, ROW)),
])
def test_each_rule_can_be_turned_off(rule, data):
    with pytest.raises(InputError):
        check(data)
    assert check(data, rules_off=[rule]).records >= 1


def test_bom_off_strips_the_bom_from_the_header():
    assert check(b"\xef\xbb\xbf" + raw(HEADER, ROW), ["bom"]).header[0] == "Code"


def test_quoting_off_reads_one_record_per_line():
    summary = check(raw(HEADER, '"A1";"Lam"pe;1;true;', ROW), ["quoting"])
    assert summary.records == 2


def test_unknown_rule_is_a_programming_error():
    with pytest.raises(ValueError):
        check(raw(HEADER, ROW), ["commas"])


def test_memory_stays_bounded_on_an_unclosed_quote():
    data = raw(HEADER) + b'"A1";"open\r\n' + raw(*(["x" * 1000] * 5000))
    error = refused(data)
    assert error.detail == {"line": 2, "rule": "quoting"}
    assert "column 2: the double-quoted value is not closed" in str(error)
