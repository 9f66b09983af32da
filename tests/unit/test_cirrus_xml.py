"""Cirrus XML helpers: the byte-level record reader, the whole-file check, record cleaning,
rejects XML and DataAction answers (XML and JSON)."""

from __future__ import annotations

import io
import json

import pytest
from lxml import etree
from vendor_import.connectors import cirrus_xml as cx
from vendor_import.errors import InputError

TRICKY = """<?xml version="1.0" encoding="utf-8"?>
<!-- leading comment with <Data> inside -->
<Data xmlns:i="http://www.w3.org/2001/XMLSchema-instance" attr="a>b">
  <Account><Name>Simple</Name><Phone/></Account>
  <!-- between records: <Account><Name>ghost</Name></Account> -->
  <Account id='q"1' note="x/>y"><Name>Quoted &amp; attrs</Name></Account>
  <?pi target <Account>?>
  <Account><Name><![CDATA[</Account> in CDATA <x>]]></Name></Account>
  <Account><Account>nested same name</Account><Name>Nested</Name></Account>
  <Account/>
  <Account ><Name i:nil="true"/><Desc>a &gt; b</Desc></Account >
  <Account><Name>Ünïcödé 漢字 2017-06-12 15:40:47+02</Name><!-- inner comment --></Account>
</Data>
<!-- trailing -->
""".encode()


def read_all(data: bytes, *, offset: int = 0, first: int = 1, chunk_bytes: int = 65536,
             head: cx.Head | None = None, max_record_bytes: int = 1_000_000) -> list[cx.RecordChunk]:
    stream = io.BytesIO(data[offset:])
    reader = cx.RecordReader(stream, offset=offset, chunk_bytes=chunk_bytes,
                             max_record_bytes=max_record_bytes)
    if head is None:
        head = reader.read_head()
    return list(reader.records(head, first))


def head_of(data: bytes) -> cx.Head:
    return cx.RecordReader(io.BytesIO(data)).read_head()


def canonical(elem) -> bytes:
    return etree.tostring(elem, method="c14n")


# ----------------------------------------------------------------------------------------------
# RecordReader
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk_bytes", [1, 3, 7, 64, 65536])
def test_reader_finds_the_same_records_as_lxml_whatever_the_chunk_size(chunk_bytes):
    expected = [c for c in etree.fromstring(TRICKY, cx.safe_parser()) if isinstance(c.tag, str)]
    chunks = read_all(TRICKY, chunk_bytes=chunk_bytes)
    head = head_of(TRICKY)
    assert [c.number for c in chunks] == list(range(1, len(expected) + 1))
    assert [canonical(cx.parse_record(head, c)) for c in chunks] == [canonical(e) for e in expected]
    for c in chunks:  # offsets are exact: the bytes are the file's own
        assert TRICKY[c.start:c.end] == c.data
        assert c.tag == "Account"


def test_reader_resumes_from_any_saved_offset():
    head = head_of(TRICKY)
    chunks = read_all(TRICKY)
    for i, previous in enumerate(chunks):
        rest = read_all(TRICKY, offset=previous.end, first=previous.number + 1, head=head, chunk_bytes=5)
        assert [(c.number, c.start, c.end) for c in rest] == [(c.number, c.start, c.end) for c in chunks[i + 1:]]


def test_reader_head_gives_the_root_tag_and_where_records_begin():
    data = b'\xef\xbb\xbf<?xml version="1.0"?>\n<Data a="1">\n<Account/></Data>'
    head = head_of(data)
    assert head.root_open == b'<Data a="1">'
    assert head.root_name == b"Data"
    assert data[head.body_offset:].startswith(b"\n<Account/>")


def test_reader_memory_is_one_chunk_plus_one_record():
    record = b"<Account><Name>" + b"x" * 1000 + b"</Name></Account>\n"
    data = b"<Data>\n" + record * 2000 + b"</Data>"
    stream = io.BytesIO(data)
    reader = cx.RecordReader(stream, chunk_bytes=4096)
    head = reader.read_head()
    biggest = 0
    count = 0
    for _chunk in reader.records(head):
        biggest = max(biggest, len(reader._buf))
        count += 1
    assert count == 2000
    assert biggest < 4096 + 2 * len(record)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"empty \(0 bytes\)"),
        (b"Name,Address\nAcme,Paris\n", "not XML"),
        (b"\xff\xfe<\x00D\x00", "UTF-16"),
        (b'<?xml version="1.0" encoding="ISO-8859-1"?><Data/>', "ISO-8859-1"),
        (b'<!DOCTYPE Data [<!ENTITY a "b">]><Data/>', "DOCTYPE"),
        (b"<Accounts><Account/></Accounts>", "root element is <Accounts>"),
        (b"<Data/>", "no record"),
    ],
)
def test_reader_head_refuses(data, message):
    with pytest.raises(InputError, match=message):
        head_of(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<Data><Account><Name>A</Name></Account>", "ends before </Data>"),
        (b"<Data><Account><Name>A</Name></Account>loose text<Account/></Data>", "text outside any record"),
        (b"<Data><![CDATA[x]]><Account/></Data>", "text outside any record"),
        (b"<Data><Account/></Datum>", "closes <Data>"),
        (b"<Data><Account><Name>" + b"x" * 5000 + b"<b/></Name></Account></Data>",
         r"over the 2,000 byte limit of one record \(setting max_record_bytes\)"),
    ],
)
def test_reader_records_refuse(data, message):
    with pytest.raises(InputError, match=message):
        read_all(data, chunk_bytes=512, max_record_bytes=2000)


