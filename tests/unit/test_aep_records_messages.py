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
    (b"id,name,id\n", ",", "line 1: CSV header names column 'id' twice; column names must be unique"),
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
