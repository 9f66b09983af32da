"""Cirrus XML helpers (connectors/cirrus_xml.py) to the exact output: the hardened parser, the
whole-file check, the rejects XML layout and the DataAction answers. Written from the survivors of
`make mutation` (docs/mutation.md); every expected value is written by hand."""

from __future__ import annotations

import io
import threading

import pytest
from lxml import etree
from vendor_import.connectors import cirrus_xml as cx
from vendor_import.errors import InputError


# -- the parser: never expands an entity, drops comments and processing instructions, 10 MB a text ----
def new_parser() -> etree.XMLParser:
    """The parser a new thread gets: made there, not the one this thread made earlier and keeps."""
    made = []
    worker = threading.Thread(target=lambda: made.append(cx.safe_parser()))
    worker.start()
    worker.join()
    return made[0]


def test_the_parser_never_expands_an_entity():
    root = etree.fromstring(b'<!DOCTYPE r [<!ENTITY x "boom">]><r>a&x;b</r>', new_parser())
    assert etree.tostring(root) == b"<r>a&x;b</r>"


def test_the_parser_drops_comments_and_processing_instructions():
    root = etree.fromstring(b"<r><!--c--><?pi x?><a/></r>", new_parser())
    assert [child.tag for child in root] == ["a"]


def test_the_parser_keeps_libxml2s_bound_on_one_text():
    with pytest.raises(etree.XMLSyntaxError, match="Text node too long"):
        etree.fromstring(b"<r>" + b"x" * 10_000_001 + b"</r>", new_parser())


def test_one_parser_per_thread():
    mine = cx.safe_parser()
    assert cx.safe_parser() is mine
    theirs = []
    worker = threading.Thread(target=lambda: theirs.extend([cx.safe_parser(), cx.safe_parser()]))
    worker.start()
    worker.join()
    assert theirs[0] is theirs[1]
    assert theirs[0] is not mine
    assert isinstance(theirs[0], etree.XMLParser)


# -- check_document ------------------------------------------------------------------------------------
def summary(xml: bytes, record_tag: str = "Account", matching_field: str | None = "Name") -> tuple:
    found = cx.check_document(io.BytesIO(xml), record_tag, matching_field)
    return found.records, found.missing_matching_field, found.missing_total


def test_a_matching_field_holding_only_a_comment_a_pi_or_nothing_is_missing():
    xml = (b"<Data><Account><Name><!--c--></Name></Account><Account><Name><?p x?></Name></Account>"
           b"<Account><Name/></Account><Account><Name>ok</Name></Account></Data>")
    assert summary(xml) == (4, [1, 2, 3], 3)


def test_a_prefixed_record_tag_is_matched_by_its_local_name():
    xml = b'<Data xmlns:c="urn:c"><c:Account><c:Name>x</c:Name></c:Account><c:Account/></Data>'
    assert summary(xml, "c:Account") == (2, [2], 1)


def test_without_a_matching_field_no_record_is_missing_one():
    assert summary(b"<Data><Account><Name>x</Name></Account><Account/></Data>", matching_field=None) == (2, [], 0)


def test_a_malformed_file_is_named_with_libxml2s_words_and_no_encoding_hint():
    with pytest.raises(InputError) as info:
        summary(b"<Data><Account></Data>")
    assert str(info.value) == ("the file is not well-formed XML: Opening and ending tag mismatch: Account line 1 "
                               "and Data, line 1, column 23")


def test_a_doctype_is_refused_with_the_fix():
    with pytest.raises(InputError) as info:
        cx.RecordReader(io.BytesIO(b"<!DOCTYPE Data><Data><A/></Data>")).read_head()
    assert str(info.value) == (
        "the file has a <!DOCTYPE> declaration: DTDs and entity declarations are refused (they are never "
        "expanded nor fetched); remove the DOCTYPE and upload again")


# -- reject_xml: the record as sent, <ErrorMessage> last, indented like its siblings -------------------
def record(xml: bytes) -> etree._Element:
    return etree.fromstring(xml, cx.safe_parser())[0]


def test_the_error_message_is_indented_like_the_fields_in_the_records_namespace():
    rec = record(b'<Data xmlns="urn:c">\n  <Account>\n    <Name>A</Name>\n    <Phone>1</Phone>\n  </Account>\n</Data>')
    assert cx.reject_xml(rec, "bad phone") == (
        '  <Account xmlns="urn:c">\n    <Name>A</Name>\n    <Phone>1</Phone>\n'
        "    <ErrorMessage>bad phone</ErrorMessage>\n  </Account>")


def test_the_error_message_after_a_single_field():
    rec = record(b"<Data>\n  <Account>\n    <Name>A</Name>\n  </Account>\n</Data>")
    assert cx.reject_xml(rec, "bad") == (
        "  <Account>\n    <Name>A</Name>\n    <ErrorMessage>bad</ErrorMessage>\n  </Account>")


