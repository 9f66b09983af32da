"""The AEP record readers (connectors/aep_records.py) at their exact edges: the JSON array's window
and byte order mark, the CSV line feed's limits and lone CRs, and the texts a refused record gets.
Written from the survivors of `make mutation` (docs/mutation.md); expected values are written by hand."""

from __future__ import annotations

import pytest
from vendor_import.connectors.aep_records import read_csv_header, read_items
from vendor_import.errors import InputError
from vendor_import.source import BytesSource

CHUNK = 256 * 1024  # the JSON array reader's window grows by this many bytes


def items(data: bytes, fmt: str, limit: int = 10_000) -> list:
    return list(read_items(BytesSource(data, f"f.{fmt}"), fmt, max_item_bytes=limit))


def summary(found) -> list[tuple]:
    return [(i.number, i.line, i.start, i.end, i.record, i.code, i.error, i.text) for i in found]


def refusal(data: bytes, fmt: str, limit: int = 10_000) -> str:
    with pytest.raises(InputError) as caught:
        items(data, fmt, limit)
    return caught.value.message


# -- JSON array ------------------------------------------------------------------------------------------
def test_a_json_array_after_a_byte_order_mark_counts_the_marks_bytes():
    got = items(b'\xef\xbb\xbf[{"a":1},{"b":2}]', "json")
    assert [(i.start, i.end, i.record) for i in got] == [(4, 12, {"a": 1}), (12, 20, {"b": 2})]


def test_a_json_upload_that_is_not_an_array_says_what_it_found():
    assert refusal(b"", "json") == ("a .json upload must be a JSON array of objects starting with '[', found an "
                                    "empty file; for one object per line name the file .ndjson")
    assert refusal(b"x", "json") == ("a .json upload must be a JSON array of objects starting with '[', found "
                                     "'x'; for one object per line name the file .ndjson")


def test_an_array_not_closed_after_a_comma():
    assert refusal(b'[{"a":1},', "json") == "line 1: the JSON array is not closed with ']'"


def test_an_invalid_element_is_named_by_its_number():
    assert refusal(b'[{"a":1},\n{"b": }]', "json") == (
        "record 2 (line 2): the JSON array is not valid (Expecting value: line 2 column 7 (char 16)); fix the file "
        "or send it as NDJSON, one object per line")


def test_a_key_written_twice_names_the_first_one_repeated():
    (item,) = items(b'[{"b":1,"a":2,"a":3}]', "json")
    assert summary([item]) == [(1, 1, 1, 21, None, "duplicate_key",
                                "record 1 (line 1): key 'a' is written twice in one object; keep one (a JSON reader "
                                "keeps only the last value)", '{"b":1,"a":2,"a":3}')]


def test_a_refused_element_keeps_its_text_compact_and_unescaped():
    got = items('[["é", 1], {"k": "é"}]'.encode(), "json", limit=10)
    assert [(i.code, i.text) for i in got] == [("not_object", '["é",1]'), ("oversize", '{"k":"é"}')]
    assert got[1].error == "record 2 (line 1): the record is 11 bytes, over the 10 byte limit of one record"


def test_a_record_of_exactly_the_limit_is_accepted():
    assert [i.record for i in items(b'[{"a": 123}]', "json", limit=10)] == [{"a": 123}]  # 10 bytes
    assert [i.code for i in items(b'[{"a": 1234}]', "json", limit=10)] == ["oversize"]  # 11 bytes


def big_element_file() -> bytes:
    # '[' and three spaces, then an element longer than the first window: 262,140 characters of it
    # are in the window when it first fails to decode
    return b'[   {"a": "' + b"x" * 300_000 + b'"}]'


def test_the_window_waits_for_an_element_up_to_four_times_the_record_limit():
    (item,) = items(big_element_file(), "json", limit=65_535)  # 4 x 65,535 = 262,140: not over
    assert (item.start, item.code) == (4, "oversize")
    assert item.error == "record 1 (line 1): the record is 300,009 bytes, over the 65,535 byte limit of one record"


def test_the_window_gives_up_past_four_times_the_record_limit():
    assert refusal(big_element_file(), "json", limit=65_534) == (
        "record 1 (line 1): the element is over 262,136 bytes, or the JSON array is not valid from here")


