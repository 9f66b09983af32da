"""The simplement-e RAW checker (connectors/raw_csv.py) to the exact message, limit and rule switch:
written from the survivors of `make mutation` (docs/mutation.md). Expected texts are written by hand
from the rules in the module docstring (seed: altazion-aide, edi/formats-standards.md)."""

from __future__ import annotations

import pytest
from vendor_import.connectors.raw_csv import MAX_LINE_BYTES, MAX_RECORD_BYTES

from tests.unit.test_simplemente_raw import check, raw, refused

HEADER = '"Code";"Libelle"'


def message(data: bytes, rules_off=()) -> str:
    return str(refused(data, rules_off))


# -- an unquoted text value: shown up to 40 characters, the decimal-comma hint only for one ------------
def test_a_text_value_of_40_characters_is_shown_whole():
    value = "a" * 40
    assert message(raw(HEADER, f'"A1";{value}')) == (
        f"line 2: column 2: text value '{value}' is not in double quotes: put strings in double quotes "
        "(rule quoting)")


def test_a_text_value_of_41_characters_is_cut_to_40_and_an_ellipsis():
    assert message(raw(HEADER, '"A1";' + "b" * 40 + "c")) == (
        "line 2: column 2: text value '" + "b" * 40 + "...' is not in double quotes: put strings in double "
        "quotes (rule quoting)")


def test_the_decimal_comma_hint_is_given_for_a_number_with_a_comma_only():
    assert message(raw(HEADER, '"A1";12,5')) == (
        "line 2: column 2: text value '12,5' is not in double quotes (decimal numbers use a point: 12.5): put "
        "strings in double quotes (rule quoting)")
    assert message(raw(HEADER, '"A1";Chaise')) == (
        "line 2: column 2: text value 'Chaise' is not in double quotes: put strings in double quotes "
        "(rule quoting)")


def test_an_unquoted_nul_character_is_refused_like_any_text():
    # NUL is the fast path's placeholder of a quoted value: a record holding one is split cell by cell
    assert message(raw(HEADER, "\x00;1")) == (
        "line 2: column 1: text value '\\x00' is not in double quotes: put strings in double quotes "
        "(rule quoting)")
    assert check(raw(HEADER, '"a\x00b";1')).records == 1


# -- the header line ----------------------------------------------------------------------------------
@pytest.mark.parametrize("header, found", [
    ("Code,Libelle", " (found commas)"),
    ("Code\tLibelle", " (found tabs)"),
    ("Code|Libelle", " (found pipes)"),
    ('"Code Libelle"', ""),
])
def test_a_single_column_header_names_the_separator_it_found(header, found):
    assert message(raw(header, '"A1"')) == (
        f"line 1: the header line has a single column: RAW files separate columns with ;{found} (rule separator)")


def test_a_header_of_two_columns_is_enough():
    assert check(raw(HEADER, '"A1";"x"')).header == ["Code", "Libelle"]


def test_a_single_column_header_is_accepted_with_the_separator_rule_off():
    summary = check(raw('"Code"', '"A1"'), ["separator"])
    assert (summary.header, summary.records) == (["Code"], 1)


def test_a_quoting_error_in_a_one_column_header_is_reported_as_the_separator():
    # the csv module stops at the quote after "Code"; the likelier mistake (commas) is named first
    assert message(raw('"Code"x,"Libelle"', '"A1";"x"')) == (
        "line 1: the header line has a single column: RAW files separate columns with ; (found commas) "
        "(rule separator)")


def test_with_quoting_off_the_header_is_split_leniently_and_unquoted_names_pass():
    assert check(raw("Code;Libelle", '"A1";"x"'), ["quoting"]).header == ["Code", "Libelle"]
    assert check(raw('"A"x;"B"', '"1";"2"'), ["quoting"]).header == ['"A"x', '"B"']


def test_a_utf16_bom_with_the_utf8_rule_off_is_read_as_replaced_bytes():
    # no utf8 verdict then: the header's stray bytes before a quote break the quoting rule instead
    assert refused(b"\xff\xfe" + raw(HEADER, '"A1";"x"'), ["utf8"]).detail == {"line": 1, "rule": "quoting"}


