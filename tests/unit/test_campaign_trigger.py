"""The Campaign trigger: mapping id from the key or the JSON body, options, clear InputErrors."""

from __future__ import annotations

import json

import pytest
from vendor_import.connectors import validate_options
from vendor_import.connectors.base import StepContext
from vendor_import.connectors.campaign import parse_trigger
from vendor_import.errors import InputError
from vendor_import.source import BytesSource


def parse(body: bytes | str | dict = b"", default_max_resubmits: int = 3, **options):
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    ctx = StepContext(source=BytesSource(body, name="t.json"), options=options)
    return parse_trigger(ctx, default_max_resubmits=default_max_resubmits)


def test_mapping_from_json_body():
    assert parse({"mapping_id": "ProfileMapping"}) == {"mapping_id": "ProfileMapping", "max_resubmits": 3}


def test_mapping_from_key_with_empty_file():
    assert parse(b"", mapping="okFromKey")["mapping_id"] == "okFromKey"
    assert parse(b"  \n", mapping_id="okFromKey")["mapping_id"] == "okFromKey"


def test_key_and_body_agreeing_is_fine():
    assert parse({"mapping_id": "m1"}, mapping="m1")["mapping_id"] == "m1"


def test_key_and_body_disagreeing_is_an_error():
    with pytest.raises(InputError, match="names XDM mapping 'm1' but trigger file t.json names 'm2'"):
        parse({"mapping_id": "m2"}, mapping="m1")


def test_two_key_segments_disagreeing():
    with pytest.raises(InputError, match="two different XDM mappings"):
        parse(b"", mapping="a", mapping_id="b")


def test_byte_order_mark_is_accepted():
    assert parse(b'\xef\xbb\xbf{"mapping_id": "m1"}')["mapping_id"] == "m1"


def test_options_in_body_override_the_setting():
    assert parse({"mapping_id": "m1", "options": {"max_resubmits": 0}})["max_resubmits"] == 0
    assert parse(b"", default_max_resubmits=5, mapping="m1")["max_resubmits"] == 5


def test_options_from_key_arrive_as_strings():
    assert parse(b"", mapping="m1", max_resubmits="2")["max_resubmits"] == 2
    with pytest.raises(InputError, match="max_resubmits .* must be a whole number"):
        parse(b"", mapping="m1", max_resubmits="two")


@pytest.mark.parametrize(
    ("body", "options", "expected"),
    [
        (b"{not json", {}, "not valid JSON: .* line 1 column 2"),
        (b'["m1"]', {}, "must be a JSON object .* not a JSON list"),
        (b"", {}, "names no XDM mapping: upload it under inbox/campaign/mapping="),
        (b"{}", {}, "names no XDM mapping"),
        (b'{"mapping": "m1"}', {}, "unknown key 'mapping'"),
        (b'{"mapping_id": 42}', {}, "mapping_id must be a string, not int"),
        (b'{"mapping_id": "m1", "options": [1]}', {}, "options must be a JSON object"),
        (b'{"mapping_id": "m1", "options": {"max_resubmits": -1}}', {}, "max_resubmits must be at least 0"),
        (b'{"mapping_id": "m1", "options": {"speed": 1}}', {},
         r"unknown option speed: expected one of max_resubmits \(in trigger file t.json\)"),
        (b'{"mapping_id": "has space"}', {}, "'has space' is not well-formed"),
        (b'{"mapping_id": "../admin"}', {}, "not well-formed"),
        (b'{"mapping_id": "a/b"}', {}, "not well-formed"),
        (b"", {"mapping": "x" * 200}, "not well-formed"),
        (b"\xff\xfe{", {}, "not UTF-8"),
    ],
)
def test_bad_triggers(body, options, expected):
    with pytest.raises(InputError, match=expected):
        parse(body, **options)


def test_oversized_trigger():
    with pytest.raises(InputError, match=r"70,000 bytes, over the trigger file's 64 KB limit \(65,536 bytes\)"):
        parse(b" " * 70000, mapping="m1")


def test_declared_options_validate_through_the_registry():
    assert validate_options("campaign", {"mapping": "m1", "max_resubmits": "2"}) == {
        "mapping": "m1", "mapping_id": None, "max_resubmits": 2}
    with pytest.raises(InputError):
        validate_options("campaign", {"mapping": "m1", "colour": "red"})