def test_a_four_byte_character_split_by_the_window_edge_is_read_whole():
    # 262,141 bytes before the emoji: its first 3 bytes end the first chunk
    data = b'[{"a": "' + b"x" * (CHUNK - 3 - 8) + '😀"}]'.encode()
    (item,) = items(data, "json", limit=CHUNK * 2)
    assert item.record == {"a": "x" * (CHUNK - 11) + "😀"}


# -- CSV -------------------------------------------------------------------------------------------------
def test_a_header_ending_with_the_delimiter_says_so():
    with pytest.raises(InputError) as caught:
        read_csv_header(BytesSource(b"id,name,\n1,a,\n", "p.csv"), 1000)
    assert caught.value.message == ("line 1: CSV header column 3 has no name (a trailing delimiter at the end of the "
                                    "line?); name every column")


@pytest.mark.parametrize("row, error", [
    (b"1,a,", "line 2: 3 fields but the header has 2 (a trailing delimiter?); quote fields that contain the "
              "delimiter ','"),
    (b"1,,x", "line 2: 3 fields but the header has 2; quote fields that contain the delimiter ','"),
    (b"1,a,,", "line 2: 4 fields but the header has 2; quote fields that contain the delimiter ','"),
    (b"1", "line 2: 1 fields but the header has 2; quote fields that contain the delimiter ','"),
])
def test_a_row_of_the_wrong_width_hints_at_a_trailing_delimiter_only_when_it_is_one(row, error):
    (item,) = items(b"id,name\n" + row + b"\n", "csv")
    assert (item.code, item.error) == ("csv_fields", error)


def test_a_lone_cr_ends_a_csv_line():
    got = items(b"id\n1\r2\n3\r4\r\n", "csv")
    assert [(i.line, i.record) for i in got] == [(2, {"id": "1"}), (3, {"id": "2"}), (4, {"id": "3"}),
                                                 (5, {"id": "4"})]


def test_a_csv_line_of_exactly_the_limit_is_read():
    row = b"1," + b"x" * 7 + b"\n"  # 10 bytes
    assert [i.record for i in items(b"id,v\n" + row, "csv", limit=10)] == [{"id": "1", "v": "xxxxxxx"}]
    last = b"1," + b"x" * 8  # 10 bytes, no line end
    assert [i.record for i in items(b"id,v\n" + last, "csv", limit=10)] == [{"id": "1", "v": "xxxxxxxx"}]


def test_a_csv_line_over_the_limit_is_refused_whole_and_reading_goes_on():
    data = b"id,v\n" + b"1," + b"x" * 9 + b"\n" + b"2,b\n"  # the first row is 12 bytes
    got = items(data, "csv", limit=10)
    assert [(i.line, i.start, i.end, i.code) for i in got] == [(2, 5, 17, "oversize"), (3, 17, 21, "")]
    assert got[0].error == ("line 2: the CSV record is 12 bytes, too large to read as one record (setting "
                            "max_record_bytes); it was not read")
    assert got[1].record == {"id": "2", "v": "b"}


def test_a_csv_line_over_the_limit_by_more_than_a_chunk_is_skipped_to_its_end():
    data = b"id,v\n1," + b"x" * 600_000 + b"\n2,b\n"
    got = items(data, "csv", limit=1000)
    assert [(i.line, i.code, i.record) for i in got] == [(2, "oversize", None), (3, "", {"id": "2", "v": "b"})]


def test_a_quoted_csv_record_over_lines_is_bounded_by_the_limit_in_all():
    fits = b'1,"ab\ncd"\n'  # 10 bytes over two lines
    assert [i.record for i in items(b"id,v\n" + fits, "csv", limit=10)] == [{"id": "1", "v": "ab\ncd"}]
    over = b'1,"ab\ncde"\n'  # 11 bytes
    assert refusal(b"id,v\n" + over, "csv", limit=10) == (
        'line 2: a quoted CSV field opened on this line is not closed within 10 bytes (or the record is over that '
        'size): close the quote, and double each quote inside a quoted value ("")')


def test_text_after_an_empty_array_is_refused():
    assert refusal(b"[]x", "json") == "line 1: text after the closing ']' of the JSON array"
    assert items(b"[] \n", "json") == []


def test_a_refused_array_element_holding_an_object_is_compact():
    (item,) = items(b'[[{"a": 1}, 2]]', "json")
    assert (item.code, item.text) == ("not_object", '[{"a":1},2]')


def test_a_json_file_starting_with_a_non_ascii_character_is_a_json_array_file():
    from vendor_import.connectors.aep_records import detect_format

    assert detect_format("x.json", BytesSource("é".encode(), "x.json")) == "json"


