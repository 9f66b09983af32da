"""The Cirrus send path's fast paths give what the general path gives: the records' bytes sent as
written when they stand alone, the form body quoted as bytes, answers read by one XPath when every
result field is spelled as Cirrus Shield writes it (expected values written by hand)."""

from __future__ import annotations

import io

import pytest
from vendor_import.connectors import cirrus_xml as cx


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"<Data><A>x</A></Data>", b"%3CData%3E%3CA%3Ex%3C%2FA%3E%3C%2FData%3E"),
        (b"2017-06-12 15:40:47+02", b"2017-06-12+15%3A40%3A47%2B02"),
        (b"100% a&b=c", b"100%25+a%26b%3Dc"),
        ("Caf\u00e9 \u20ac".encode(), b"Caf%C3%A9+%E2%82%AC"),
        (b"safe_.-~AZaz09", b"safe_.-~AZaz09"),
        (b"\n\t", b"%0A%09"),
    ],
)
def test_form_quote_bytes_is_quote_plus(data, expected):
    assert cx.form_quote_bytes(data) == expected
    assert cx.form_quote(data.decode("utf-8")).encode("ascii") == expected


def chunks_of(doc: bytes):
    reader = cx.RecordReader(io.BytesIO(doc))
    head = reader.read_head()
    return head, list(reader.records(head))


def test_records_that_stand_alone_are_sent_as_written():
    head, chunks = chunks_of(b'<?xml version="1.0"?>\n<Data>\n  <A><Name>x &amp; y</Name></A>\n'
                             b'  <A><Name>z</Name></A>\n</Data>')
    assert cx.raw_payload(head, chunks) == b"<Data><A><Name>x &amp; y</Name></A><A><Name>z</Name></A></Data>"


@pytest.mark.parametrize(
    "doc",
    [
        b'<Data xmlns:c="urn:c"><c:A><c:Name>x</c:Name></c:A></Data>',  # the prefix is declared on the root
        b"<Data><A><Name>x</Name><ErrorMessage>bad</ErrorMessage></A></Data>",  # a re-uploaded rejects file
        b"<Data><A><Name>x</Name><success>false</success></A></Data>",
    ],
)
def test_records_that_do_not_stand_alone_are_parsed(doc):
    head, chunks = chunks_of(doc)
    assert cx.raw_payload(head, chunks) is None


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # Cirrus Shield's own spelling: the fast path
        (b"<Data><A><Name>n</Name><Success>TRUE</Success><GUID>1</GUID><ErrorMessage/></A>"
         b"<A><Success> false </Success><GUID/><ErrorMessage>no\n parent</ErrorMessage></A></Data>",
         [(True, "1", ""), (False, "", "no parent")]),
        # another spelling before Cirrus Shield's: the first one counts, as in the general path
        (b"<Data><A><success>false</success><Success>TRUE</Success><ErrorMessage>e</ErrorMessage></A></Data>",
         [(False, "", "e")]),
        # a namespace: the general path
        (b'<Data xmlns="urn:x"><A><Success>true</Success><GUID>7</GUID></A></Data>', [(True, "7", "")]),
        # one record answered without <Data>
        (b"<A><Success>TRUE</Success><GUID>9</GUID></A>", [(True, "9", "")]),
        # a record element without results is not a record result
        (b"<Data><Note>x</Note><A><Success>TRUE</Success></A></Data>", [(True, "", "")]),
    ],
)
def test_answers_are_read_the_same_by_either_path(answer, expected):
    results, message = cx.parse_results(answer, "application/xml")
    assert [(r.success, r.guid, r.error) for r in results] == expected
    assert message == ""
