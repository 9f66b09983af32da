"""Vendor settings validation: every error names the field; defaults are filled; secrets are
registered with scrub so they can never be written anywhere."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from vendor_import.connectors import VENDORS, load_settings
from vendor_import.errors import SettingsError
from vendor_import.scrub import scrub
from vendor_import.settings import Field, validate_settings

# events/settings/<vendor>.example.json: the documented settings document of each vendor
EXAMPLES = sorted(p for p in (Path(__file__).resolve().parents[2] / "events" / "settings").glob("*.example.json")
                  if p.name.split(".")[0] in VENDORS)

VENDOR_FIELDS = (
    Field("api_key", str, required=True, secret=True, doc="the API key"),
    Field("mode", str, default="fast", choices=("fast", "safe")),
    Field("batch", int, default=10, minimum=1),
    Field("auth", dict, required=True, fields=(
        Field("user", str, required=True),
        Field("password", str, required=True, secret=True),
    )),
)


def doc(**overrides):
    base = {"vendor": "acme", "base_url": "https://acme.example.com/api/", "api_key": "k-" + uuid.uuid4().hex,
            "auth": {"user": "u", "password": "p-" + uuid.uuid4().hex}}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def validate(d):
    return validate_settings(d, "acme", VENDOR_FIELDS)


# -- missing ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["vendor", "base_url", "api_key", "auth"])
def test_missing_required_field_is_named(name):
    with pytest.raises(SettingsError, match=f"missing setting {name}"):
        validate(doc(**{name: ...}))


def test_missing_nested_field_is_named_with_its_path():
    with pytest.raises(SettingsError, match="missing setting auth.password"):
        validate(doc(auth={"user": "u"}))


def test_null_required_field_counts_as_missing():
    with pytest.raises(SettingsError, match="missing setting api_key: the API key"):
        validate(doc(api_key=None))


def test_empty_required_string_is_refused():
    with pytest.raises(SettingsError, match="setting api_key must not be empty"):
        validate(doc(api_key="   "))


# -- wrong types ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "value", "says"), [
    ("batch", "10", "setting batch must be a whole number"),
    ("timeout_seconds", "30", "setting timeout_seconds must be a whole number or a number"),
    ("verify_tls", "yes", "setting verify_tls must be true or false"),
    ("auth", "u:p", "setting auth must be an object"),
    ("poll", [1, 2], "setting poll must be an object"),
])
def test_wrong_type_is_named(name, value, says):
    with pytest.raises(SettingsError, match=says):
        validate(doc(**{name: value}))


@pytest.mark.parametrize(("name", "value"), [("batch", True), ("timeout_seconds", False)])
def test_true_false_is_not_a_number(name, value):
    with pytest.raises(SettingsError, match=f"setting {name} must be .*, not true/false"):
        validate(doc(**{name: value}))


def test_true_false_is_not_a_float_either():
    with pytest.raises(SettingsError, match="setting poll.factor must be a number, not true/false"):
        validate(doc(poll={"factor": True}))


def test_whole_number_is_accepted_where_a_number_is_expected():
    assert validate(doc(poll={"factor": 3}))["poll"]["factor"] == 3.0


def test_nested_wrong_type_is_named_with_its_path():
    with pytest.raises(SettingsError, match="setting poll.first_wait_seconds must be a whole number"):
        validate(doc(poll={"first_wait_seconds": "5"}))


def test_settings_must_be_an_object():
    with pytest.raises(SettingsError, match="must be a JSON object"):
        validate(["vendor", "acme"])


def test_settings_json_text_is_parsed_and_bad_json_is_named():
    assert validate(json.dumps(doc()))["vendor"] == "acme"
    with pytest.raises(SettingsError, match="settings for acme are not valid JSON"):
        validate('{"vendor": "acme",')


# -- values -----------------------------------------------------------------------------------------------

def test_value_outside_choices_is_named_with_the_choices():
    with pytest.raises(SettingsError, match="setting mode must be one of fast, safe, not 'slow'"):
        validate(doc(mode="slow"))


@pytest.mark.parametrize(("name", "value"), [("batch", 0), ("deadline_seconds", 0), ("timeout_seconds", 0.5)])
def test_value_below_minimum_is_named(name, value):
    with pytest.raises(SettingsError, match=f"setting {name} must be at least"):
        validate(doc(**{name: value}))


def test_vendor_must_match_the_vendor_the_document_is_used_for():
    with pytest.raises(SettingsError, match="setting vendor is 'hopex' but this document is used for 'acme'"):
        validate(doc(vendor="hopex"))


# -- base_url -------------------------------------------------------------------------------------------

def test_plain_http_is_refused_by_default():
    with pytest.raises(SettingsError, match="setting base_url uses plain http://.*allow_http"):
        validate(doc(base_url="http://127.0.0.1:8080"))


def test_plain_http_is_accepted_with_allow_http():
    assert validate(doc(base_url="http://127.0.0.1:8080", allow_http=True))["base_url"] == "http://127.0.0.1:8080"


@pytest.mark.parametrize("url", ["ftp://acme.example.com", "acme.example.com", "//acme"])
def test_base_url_without_http_scheme_is_refused(url):
    with pytest.raises(SettingsError, match="setting base_url must start with https://"):
        validate(doc(base_url=url))


def test_base_url_trailing_slash_is_dropped():
    assert validate(doc())["base_url"] == "https://acme.example.com/api"


# -- unknown ----------------------------------------------------------------------------------------------

def test_unknown_field_is_named_with_the_known_ones():
    with pytest.raises(SettingsError, match="unknown setting colour: expected one of .*api_key.*base_url"):
        validate(doc(colour="blue"))


def test_unknown_nested_field_is_named_with_its_path():
    with pytest.raises(SettingsError, match="unknown setting auth.token: expected one of password, user"):
        validate(doc(auth={"user": "u", "password": "pw-xyz", "token": "t"}))


# -- defaults -----------------------------------------------------------------------------------------------

def test_defaults_are_filled_for_common_and_vendor_fields():
    settings = validate(doc())
    assert settings["timeout_seconds"] == 30
    assert settings["verify_tls"] is True
    assert settings["allow_http"] is False
    assert settings["deadline_seconds"] == 86400
    assert settings["poll"] == {"first_wait_seconds": 5, "max_wait_seconds": 300, "factor": 2.0}
    assert settings["mode"] == "fast" and settings["batch"] == 10


def test_partial_nested_object_gets_the_other_defaults():
    assert validate(doc(poll={"max_wait_seconds": 60}))["poll"] == {
        "first_wait_seconds": 5, "max_wait_seconds": 60, "factor": 2.0}


def test_validation_does_not_modify_the_document():
    original = doc()
    snapshot = json.loads(json.dumps(original))
    validate(original)
    assert original == snapshot


# -- secrets ------------------------------------------------------------------------------------------------

def test_secret_values_are_registered_with_scrub():
    d = doc()
    validate(d)
    text = f"calling with key {d['api_key']} and password {d['auth']['password']}"
    assert scrub(text) == "calling with key *** and password ***"


def test_non_secret_values_are_not_masked():
    d = doc(auth={"user": "visible-user-name", "password": "pw-" + uuid.uuid4().hex})
    validate(d)
    assert scrub("user visible-user-name") == "user visible-user-name"


def test_secret_is_not_echoed_in_a_type_error():
    with pytest.raises(SettingsError) as exc:
        validate(doc(auth={"user": "u", "password": 12345678}))
    assert "12345678" not in str(exc.value)


# -- real documents -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_settings_document_validates(path):
    vendor = path.name.split(".")[0]
    settings = load_settings(vendor, json.loads(path.read_text()))
    assert settings["vendor"] == vendor


@pytest.mark.parametrize("path,value,message", [
    (("poll", "factor"), float("inf"), "setting poll.factor must be a finite number"),
    (("poll", "factor"), float("nan"), "setting poll.factor must be a finite number"),
    (("poll", "max_wait_seconds"), 86_401, "setting poll.max_wait_seconds must be at most 86400"),
    (("poll", "first_wait_seconds"), 10**400, "setting poll.first_wait_seconds must be at most 86400"),
    (("deadline_seconds",), 366 * 86_400 + 1, "setting deadline_seconds must be at most 31622400"),
    (("timeout_seconds",), 10**400, "setting timeout_seconds must be at most 1000000000000000"),
])
def test_numbers_that_would_overflow_the_poll_loop_are_refused(path, value, message):
    from vendor_import.settings import COMMON_FIELDS, validate_fields

    doc = {"vendor": "hopex", "base_url": "https://h.example"}
    if len(path) == 2:
        doc[path[0]] = {path[1]: value}
    else:
        doc[path[0]] = value
    with pytest.raises(SettingsError) as err:
        validate_fields(doc, COMMON_FIELDS, "")
    assert str(err.value).startswith(message)


def test_json_infinity_and_nan_in_a_settings_document_are_refused():
    from vendor_import.settings import validate_settings

    with pytest.raises(SettingsError, match="poll.factor must be a finite number"):
        validate_settings('{"vendor": "hopex", "base_url": "https://h.example", "poll": {"factor": Infinity}}',
                          "hopex", ())