def test_the_error_message_of_an_empty_or_flat_record():
    assert cx.reject_xml(record(b"<Data><Account/></Data>"), "empty") == (
        "<Account><ErrorMessage>empty</ErrorMessage></Account>")
    assert cx.reject_xml(record(b"<Data><Account><Name>A</Name><Phone>1</Phone></Account></Data>"), "flat") == (
        "<Account><Name>A</Name><Phone>1</Phone><ErrorMessage>flat</ErrorMessage></Account>")


# -- parse_results: DataAction answers -------------------------------------------------------------------
R = cx.RecordResult


@pytest.mark.parametrize("body, content_type, expected", [
    # JSON told by its content type, even behind a byte order mark
    (b'\xef\xbb\xbf{"Success": "true", "GUID": "g1"}', "application/JSON", ([R(True, "g1", "")], "")),
    # JSON told by its first character: an array, an object, a string (the vendor's message)
    (b'[{"Success": true, "GUID": "g2", "ErrorMessage": "bad   value\\n here"}]', "",
     ([R(True, "g2", "bad value here")], "")),
    (b'"Some message"', "", (None, "Some message")),
    (b'{"MESSAGE": "m"}', "", (None, "m")),
    (b'{"Status": "x"}', "", (None, "")),
    (b"{oops", "", (None, "")),
    # XML, after white space
    (b"  \n<Data><Account><Success>true</Success><GUID>g</GUID></Account></Data>", "", ([R(True, "g", "")], "")),
    (b"<Response><Message/></Response>", "", (None, "")),
    (b"<Response><Status>x</Status></Response>", "", (None, "")),
    (b"<Response", "", (None, "")),
    (b"plain text", "", (None, "")),
])
def test_parse_results(body, content_type, expected):
    assert cx.parse_results(body, content_type) == expected


def test_an_entity_in_an_answer_is_not_expanded_into_a_verdict():
    body = b'<!DOCTYPE Data [<!ENTITY e "false">]><Data><Account><Success>&e;</Success></Account></Data>'
    with pytest.raises(cx.ResponseFormatError, match="Success is '', expected TRUE or FALSE"):
        cx.parse_results(body)


def test_the_error_message_follows_the_last_fields_own_spacing():
    # the space between the fields, not the record's first indentation, goes before <ErrorMessage>
    rec = record(b"<Data><Account>\n  <A>1</A> <B>2</B>\n</Account></Data>")
    assert cx.reject_xml(rec, "m") == "<Account>\n  <A>1</A> <B>2</B> <ErrorMessage>m</ErrorMessage>\n</Account>"


def test_the_record_is_indented_by_the_last_line_of_its_closing_white_space_only():
    assert cx.reject_xml(record(b"<Data><Account><A>1</A>  </Account></Data>"), "m") == (
        "<Account><A>1</A><ErrorMessage>m</ErrorMessage>  </Account>")
    assert cx.reject_xml(record(b"<Data><Account>\n  <A>1</A>\n\n  </Account></Data>"), "m") == (
        "  <Account>\n  <A>1</A>\n  <ErrorMessage>m</ErrorMessage>\n\n  </Account>")


# -- records as sent -------------------------------------------------------------------------------------
def test_record_xml_leaves_out_the_tail_and_payload_xml_joins_the_records():
    data = etree.fromstring(b"<Data>\n  <A><N>1</N></A>\n  <A><N>2</N></A>\n</Data>", cx.safe_parser())
    assert cx.record_xml(data[0]) == "<A><N>1</N></A>"
    assert cx.payload_xml(list(data)) == "<Data><A><N>1</N></A><A><N>2</N></A></Data>"


def test_field_value_and_local_name():
    rec = record(b'<Data xmlns:c="urn:c"><Account><c:Name>  Acme \n Inc </c:Name><Empty/></Account></Data>')
    assert (cx.field_value(rec, "Name"), cx.field_value(rec, "Empty"), cx.field_value(rec, "Missing")) == (
        "Acme Inc", "", "")
    assert cx.local_name(rec[0]) == "Name"
    assert cx.local_name(etree.Comment("c")) == ""


def test_dropping_the_only_result_field_keeps_the_closing_tags_indentation():
    rec = record(b"<Data><Account>\n  <Success>true</Success>\n</Account></Data>")
    assert cx.record_xml(cx.drop_result_fields(rec)) == "<Account>\n</Account>"


def chunks_of(xml: bytes) -> tuple[cx.Head, list[cx.RecordChunk]]:
    reader = cx.RecordReader(io.BytesIO(xml))
    head = reader.read_head()
    return head, list(reader.records(head))