def test_parse_record_reports_the_record_number_and_byte():
    data = b"<Data><Account><Name>A</Name></Account><Account><Name>B</Nom></Account></Data>"
    head = head_of(data)
    with pytest.raises(InputError, match=r"record 2 \(from byte 39\) is not well-formed"):
        for chunk in read_all(data):
            cx.parse_record(head, chunk)


def test_parse_record_never_expands_entities():
    data = b"<Data><Account><Name>&xxe;</Name></Account></Data>"
    with pytest.raises(InputError, match="xxe"):
        cx.parse_record(head_of(data), read_all(data)[0])


# ----------------------------------------------------------------------------------------------
# check_document (iterparse)
# ----------------------------------------------------------------------------------------------
def test_check_document_counts_records_and_lists_missing_matching_fields():
    data = (b"<Data><Account><Name>A</Name></Account><Account><Phone>1</Phone></Account>"
            b"<Account><Name>  </Name></Account><Account><Account>nested</Account><Name>D</Name></Account>"
            b"</Data>")
    summary = cx.check_document(io.BytesIO(data), "Account", "Name")
    assert summary.records == 4
    assert summary.missing_matching_field == [2, 3]
    assert summary.missing_total == 2


def test_check_document_caps_the_list_of_missing_fields():
    data = b"<Data>" + b"<Account><Phone>1</Phone></Account>" * 30 + b"</Data>"
    summary = cx.check_document(io.BytesIO(data), "Account", "Name", max_listed=10)
    assert len(summary.missing_matching_field) == 10
    assert summary.missing_total == 30


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<Data><Account><Name>A</Name></Account><Account><Name>B</Account></Data>", "line 1"),
        (b"<Data><Account><Name>caf\xe9</Name></Account></Data>", "UTF-8"),
        (b"<Data><Account><Name>&undefined;</Name></Account></Data>", "undefined"),
    ],
)
def test_check_document_refuses_malformed_xml(data, message):
    with pytest.raises(InputError, match=message):
        cx.check_document(io.BytesIO(data), "Account", "Name")


# ----------------------------------------------------------------------------------------------
# Records: cleaning, payload, rejects XML
# ----------------------------------------------------------------------------------------------
REUPLOADED = b"""<Data>
  <Account>
    <Name>Acme</Name>
    <Success>FALSE</Success>
    <ErrorMessage>Some of the Lookup Fields contain invalid values</ErrorMessage>
  </Account>
</Data>"""


def test_result_fields_are_dropped_and_the_layout_kept():
    head = head_of(REUPLOADED)
    chunk = read_all(REUPLOADED)[0]
    assert cx.has_result_fields(chunk.data)
    record = cx.drop_result_fields(cx.parse_record(head, chunk))
    assert cx.record_xml(record) == "<Account>\n    <Name>Acme</Name>\n  </Account>"


def test_has_result_fields_is_case_insensitive_and_ignores_lookalikes():
    assert cx.has_result_fields(b"<A><errormessage/></A>")
    assert cx.has_result_fields(b"<A><x:Success>t</x:Success></A>")
    assert not cx.has_result_fields(b"<A><SuccessRate>1</SuccessRate><Name>Success</Name></A>")


def test_payload_is_a_data_document_of_the_records():
    data = b'<Data xmlns:i="urn:i"><Account><Name i:nil="true"/></Account><Account><Name>B</Name></Account></Data>'
    head = head_of(data)
    records = [cx.parse_record(head, c) for c in read_all(data)]
    payload = cx.payload_xml(records)
    root = etree.fromstring(payload.encode())
    assert root.tag == "Data" and len(root) == 2
    assert root[0][0].get("{urn:i}nil") == "true"  # the prefix declaration travels with the record