# -- line ends and line lengths ------------------------------------------------------------------------
def test_a_lone_cr_inside_a_line_that_ends_with_crlf_ends_a_line():
    assert message(raw(HEADER) + b'"A1";1\r"A2";2\r\n') == (
        "line 2: carriage return (CR) without line feed after column 2 (a lone CR ends a line): save the file "
        "with Windows (CRLF) line ends (rule crlf)")


def quoted_line(size: int) -> bytes:
    """A data line of exactly ``size`` bytes, CR LF included: "x...x";1."""
    return b'"' + b"x" * (size - 6) + b'";1\r\n'


def test_a_line_of_exactly_the_limit_with_its_line_end_is_accepted():
    assert check(raw(HEADER) + quoted_line(MAX_LINE_BYTES + 1)).records == 1


def test_a_last_line_of_exactly_the_limit_without_a_line_end_is_accepted():
    data = raw(HEADER) + b'"' + b"x" * (MAX_LINE_BYTES - 4) + b'";1'
    assert check(data).records == 1


@pytest.mark.parametrize("size", [MAX_LINE_BYTES + 2, 2 * MAX_LINE_BYTES])
def test_a_line_over_the_limit_is_refused_even_with_a_line_end(size):
    assert message(raw(HEADER) + quoted_line(size)) == (
        "line 2: longer than 1 MiB without a line end: a RAW file is a CSV with one record per line; save the "
        "file with Windows (CRLF) line ends")


def multi_line_record(total: int) -> bytes:
    """One record of exactly ``total`` bytes: a quoted value over five lines, then ;1 CR LF."""
    chunk = b"y" * 1_000_000 + b"\r\n"
    last = total - 1 - 4 * len(chunk) - len(b'";1\r\n')
    return b'"' + chunk * 4 + b"z" * last + b'";1\r\n'


def test_a_record_of_exactly_the_record_limit_is_accepted():
    summary = check(raw(HEADER) + multi_line_record(MAX_RECORD_BYTES) + raw('"A2";2'))
    assert (summary.records, summary.lines) == (2, 7)


def test_a_record_one_byte_over_the_record_limit_is_refused_at_its_first_line():
    # the first line is checked on its own first: its value opens and does not close there
    assert message(raw(HEADER) + multi_line_record(MAX_RECORD_BYTES + 1)) == (
        "line 2: column 1: the double-quoted value is not closed (rule quoting)")


def test_a_value_over_the_csv_modules_default_field_limit_is_accepted():
    # 128 KiB is the csv module's default limit, not a RAW rule: lines up to 1 MiB are valid
    assert check(raw(HEADER, '"A1";"' + "v" * 300_000 + '"')).records == 1


def test_columns_are_counted_outside_quotes():
    # the ; inside the quoted value is not a separator: the line ends after column 2
    assert message(raw(HEADER) + b'"a;b";"c"\n') == (
        "line 2: expected CRLF line end, found LF only (after column 2): save the file with Windows (CRLF) "
        "line ends (rule crlf)")


def test_header_names_are_read_as_written_inside_their_quotes():
    assert check(raw('"Co""de";"2024"', '"A1";1')).header == ['Co"de', "2024"]  # quoted: not data
    assert check(raw(HEADER, '"A1";"x"'), ["quoting"]).header == ["Code", "Libelle"]


def test_a_fault_on_the_second_line_of_a_record_names_that_line():
    assert message(raw('"Code";"Libelle";"Prix"', '"A1";"a\r\nb";x')) == (
        "line 3: column 3: text value 'x' is not in double quotes: put strings in double quotes (rule quoting)")


def test_a_fault_in_a_last_line_without_a_line_end_is_found():
    assert message(raw(HEADER) + b'"A1";x') == (
        "line 2: column 2: text value 'x' is not in double quotes: put strings in double quotes (rule quoting)")