@pytest.mark.parametrize("xml, expected", [
    (b"<Data><A><N>1</N></A><A><N>success</N></A></Data>", b"<Data><A><N>1</N></A><A><N>success</N></A></Data>"),
    (b'<Data xmlns:c="urn:c"><A><N>1</N></A></Data>', None),  # a prefix would not resolve alone
    (b"<Data><A><N>1</N><Success>true</Success></A></Data>", None),  # result fields are dropped first
    (b"<Data><A><N>1</N><ERRORMESSAGE>x</ERRORMESSAGE></A></Data>", None),
])
def test_raw_payload_sends_the_records_bytes_only_when_they_stand_alone(xml, expected):
    assert cx.raw_payload(*chunks_of(xml)) == expected


@pytest.mark.parametrize("body, content_type, expected", [
    (b'{"Success": "1", "GUID": "g"}', "", ([R(True, "g", "")], "")),
    (b'{"Success": 0}', "", ([R(False, "", "")], "")),
    (b"[]", "", (None, "")),
    (b"null", "application/json", (None, "")),
])
def test_parse_results_reads_one_and_zero_and_empty_answers(body, content_type, expected):
    assert cx.parse_results(body, content_type) == expected


def test_results_are_read_past_an_entity_and_the_first_success_wins():
    # a namespace: each record's children are walked one by one
    body = (b'<!DOCTYPE Data [<!ENTITY e "x">]><Data xmlns="urn:c"><A>&e;<Success>true</Success></A>'
            b"<A><Success>false</Success><Success>true</Success></A></Data>")
    assert cx.parse_results(body) == ([R(True, "", ""), R(False, "", "")], "")


def test_check_document_counts_only_the_record_tag_and_never_expands_an_entity():
    # an empty entity left unexpanded is a child: the field is not missing
    xml = b'<!DOCTYPE Data [<!ENTITY e "">]><Data><Account><Name>&e;</Name></Account><Contact/></Data>'
    assert summary(xml) == (1, [], 0)


def test_check_document_lists_at_most_1000_missing_records_by_default():
    found = cx.check_document(io.BytesIO(b"<Data>" + b"<Account/>" * 1001 + b"</Data>"), "Account", "Name")
    assert (found.records, found.missing_total, len(found.missing_matching_field)) == (1001, 1001, 1000)
    assert found.missing_matching_field[-1] == 1000


# -- the record reader -----------------------------------------------------------------------------------
def read(xml: bytes, max_record_bytes: int = 1_000_000, chunk_bytes: int = 65_536) -> list[cx.RecordChunk]:
    reader = cx.RecordReader(io.BytesIO(xml), max_record_bytes=max_record_bytes, chunk_bytes=chunk_bytes)
    return list(reader.records(reader.read_head()))


def test_a_prefixed_data_root_is_a_data_root():
    (chunk,) = read(b'<c:Data xmlns:c="urn:c"><c:A><c:N>1</c:N></c:A></c:Data>')
    assert (chunk.number, chunk.data) == (1, b"<c:A><c:N>1</c:N></c:A>")


def test_a_root_named_otherwise_is_refused_naming_it():
    with pytest.raises(InputError) as info:
        read(b"<Rows><A/></Rows>")
    assert str(info.value) == ("the root element is <Rows>, not <Data>: Cirrus Shield imports "
                               "<Data><Object>...</Object>...</Data> files")


@pytest.mark.parametrize("xml", [
    b"<Data><A><N>1</N></A><A><N>" + b"x" * 30 + b"</N></A></Data>",  # a flat record (the fast path)
    b"<Data><A><N>1</N></A><A><N><![CDATA[" + b"x" * 30 + b"]]></N></A></Data>",  # read token by token
])
def test_a_record_over_the_limit_is_named_with_its_number_offset_and_size(xml):
    size = len(xml) - len(b"<Data><A><N>1</N></A></Data>")
    with pytest.raises(InputError) as info:
        read(xml, max_record_bytes=40)
    assert str(info.value) == (f"record 2 (from byte 21) is {size} bytes, over the 40 byte limit of one record "
                               "(setting max_record_bytes): split it or raise the setting")


def test_a_doctype_after_the_root_is_refused():
    with pytest.raises(InputError, match=r"^the file has a <!DOCTYPE> declaration"):
        read(b"<Data><A/><!DOCTYPE x><A/></Data>")


def test_text_between_records_is_refused_where_the_next_record_starts():
    with pytest.raises(InputError) as info:
        read(b"<Data><A/>stray<A/></Data>")  # 6 + 4 + 5 bytes before the second <A/>
    assert str(info.value) == ("text outside any record near byte 15: every child of <Data> must be a record "
                               "element such as <Account>...</Account>")


def test_text_that_ends_a_chunk_is_refused_too():
    # the first 15-byte chunk ends with the text; the next one starts with white space only
    with pytest.raises(InputError, match=r"^text outside any record near byte 16: "):
        read(b"<Data><A/>stray <A/></Data>", chunk_bytes=15)


def test_percent_is_escaped_before_the_characters_that_sort_before_it():
    # '#' (0x23) comes before '%' (0x25): its escape must not be escaped again
    assert cx.form_quote_bytes(b"%#!") == b"%25%23%21"