def test_reject_xml_appends_error_message_as_the_input_record_plus_one_child():
    data = b"<Data>\n  <Account>\n    <Name>Acme</Name>\n    <Phone>+33 1</Phone>\n  </Account>\n</Data>"
    record = cx.parse_record(head_of(data), read_all(data)[0])
    xml = cx.reject_xml(record, "Some of the Lookup Fields contain invalid values")
    assert xml == ("  <Account>\n    <Name>Acme</Name>\n    <Phone>+33 1</Phone>\n"
                   "    <ErrorMessage>Some of the Lookup Fields contain invalid values</ErrorMessage>\n"
                   "  </Account>")
    assert cx.record_xml(record).count("ErrorMessage") == 0  # the record itself is untouched


def test_reject_xml_keeps_the_record_namespace():
    record = etree.fromstring(b'<Account xmlns="urn:crm"><Name>A</Name></Account>')
    xml = cx.reject_xml(record, "bad <value> & more")
    parsed = etree.fromstring(xml.strip().encode())
    assert parsed[-1].tag == "{urn:crm}ErrorMessage"
    assert parsed[-1].text == "bad <value> & more"


# ----------------------------------------------------------------------------------------------
# DataAction answers
# ----------------------------------------------------------------------------------------------
SEED_ANSWER = b"""<Data>
<Account>
<Name>
Account Test 1
</Name>
<Success>
FALSE
</Success>
<ErrorMessage>
Some of the Lookup Fields contain invalid values
</ErrorMessage>
</Account>
<Account>
<Name>
Account Test 2
</Name>
<Success >
TRUE
</Success>
<ErrorMessage />
</Account>
</Data>"""


def test_seed_answer_is_read_per_record_in_order():
    results, message = cx.parse_results(SEED_ANSWER, "application/xml")
    assert results == [
        cx.RecordResult(False, "", "Some of the Lookup Fields contain invalid values"),
        cx.RecordResult(True, "", ""),
    ]
    assert message == ""


@pytest.mark.parametrize("word", ["True", "true", " TRUE ", "\n\tTrue\n"])
def test_success_is_read_whatever_the_case_and_whitespace(word):
    body = f"<Data><Object><Success>{word}</Success><GUID>42</GUID><ErrorMessage/></Object></Data>"
    assert cx.parse_results(body.encode())[0] == [cx.RecordResult(True, "42", "")]


def test_object_elements_and_namespaces_are_read():
    body = (b'<Data xmlns="http://schemas.datacontract.org/2004/07/X" '
            b'xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
            b"<Object><Success>False</Success><GUID i:nil=\"true\"/><ErrorMessage>bad</ErrorMessage></Object>"
            b"<Object><Success>True</Success><GUID>7</GUID><ErrorMessage i:nil=\"true\"/></Object></Data>")
    assert cx.parse_results(body)[0] == [cx.RecordResult(False, "", "bad"), cx.RecordResult(True, "7", "")]


def test_an_indented_answer_reads_the_same_as_a_compact_one():
    # the answer parser drops the whitespace between elements: texts, blank ones included, stay
    compact = (b"<Data><Account><Email>a@b.fr</Email><Success>TRUE</Success><GUID>1</GUID><ErrorMessage/></Account>"
               b"<Account><Email> </Email><Success>FALSE</Success><GUID> </GUID>"
               b"<ErrorMessage>bad  lookup</ErrorMessage></Account></Data>")
    indented = (b"<Data>\r\n  <Account>\r\n    <Email>a@b.fr</Email>\r\n    <Success>\r\n TRUE\r\n </Success>\r\n"
                b"    <GUID>1</GUID>\r\n    <ErrorMessage>   </ErrorMessage>\r\n  </Account>\r\n  <Account>\r\n"
                b"    <Email>\t</Email>\r\n    <Success>FALSE</Success>\r\n    <GUID />\r\n"
                b"    <ErrorMessage>\r\n bad\r\n lookup\r\n </ErrorMessage>\r\n  </Account>\r\n</Data>\r\n")
    expected = [cx.RecordResult(True, "1", ""), cx.RecordResult(False, "", "bad lookup")]
    assert cx.parse_results(compact)[0] == expected
    assert cx.parse_results(indented)[0] == expected
    message_only = b"<Data>\n  <Message>\n    Invalid   token\n  </Message>\n</Data>"
    assert cx.parse_results(message_only) == (None, "Invalid token")


@pytest.mark.parametrize("odd", [b"SUCCESS", b"success", b"Guid", b"guid", b"errorMessage", b"ERRORMESSAGE"])
def test_a_result_field_spelled_another_way_is_still_read(odd):
    # beside a field starting with the same letter (Email, Guarantor, Status): only the result names count
    fields = {b"SUCCESS": b"Success", b"success": b"Success", b"Guid": b"GUID", b"guid": b"GUID",
              b"errorMessage": b"ErrorMessage", b"ERRORMESSAGE": b"ErrorMessage"}
    values = {b"Success": b"TRUE", b"GUID": b"8", b"ErrorMessage": b""}
    parts = [b"<Email>e</Email><Guarantor>g</Guarantor><Status>s</Status>"]
    for name, value in values.items():
        tag = odd if fields[odd] == name else name
        parts.append(b"<" + tag + b">" + value + b"</" + tag + b">")
    body = b"<Data><Account>" + b"".join(parts) + b"</Account></Data>"
    assert cx.parse_results(body)[0] == [cx.RecordResult(True, "8", "")]


