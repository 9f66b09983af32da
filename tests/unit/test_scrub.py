"""scrub: credentials never reach a log line, an error, a status record or an SNS message."""

from __future__ import annotations

import io
import logging
import sys
import uuid

import pytest
from vendor_import.scrub import ScrubFilter, register_secret, scrub, scrub_obj


def unique(prefix: str = "s") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


# -- query strings ----------------------------------------------------------------------------------------

def test_auth_token_in_a_query_string_is_masked_and_other_parameters_kept():
    url = "https://cirrus.example.com/RestApi/DataAction/Account?authToken=abc123XYZ&action=insertorupdate"
    assert scrub(url) == "https://cirrus.example.com/RestApi/DataAction/Account?authToken=***&action=insertorupdate"


def test_username_and_password_query_parameters_are_masked_case_insensitively():
    assert scrub("GET /login?UserName=bob&Password=hunter22&lang=fr") == "GET /login?UserName=***&Password=***&lang=fr"


@pytest.mark.parametrize("name", ["token", "access_token", "client_secret", "secret", "sig",
                                  "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token"])
def test_every_credential_parameter_is_masked(name):
    assert scrub(f"https://h/p?a=1&{name}=VALUE123&b=2") == f"https://h/p?a=1&{name}=***&b=2"


def test_query_value_stops_at_quotes_and_spaces():
    assert scrub("""error 'https://h/p?token=abc' then "x" """) == """error 'https://h/p?token=***' then "x" """


def test_a_parameter_merely_containing_token_in_its_name_is_kept():
    assert scrub("https://h/p?tokenizer=whitespace") == "https://h/p?tokenizer=whitespace"


# -- Authorization headers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("Authorization: Bearer eyJhbGciOi.J9.sig", "Authorization: Bearer ***"),
    ("authorization: basic dXNlcjpwYXNz", "authorization: basic ***"),
    ('{"Authorization": "Bearer abc.def"}', '{"Authorization": "Bearer ***"}'),
    ("{'Authorization': 'Basic dXNlcjpwYXNz', 'Accept': 'x'}", "{'Authorization': 'Basic ***', 'Accept': 'x'}"),
    ("headers Authorization=Bearer tok123 sent", "headers Authorization=Bearer *** sent"),
])
def test_authorization_header_values_are_masked(text, expected):
    assert scrub(text) == expected


# -- registered secrets ---------------------------------------------------------------------------------------------

def test_registered_secret_is_masked_wherever_it_appears():
    secret = unique("pw")
    register_secret(secret)
    assert scrub(f"login failed for {secret}; retry with {secret}!") == "login failed for ***; retry with ***!"


def test_short_values_are_not_registered_as_secrets():
    register_secret("abc")
    register_secret("")
    register_secret(None)
    assert scrub("abc is fine") == "abc is fine"


def test_the_longest_secret_is_masked_first():
    short = unique("k")
    long = short + "-suffix"
    register_secret(short)
    register_secret(long)
    assert scrub(f"[{long}]") == "[***]"


def test_scrub_accepts_any_object():
    secret = unique("obj")
    register_secret(secret)
    assert scrub(ValueError(f"bad {secret}")) == "bad ***"


def test_scrub_obj_masks_every_string_in_a_json_structure_and_keeps_other_values():
    secret = unique("nested")
    register_secret(secret)
    doc = {"a": [f"x {secret}", 3, None, {"b": f"?token={secret}"}], "n": 1.5, "t": (secret,)}
    assert scrub_obj(doc) == {"a": ["x ***", 3, None, {"b": "?token=***"}], "n": 1.5, "t": ["***"]}


# -- logging filter ----------------------------------------------------------------------------------------------------

def record_with(msg, args=(), exc=None) -> logging.LogRecord:
    exc_info = None
    if exc is not None:
        try:
            raise exc
        except type(exc):
            exc_info = sys.exc_info()
    return logging.LogRecord("t", logging.ERROR, __file__, 1, msg, args, exc_info)


def test_scrub_filter_masks_the_formatted_message():
    secret = unique("log")
    register_secret(secret)
    record = record_with("calling %s with %s", ("https://h/p?authToken=abc", secret))
    assert ScrubFilter().filter(record) is True
    assert record.getMessage() == "calling https://h/p?authToken=*** with ***"


def test_scrub_filter_masks_the_exception_text_and_names_its_type():
    secret = unique("exc")
    register_secret(secret)
    record = record_with("step failed", exc=RuntimeError(f"vendor said: invalid password {secret}"))
    ScrubFilter().filter(record)
    assert record.exc_info is None
    assert secret not in record.exc_text
    assert "RuntimeError: vendor said: invalid password ***" in record.exc_text
    assert record.getMessage() == "step failed (RuntimeError)"


def test_scrub_filter_survives_a_bad_format_string():
    record = record_with("%d items", ("many",))
    assert ScrubFilter().filter(record) is True
    assert record.getMessage() == "%d items"


def test_scrub_filter_on_a_logger_keeps_secrets_out_of_the_output():
    secret = unique("out")
    register_secret(secret)
    stream = io.StringIO()
    logger = logging.getLogger(f"scrub-test-{uuid.uuid4().hex}")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.addFilter(ScrubFilter())
    try:
        raise ConnectionError(f"Authorization: Bearer {secret}")
    except ConnectionError:
        logger.exception("token %s refused", secret)
    output = stream.getvalue()
    assert secret not in output
    assert "ERROR token *** refused (ConnectionError)" in output
    assert "ConnectionError: Authorization: Bearer ***" in output  # the traceback is still there


def test_scrub_filter_on_a_powertools_logger_keeps_the_scrubbed_traceback(monkeypatch):
    import json

    from aws_lambda_powertools import Logger

    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "scrub-test")
    secret = unique("pt")
    register_secret(secret)
    stream = io.StringIO()
    logger = Logger(service=f"scrub-{uuid.uuid4().hex}", logger_handler=logging.StreamHandler(stream))
    logger.addFilter(ScrubFilter())
    try:
        raise ValueError(f"vendor refused {secret}")
    except ValueError:
        logger.exception("step failed with %s", secret)
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert secret not in stream.getvalue()
    assert line["message"] == "step failed with *** (ValueError)"
    assert line["exception_name"] == "ValueError"
    assert "ValueError: vendor refused ***" in line["exception"]
