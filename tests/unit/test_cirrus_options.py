"""Cirrus options and settings: where object, action, matching_field and use_external_id come
from (key segments / metadata / console options, then the settings' objects, then defaults)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vendor_import.connectors import build_connector, load_settings
from vendor_import.errors import InputError, SettingsError

ROOT = Path(__file__).resolve().parents[2]


def connector(**overrides):
    doc = {"vendor": "cirrus", "base_url": "https://cirrus.example.com", "username": "u",
           "password": "unit-test-password",
           "objects": {"Contact": {"action": "insert", "matching_field": "Email", "use_external_id": False}}}
    doc.update(overrides)
    return build_connector("cirrus", load_settings("cirrus", doc))


def test_the_example_settings_document_loads():
    doc = json.loads((ROOT / "events/settings/cirrus.example.json").read_text())
    settings = load_settings("cirrus", doc)
    assert settings["body_field"] == ""
    assert build_connector("cirrus", settings).objects["Account"]["matching_field"] == "Name"


def test_settings_defaults_apply_when_nothing_is_given():
    conn = connector(defaults={"action": "upsert", "matching_field": "Name"})
    params = conn._resolve({}, "Account")
    assert params == {"object": "Account", "action": "upsert", "matching_field": "Name",
                      "use_external_id": True}  # useExternalId: documented default true


@pytest.mark.parametrize("missing", ["action", "matching_field"])
def test_without_any_action_or_matching_field_the_upload_is_refused_naming_it(missing):
    """DataAction requires both on every call and documents no default: no built-in guess."""
    given = {"action": "upsert", "matching_field": "Name"}
    del given[missing]
    expected = (f"no {missing} for Account records: .* has no default; give it in the key .* or in the "
                f"settings \\(objects.Account.{missing} or defaults.{missing}\\)")
    with pytest.raises(InputError, match=expected):
        connector()._resolve(given, "Account")


def test_default_batch_size_is_the_published_samples_ten():
    assert connector().settings["batch_size"] == 10


def test_settings_objects_apply_to_that_object():
    params = connector()._resolve({}, "Contact")
    assert params == {"object": "Contact", "action": "insert", "matching_field": "Email",
                      "use_external_id": False}


def test_object_settings_match_case_insensitively():
    assert connector()._resolve({}, "contact")["matching_field"] == "Email"


def test_options_from_key_segments_win_and_are_coerced_from_strings():
    options = {"action": "Update", "matching_field": "LastName", "use_external_id": "true"}
    params = connector()._resolve(options, "Contact")
    assert params == {"object": "Contact", "action": "update", "matching_field": "LastName",
                      "use_external_id": True}


def test_object_option_names_the_object_whatever_the_record_element():
    params = connector()._resolve({"object": "Contact"}, "Object")
    assert params["object"] == "Contact"
    assert params["matching_field"] == "Email"  # the Contact defaults apply


def test_prefixed_record_element_gives_its_local_name():
    assert connector()._resolve({"action": "upsert", "matching_field": "Name"}, "crm:Account")["object"] == "Account"


def test_unknown_options_are_left_to_other_layers():
    assert connector()._resolve({"dry_run": "true"}, "Contact")["action"] == "insert"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"action": "merge"}, "option action must be one of"),
        ({"use_external_id": "perhaps"}, "option use_external_id must be true or false"),
        ({"object": "Account/../../x"}, "not a Cirrus Shield object name"),
        ({"matching_field": "Name&x=1"}, "not a field name"),
    ],
)
def test_bad_options_are_input_errors(options, message):
    with pytest.raises(InputError, match=message):
        connector()._resolve(options, "Contact")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"objects": {"Account": {"action": "Merge"}}}, "objects.Account.action must be one of"),
        ({"objects": {"Account": {"colour": "red"}}}, "unknown setting objects.Account.colour"),
        ({"defaults": {"action": "merge"}}, "defaults.action must be one of"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
    ],
)
def test_bad_settings_name_the_field(overrides, message):
    with pytest.raises(SettingsError, match=message):
        connector(**overrides)


def test_missing_password_is_named():
    with pytest.raises(SettingsError, match="missing setting password"):
        load_settings("cirrus", {"vendor": "cirrus", "base_url": "https://x.example.com", "username": "u"})