def test_single_record_answer_without_data_wrapper():
    body = b"<Object><Success>TRUE</Success><GUID>9</GUID></Object>"
    assert cx.parse_results(body)[0] == [cx.RecordResult(True, "9", "")]


@pytest.mark.parametrize(
    "doc",
    [
        {"Data": {"Account": [{"Name": "A", "Success": "False", "GUID": None, "ErrorMessage": "bad"},
                              {"Name": "B", "Success": "True", "GUID": "2", "ErrorMessage": None}]}},
        [{"Success": False, "ErrorMessage": "bad"}, {"success": True, "guid": 2}],
        {"Data": [{"Object": {"Success": "FALSE", "ErrorMessage": "bad"}},
                  {"Object": {"Success": "TRUE", "GUID": "2"}}]},
    ],
)
def test_json_answers_are_read(doc):
    results, _ = cx.parse_results(json.dumps(doc).encode(), "application/json; charset=utf-8")
    assert results == [cx.RecordResult(False, "", "bad"), cx.RecordResult(True, "2", "")]


def test_json_single_record_object_is_a_list_of_one():
    doc = {"Data": {"Account": {"Name": "A", "Success": "True", "GUID": "5"}}}
    assert cx.parse_results(json.dumps(doc).encode())[0] == [cx.RecordResult(True, "5", "")]


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b'{"Message": "An error has occurred."}', "application/json", "An error has occurred."),
        (b"<Error><Message>Object not found</Message></Error>", "application/xml", "Object not found"),
        (b"", "", ""),
        (b"<html>oops", "text/html", ""),
        (b"plain text", "text/plain", ""),
    ],
)
def test_answers_without_results(body, content_type, message):
    assert cx.parse_results(body, content_type) == (None, message)


def test_unreadable_success_value_is_a_format_error():
    with pytest.raises(cx.ResponseFormatError, match="maybe"):
        cx.parse_results(b"<Data><A><Success>maybe</Success></A></Data>")


# -- issue 15 section 4: max_record_bytes exact on the finished record; libxml2's text bound ---------------
def _record_of(size: int, tail: bytes = b"") -> bytes:
    """<Account><Name>xxx</Name></Account> of exactly ``size`` bytes."""
    pre, post = b"<Account><Name>", b"</Name>" + tail + b"</Account>"
    return pre + b"x" * (size - len(pre) - len(post)) + post


@pytest.mark.parametrize("chunk_bytes", [65536, 1000])
def test_max_record_bytes_is_exact_on_the_finished_record(chunk_bytes):
    assert [c.end - c.start for c in read_all(b"<Data>" + _record_of(100_000) + b"</Data>",
                                              chunk_bytes=chunk_bytes, max_record_bytes=100_000)] == [100_000]
    for size in (100_001, 104_857):  # one byte over; and over by less than one read chunk
        # refused once finished, or before (memory bound) when the unfinished record is already over
        with pytest.raises(InputError, match=rf"^record 1 \(from byte 6\) is (?:{size:,} bytes, )?over the 100,000 "
                           r"byte limit of one record \(setting max_record_bytes\): split it or raise the setting$"):
            read_all(b"<Data>" + _record_of(size) + b"</Data>", chunk_bytes=chunk_bytes, max_record_bytes=100_000)


def test_the_default_limit_refuses_a_1_048_531_byte_record():
    with pytest.raises(InputError, match=r"is 1,048,531 bytes, over the 1,000,000 byte limit"):
        read_all(b"<Data>" + _record_of(1_048_531) + b"</Data>")


def test_a_text_over_libxml2s_bound_is_reported_as_such_naming_the_setting():
    doc = b"<Data>" + _record_of(12_000_000) + b"</Data>"
    expected = ("a text value near line 1 is over 10,000,000 bytes, the XML parser's (libxml2) bound on one "
                "text; the file is not refused as malformed, the value is too long to parse safely, and raising "
                "the setting max_record_bytes does not lift this bound: shorten the value or split it over "
                "several fields")
    with pytest.raises(InputError) as exc:
        cx.check_document(io.BytesIO(doc), "Account", "Name")
    assert str(exc.value) == f"the file: {expected}"
    (chunk,) = read_all(doc, max_record_bytes=20_000_000)  # the byte reader delimits it fine
    with pytest.raises(InputError) as exc:
        cx.parse_record(head_of(doc), chunk)
    assert str(exc.value) == f"record 1 (from byte 6): {expected}"
    assert "well-formed" not in str(exc.value)
