"""The AEP readers' exact advice for a bad CSV header and for a JSON record that is not an object
(written by hand: the texts the user reads in the status record and the rejects file). The cases
the mutation run (`make mutation`) showed untested."""

from __future__ import annotations

import pytest
from vendor_import.connectors.aep_records import read_csv_header, read_items
from vendor_import.errors import InputError
from vendor_import.source import BytesSource


def header_error(data: bytes, delimiter: str = ",") -> str:
    with pytest.raises(InputError) as caught:
        read_csv_header(BytesSource(data, "p.csv"), 10_000, delimiter)
    return caught.value.message


@pytest.mark.parametrize(("header", "delimiter", "expected"), [
    (b"id;email;name\n", ",", "line 1: the CSV header is a single column 'id;email;name': the file separates "
                              "columns with ';', not ','; give the option delimiter=; (key segment or S3 metadata)"),
    (b"id|email\n", ",", "line 1: the CSV header is a single column 'id|email': the file separates columns "
                         "with '|', not ','; give the option delimiter=| (key segment or S3 metadata)"),
    (b"id\temail\n", ",", "line 1: the CSV header is a single column 'id\\temail': the file separates columns "
                          "with '\\t', not ','; name the file .tsv"),
    (b"id,email\n", ";", "line 1: the CSV header is a single column 'id,email': the file separates columns "
                         "with ',', not ';'; give the option delimiter=, (key segment or S3 metadata)"),
    (b"\nid,,name\n", ",", "line 2: CSV header column 2 has no name; name every column"),
    (b"id,name,id\n", ",", "line 1: CSV header names column 'id' twice (columns 1 and 3); column names must be "
                          "unique: rename one"),
])
def test_bad_header_advice(header, delimiter, expected):
    assert header_error(header, delimiter) == expected


def test_a_single_column_header_without_another_separator_is_fine():
    names, _ = read_csv_header(BytesSource(b"id\n1\n", "p.csv"), 10_000)
    assert names == ["id"]


@pytest.mark.parametrize(("line", "kind"), [(b"[1]", "an array"), (b'"text"', "a string"), (b"true", "true/false"),
                                            (b"null", "null"), (b"4.5", "a number")])
def test_a_json_record_that_is_not_an_object_says_what_it_is(line, kind):
    (item,) = read_items(BytesSource(line + b"\n", "p.ndjson"), "ndjson", max_item_bytes=1000)
    assert (item.code, item.error) == ("not_object", f"line 1: a record must be a JSON object, not {kind}")


@pytest.mark.parametrize(("data", "fmt"), [
    (b'\xef\xbb\xbf  \n{"a": 1}\n', "ndjson"), (b'\xef\xbb\xbf{"a": 1}\n', "ndjson"), (b'  [{"a": 1}]', "json")])
def test_a_json_file_holding_objects_line_by_line_is_read_as_ndjson(data, fmt):
    from vendor_import.connectors.aep_records import detect_format

    assert detect_format("p.json", BytesSource(data, "p.json")) == fmt


def test_json_array_records_are_numbered_and_refused_ones_kept_compact():
    data = '[\n  {"id": 1},\n  [1, "é"],\n  {"id": 3, "blob": "%s"}\n]' % ("x" * 50)
    got = list(read_items(BytesSource(data.encode(), "p.json"), "json", max_item_bytes=40))
    assert [(i.number, i.line, i.code) for i in got] == [(1, 2, ""), (2, 3, "not_object"), (3, 4, "oversize")]
    assert got[1].text == '[1,"é"]'
    assert got[1].error == "record 2 (line 3): a record must be a JSON object, not an array"
    assert got[2].text == '{"id":3,"blob":"%s"}' % ("x" * 50)


def test_csv_records_numbered_across_quoted_newlines_with_each_refusal_exact():
    data = (b'\xef\xbb\xbfid,note\n1,"two\nlines"\n\n2,' + b"y" * 60 + b'\n3,\xff\n4,a,b\n5,\n')
    got = list(read_items(BytesSource(data, "p.csv"), "csv", max_item_bytes=40))
    assert [(i.number, i.line, i.code, i.record) for i in got] == [
        (1, 2, "", {"id": "1", "note": "two\nlines"}), (2, 5, "oversize", None), (3, 6, "encoding", None),
        (4, 7, "csv_fields", None), (5, 8, "", {"id": "5"})]
    assert [i.error for i in got[1:4]] == [
        "line 5: the CSV record is 63 bytes, too large to read as one record (setting max_record_bytes); "
        "it was not read",
        "line 6, column 2: byte 0xFF is not UTF-8 (invalid start byte) at byte 3 of the line; save the file "
        "as UTF-8 (the record was not sent rather than sent altered)",
        "line 7: 3 fields but the header has 2; quote fields that contain the delimiter ','"]
    assert got[0].start == len(b"\xef\xbb\xbfid,note\n")