def test_a_csv_line_whose_text_is_exactly_the_limit_is_read_with_its_line_end():
    row = b"1," + b"x" * 8 + b"\n"  # 10 bytes of text, 11 with the line feed
    assert [i.record for i in items(b"id,v\n" + row, "csv", limit=10)] == [{"id": "1", "v": "xxxxxxxx"}]


def test_a_csv_field_larger_than_the_csv_modules_own_limits_is_read():
    # over 4 MiB: more than both the csv module's default (128 KiB) and what the RAW checker sets
    value = b"v" * 5_000_000
    (item,) = items(b"id,v\n1," + value + b"\n", "csv", limit=8_000_000)
    assert item.record == {"id": "1", "v": value.decode()}


def test_a_refused_csv_record_says_where_the_next_one_starts():
    data = b'id,v\n1,"a"b\n2,c\n'
    got = items(data, "csv")
    assert [(i.number, i.line, i.start, i.end, i.next_line, i.code) for i in got] == [
        (1, 2, 5, 12, 3, "csv_quote"), (2, 3, 12, 16, 4, "")]
    big = items(b"id,v\n1," + b"x" * 20 + b"\n2,c\n", "csv", limit=10)
    assert [(i.line, i.start, i.end, i.next_line, i.code) for i in big] == [
        (2, 5, 28, 3, "oversize"), (3, 28, 32, 4, "")]


# -- NDJSON ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bom, name, marks", [
    (b"\xff\xfe\x00\x00", "UTF-32 LE", "FF FE 00 00"),
    (b"\x00\x00\xfe\xff", "UTF-32 BE", "00 00 FE FF"),
    (b"\xff\xfe", "UTF-16 LE", "FF FE"),
    (b"\xfe\xff", "UTF-16 BE", "FE FF"),
])
def test_a_utf16_or_utf32_file_is_named_by_its_byte_order_mark(bom, name, marks):
    assert refusal(bom + b"{}\n", "ndjson") == (
        f"the file is {name} text (it starts with the byte order mark {marks}): save it as UTF-8 and upload it again")


def test_an_ndjson_line_that_is_not_utf8_is_refused_where_the_byte_is():
    (item,) = items(b'{"a": "caf\xe9"}\n', "ndjson")
    assert (item.code, item.record, item.text) == ("encoding", None, None)
    assert item.error == ("line 1: byte 0xE9 is not UTF-8 (invalid continuation byte) at byte 11 of the line; save "
                          "the file as UTF-8 (the record was not sent rather than sent altered)")


def test_refused_ndjson_records_keep_their_text_without_the_line_end():
    got = items(b'{"a": \r\n  [1, 2]  \r\n{"n": NaN}\r\n', "ndjson")
    assert [(i.code, i.text) for i in got] == [("invalid_json", '{"a": '), ("not_object", "[1, 2]"),
                                               ("", '{"n": NaN}')]
    assert got[2].raw is None and got[2].record["n"] != got[2].record["n"]  # NaN, kept as written


@pytest.mark.parametrize("data, codes", [
    (b'{"a": 12345}\n', [""]),  # 12 bytes of text + LF: at the limit, read
    (b'{"a": 12345}', [""]),  # 12 bytes, no line end: read
    (b'{"a": 123456}\n{"b": 1}\n', ["oversize", ""]),  # 13 bytes of text: refused, the next line read
])
def test_an_ndjson_line_is_read_up_to_the_limit_without_its_line_end(data, codes):
    assert [i.code for i in items(data, "ndjson", limit=12)] == codes


def test_an_ndjson_line_over_the_limit_by_more_than_a_chunk_is_skipped_to_its_end():
    data = b'{"a": "' + b"x" * 600_000 + b'"}\n{"b": 1}\n'
    got = items(data, "ndjson", limit=1000)
    assert [(i.line, i.start, i.code, i.record) for i in got] == [(1, 0, "oversize", None),
                                                                  (2, 600_010, "", {"b": 1})]


def test_the_format_is_the_last_extension():
    from vendor_import.connectors.aep_records import detect_format

    assert detect_format("archive.v2.ndjson", BytesSource(b"", "archive.v2.ndjson")) == "ndjson"


def test_an_invalid_json_line_keeps_its_last_characters():
    (item,) = items(b'{"a": X\r\n', "ndjson")
    assert (item.code, item.text) == ("invalid_json", '{"a": X')
