"""AEP record readers: NDJSON, JSON array and CSV streamed with resumable byte offsets."""

from __future__ import annotations

import json

import pytest
from vendor_import.connectors import aep_records
from vendor_import.connectors.aep_records import Position, detect_format, read_csv_header, read_items
from vendor_import.errors import InputError
from vendor_import.source import BytesSource


def items(data: bytes, fmt: str, pos: Position | None = None, limit: int = 10_000, **kw):
    return list(read_items(BytesSource(data, f"f.{fmt}"), fmt, pos, max_item_bytes=limit, **kw))


def resume_everywhere(data: bytes, fmt: str, **kw):
    """Reading from every item's end gives exactly the rest: nothing twice, nothing skipped."""
    full = items(data, fmt, **kw)
    for i, item in enumerate(full):
        rest = items(data, fmt, Position(item.end, item.number, item.next_line), **kw)
        assert [(r.number, r.line, r.start, r.record, r.error) for r in rest] == \
               [(r.number, r.line, r.start, r.record, r.error) for r in full[i + 1:]]
    return full


# -- NDJSON -------------------------------------------------------------------------------------
def test_ndjson_offsets_lines_and_resume():
    data = '\ufeff{"a": 1}\n\n{"a": "é"}\r\n  \n{"a": 3}'.encode()
    got = resume_everywhere(data, "ndjson")
    assert [(i.number, i.line, i.record) for i in got] == [(1, 1, {"a": 1}), (2, 3, {"a": "é"}), (3, 5, {"a": 3})]
    assert got[0].start == 3  # after the byte order mark
    assert data[got[1].start:got[1].end] == '{"a": "é"}\r\n'.encode()
    assert got[-1].end == len(data)


def test_ndjson_bad_lines_are_items_with_an_error():
    data = b'{"a": 1}\n{"a": \n[1]\n"text"\n\xff\xfe\n{"ok": true}\n'
    got = items(data, "ndjson")
    assert [i.code for i in got] == ["", "invalid_json", "not_object", "not_object", "encoding", ""]
    assert got[1].error.startswith("line 2: not valid JSON") and got[1].text == '{"a": '
    assert got[2].error == "line 3: a record must be a JSON object, not an array"
    assert got[-1].record == {"ok": True}


def test_ndjson_line_over_the_limit_is_skipped_not_held():
    data = b'{"a": 1}\n{"big": "' + b"x" * 5000 + b'"}\n{"a": 3}\n'
    got = resume_everywhere(data, "ndjson", limit=100)
    assert got[1].code == "oversize" and got[1].record is None and got[1].text is None
    assert got[1].error == ("line 2: the line is 5,012 bytes, too large to read as one record (setting "
                            "max_record_bytes); it was not read")
    assert got[2].record == {"a": 3} and got[2].line == 3


# -- JSON array ---------------------------------------------------------------------------------
ARRAY = json.dumps([{"id": 1, "s": "a, ] [ } {"}, {"id": 2, "t": "é😀"}, 42, {"id": 4, "n": [1, 2, {"x": None}]}],
                   indent=2, ensure_ascii=False).encode()


@pytest.mark.parametrize("chunk", [7, 64, 256 * 1024])
def test_json_array_streamed_with_a_sliding_window(monkeypatch, chunk):
    monkeypatch.setattr(aep_records, "_CHUNK", chunk)
    got = resume_everywhere(ARRAY, "json")
    assert [i.record for i in got] == [{"id": 1, "s": "a, ] [ } {"}, {"id": 2, "t": "é😀"}, None,
                                       {"id": 4, "n": [1, 2, {"x": None}]}]
    assert got[2].code == "not_object" and got[2].text == "42"
    assert [i.line for i in got] == [2, 6, 10, 11]
    assert ARRAY[got[1].start:got[1].start + 1] == b"{"
    assert json.loads(ARRAY[got[1].start:got[1].end].rstrip(b", \n")) == {"id": 2, "t": "é😀"}


def test_json_array_number_split_at_the_window_edge(monkeypatch):
    monkeypatch.setattr(aep_records, "_CHUNK", 4)
    got = items(b"[12345678, 9]", "json")
    assert [i.text for i in got] == ["12345678", "9"]


@pytest.mark.parametrize("data,message", [
    (b"", "found an empty file"),
    (b'{"a": 1}', "must be a JSON array"),
    (b'[{"a": 1},]', "trailing comma"),
    (b'[{"a": 1} {"b": 2}]', "expected ',' or ']'"),
    (b'[{"a": 1}', "not closed"),
    (b'[{"a": }]', "not valid"),
    (b'[{"a": 1}] x', "text after the closing"),
])
def test_json_array_syntax_errors_are_input_errors(data, message):
    with pytest.raises(InputError, match=message):
        items(data, "json")


def test_json_array_empty_and_resume_after_the_end():
    assert items(b" [ ] ", "json") == []
    data = b'[{"a": 1}]\n'
    (only,) = items(data, "json")
    assert items(data, "json", Position(only.end, 1, only.next_line)) == []


def test_json_array_oversize_element_is_refused_with_its_text():
    data = json.dumps([{"a": 1}, {"big": "x" * 300}, {"a": 3}]).encode()
    got = items(data, "json", limit=100)
    assert got[1].code == "oversize" and json.loads(got[1].text) == {"big": "x" * 300}
    assert got[2].record == {"a": 3}


# -- CSV ----------------------------------------------------------------------------------------
CSV = ('\ufeffid,name,note\r\n1,Ada,"a, b"\r\n\r\n2,"Grace ""G""","multi\nline"\n3,Alan,\n'
       '4,Too,many,fields\n').encode()


