"""The fast paths found by bench/ give the same results as the straightforward code they replace:
form encoding (Cirrus), one lxml parse per batch (Cirrus), NDJSON records sent as written (AEP),
and a pacer that starts each step without a burst (AEP)."""

from __future__ import annotations

import json
import random
import time
from urllib.parse import quote_plus

import pytest
from lxml import etree
from vendor_import.connectors import cirrus_xml as cx
from vendor_import.connectors import load_settings
from vendor_import.connectors.aep import AepConnector, _Pacer
from vendor_import.connectors.aep_records import read_items
from vendor_import.errors import InputError
from vendor_import.source import BytesSource


# -- Cirrus: form encoding -------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "", "plain", "a b+c%d", "%25 already escaped %", "<Data><A><D>2017-06-12 15:40:47+02</D></A></Data>",
    "é€😀 mixed \n\t\r \x00 ~._-", "".join(chr(i) for i in range(0, 0x800)),
])
def test_form_quote_is_quote_plus(text):
    assert cx.form_quote(text) == quote_plus(text)


def test_form_quote_is_quote_plus_on_random_text():
    rng = random.Random(4)
    alphabet = "%+ <>/&;=?#é€😀aZ09_.-~\n\t\"'"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert cx.form_quote(text) == quote_plus(text), text


# -- Cirrus: one parse per batch -------------------------------------------------------------------
def _chunks(doc: bytes):
    import io

    reader = cx.RecordReader(io.BytesIO(doc))
    head = reader.read_head()
    return head, list(reader.records(head))


DOC = (b'<?xml version="1.0"?>\n<Data xmlns:x="urn:x">\n'
       b'  <Account a="1"><Name>A &amp; B</Name><x:Ext>1</x:Ext></Account>\n'
       b'  <Account><Name>C</Name><!-- note --><Success>FALSE</Success><ErrorMessage>bad</ErrorMessage></Account>\n'
       b'  <Account/>\n</Data>\n')


def test_parse_records_matches_one_parse_per_record():
    head, chunks = _chunks(DOC)
    together = cx.parse_records(head, chunks)
    alone = [cx.parse_record(head, c) for c in chunks]
    assert [etree.tostring(e) for e in together] == [etree.tostring(e) for e in alone]
    assert [cx.record_xml(e) for e in together] == [cx.record_xml(e) for e in alone]


def test_parse_records_names_the_bad_record():
    head, chunks = _chunks(DOC)
    chunks[1].data = chunks[1].data.replace(b"</Name>", b"</Nom>")  # record 2 is not well-formed
    with pytest.raises(InputError, match="record 2 "):
        cx.parse_records(head, chunks)


@pytest.mark.parametrize("answer", [
    b"<Data><Account><Name>a</Name><Success>TRUE</Success><GUID>1</GUID><ErrorMessage/></Account>"
    b"<Account><success>\nFALSE\n</success><guid/><errormessage>no  way</errormessage></Account></Data>",
    b'<Data xmlns="urn:y"><Object><Success>True</Success><GUID>7</GUID></Object></Data>',
    b"<Account><Success>TRUE</Success><GUID>9</GUID><ErrorMessage /></Account>",
    b"<Error><Message>Authorization has been denied</Message></Error>",
])
def test_xml_results(answer):
    results, message = cx.parse_results(answer, "application/xml")
    root = etree.fromstring(answer)
    if results is None:
        assert message == "Authorization has been denied"
        return
    expected = []
    for e in ([root] if any(cx.local_name(c).lower() == "success" for c in root) else list(root)):
        fields = {}
        for c in e:
            fields.setdefault(cx.local_name(c).lower(), " ".join((c.text or "").split()))
        expected.append((fields["success"].lower() == "true", fields.get("guid", ""), fields.get("errormessage", "")))
    assert [(r.success, r.guid, r.error) for r in results] == expected


# -- AEP: NDJSON records sent as written -----------------------------------------------------------
def _connector(**overrides) -> AepConnector:
    return AepConnector(load_settings("aep", {"vendor": "aep", "base_url": "https://dcs.example.com",
                                              "inlet_id": "i", "flow_id": "f", **overrides}))


def test_ndjson_messages_are_the_records_as_written():
    lines = [b'{"id": 1, "name": "\\u00e9t\\u00e9"}', b'  {"id":2,"n":[1,2.50,{"a":null}]}  \r', b'{"id": NaN}']
    items = list(read_items(BytesSource(b"\n".join(lines) + b"\n", "r.ndjson"), "ndjson", max_item_bytes=1000))
    conn = _connector()
    assert conn._check(items[0])[0] == lines[0]
    assert conn._check(items[1])[0] == lines[1].strip()
    assert json.loads(conn._check(items[1])[0]) == items[1].record
    message, code, reason = conn._check(items[2])  # NaN: parsed, but refused as before
    assert message is None and code == "invalid_json" and "NaN" in reason


def test_xdm_envelope_around_the_record_as_written():
    conn = _connector(message_mode="xdm", schema_id="https://ns.adobe.com/t/schemas/s", dataset_id="d",
                      ims_org_id="O@AdobeOrg")
    item = next(read_items(BytesSource(b'{"id": 1}\n', "r.ndjson"), "ndjson", max_item_bytes=1000))
    assert json.loads(conn._check(item)[0]) == json.loads(conn.encode({"id": 1}))


def test_pacer_after_assume_busy_spaces_from_the_start():
    pacer = _Pacer(requests_per_second=50, messages_per_second=1_000_000)
    pacer.assume_busy()
    start = time.monotonic()
    for _ in range(10):  # no burst: 10 requests spaced by 20 ms
        pacer.acquire(1)
    assert 0.15 < time.monotonic() - start < 0.6