def test_csv_quoted_fields_newlines_and_resume():
    got = resume_everywhere(CSV, "csv")
    assert [i.record for i in got[:3]] == [
        {"id": "1", "name": "Ada", "note": "a, b"},
        {"id": "2", "name": 'Grace "G"', "note": "multi\nline"},
        {"id": "3", "name": "Alan"},  # an empty cell is left out
    ]
    assert [i.line for i in got] == [2, 4, 6, 7]
    assert got[3].code == "csv_fields" and "4 fields but the header has 3" in got[3].error


def test_csv_header_is_read_and_checked():
    names, first = read_csv_header(BytesSource(CSV), 1000)
    assert names == ["id", "name", "note"] and first.line == 2
    for bad, message in [(b"", "empty"), (b"id,,x\n1,2,3\n", "column 2 has no name"),
                         (b"id,id\n1,2\n", "twice")]:
        with pytest.raises(InputError, match=message):
            read_csv_header(BytesSource(bad), 1000)


def test_csv_unclosed_quote_is_an_input_error():
    with pytest.raises(InputError, match="not closed"):
        items(b'id,name\n1,"open\n2,b\n', "csv")


def test_csv_other_delimiter():
    got = items(b"id;name\n1;a,b\n", "csv", delimiter=";")
    assert got[0].record == {"id": "1", "name": "a,b"}


# -- format ------------------------------------------------------------------------------------
def test_detect_format():
    assert detect_format("a.ndjson", BytesSource(b"")) == "ndjson"
    assert detect_format("a.JSONL", BytesSource(b"")) == "ndjson"
    assert detect_format("a.json", BytesSource(b" [{}]")) == "json"
    assert detect_format("a.json", BytesSource(b'{"a":1}\n{"a":2}\n')) == "ndjson"
    assert detect_format("a.csv", BytesSource(b"")) == "csv"
    assert detect_format("a.txt", BytesSource(b""), "csv") == "csv"
    with pytest.raises(InputError, match="format=ndjson"):
        detect_format("a.txt", BytesSource(b""))
    with pytest.raises(InputError, match="not supported"):
        detect_format("a.json", BytesSource(b""), "xml")


# -- issue 13: the csv module's rules, byte offsets kept -------------------------------------------
PRODUCTS = b'sku,name,price\nA1,TV 55" screen,499\nA2,HDMI cable,9\nA3,TV 65" screen,899\nA4,Remote control,19\n'


def test_csv_quote_inside_an_unquoted_field_is_a_literal_character():
    got = resume_everywhere(PRODUCTS, "csv")
    assert [i.record for i in got] == [
        {"sku": "A1", "name": 'TV 55" screen', "price": "499"},
        {"sku": "A2", "name": "HDMI cable", "price": "9"},
        {"sku": "A3", "name": 'TV 65" screen', "price": "899"},
        {"sku": "A4", "name": "Remote control", "price": "19"},
    ]
    assert [(i.line, i.start, i.end) for i in got] == [(2, 15, 36), (3, 36, 52), (4, 52, 73), (5, 73, 94)]


def test_csv_lone_cr_line_ends_and_resume():
    got = resume_everywhere(b"id,v\r1,a\r2,b\r", "csv")
    assert [(i.line, i.start, i.end, i.record) for i in got] == [(2, 5, 9, {"id": "1", "v": "a"}),
                                                                  (3, 9, 13, {"id": "2", "v": "b"})]


def test_csv_bad_records_are_refused_one_by_one_and_reading_goes_on():
    data = b'id,v\n1,"a"b\n2,caf\xe9\n3,nul\x00\n4,ok\n'
    got = resume_everywhere(data, "csv")
    assert [(i.number, i.line, i.code) for i in got] == [(1, 2, "csv_quote"), (2, 3, "encoding"),
                                                          (3, 4, "encoding"), (4, 5, "")]
    assert got[0].error == ("line 2: ',' expected after '\"': a quote inside a quoted value must be doubled (\"\"), "
                            "and a closing quote must be followed by ',' or the line end")
    assert got[1].error == ("line 3, column 2: byte 0xE9 is not UTF-8 (invalid continuation byte) at byte 6 of the "
                            "line; save the file as UTF-8 (the record was not sent rather than sent altered)")
    assert got[2].error == ("line 4, column 2: a NUL byte (0x00) at byte 6 of the line; a text file holds none "
                            "(was it saved as UTF-16?): save the file as UTF-8 (the record was not sent rather "
                            "than sent altered)")
    assert got[3].record == {"id": "4", "v": "ok"}


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_utf16_files_are_refused_naming_the_encoding(fmt):
    data = '{"id": 1}\n'.encode("utf-16-be")
    with pytest.raises(InputError, match=r"^the file is UTF-16 BE text \(it starts with the byte order mark FE FF\)"):
        items(b"\xfe\xff" + data, fmt)


def test_json_array_duplicate_keys_refuse_the_record_not_the_file():
    got = items(b'[{"id": 1, "a": 1, "a": 2}, {"id": 2}]', "json")
    assert got[0].code == "duplicate_key" and got[0].text == '{"id": 1, "a": 1, "a": 2}'
    assert got[1].record == {"id": 2}


@pytest.mark.parametrize("name, fmt", [("x.rejected.ndjson", "ndjson"),
                                       ("x.rejected.resubmit-20260101T000000Z.ndjson", "ndjson"),
                                       ("x.rejected.csv", "csv")])
def test_a_rejects_file_is_ndjson_whatever_the_format_option(name, fmt):
    assert detect_format(name, BytesSource(b'{"a": 1}\n'), "csv") == ("ndjson" if fmt == "ndjson" else "csv")
