"""Routing: from an S3 key (or a console input) to an import request and an execution name."""

from __future__ import annotations

import re
from urllib.parse import quote_plus

import pytest
from vendor_import.errors import InputError
from vendor_import.logic.routing import (
    build_request,
    decode_event_key,
    execution_name,
    options_from_key,
    parse_console_input,
    vendor_of,
)

SFN_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


# -- key decoding -----------------------------------------------------------------------------------

def test_decode_event_key_reads_plus_as_space():
    assert decode_event_key("inbox/hopex/my+command+file.mgl") == "inbox/hopex/my command file.mgl"


def test_decode_event_key_reads_percent_20_as_space_and_percent_2b_as_plus():
    assert decode_event_key("inbox/hopex/a%20b%2Bc.mgl") == "inbox/hopex/a b+c.mgl"


def test_decode_event_key_reads_utf8_escapes():
    assert decode_event_key("inbox/hopex/caf%C3%A9+%E6%97%A5%E6%9C%AC.mgl") == "inbox/hopex/café 日本.mgl"


@pytest.mark.parametrize("key", ["inbox/aep/2024 Q1 (final) + extra/ünïcødé €.json",
                                 "inbox/cirrus/a&b=c/%literal%.xml"])
def test_decode_event_key_inverts_what_s3_encodes(key):
    assert decode_event_key(quote_plus(key, safe="/")) == key


# -- vendor and options from the key ----------------------------------------------------------------

def test_vendor_of_reads_the_segment_after_inbox():
    assert vendor_of("inbox/hopex/sub/dir/file.mgl") == "hopex"


@pytest.mark.parametrize("key", ["uploads/hopex/file.mgl", "hopex/file.mgl"])
def test_vendor_of_refuses_keys_outside_inbox(key):
    with pytest.raises(InputError, match="not under inbox/"):
        vendor_of(key)


@pytest.mark.parametrize("key", ["inbox/file.mgl", "inbox//file.mgl"])
def test_vendor_of_refuses_keys_without_a_vendor(key):
    with pytest.raises(InputError, match="names no vendor"):
        vendor_of(key)


def test_options_from_key_reads_option_segments_between_vendor_and_file():
    options, dry = options_from_key("inbox/hopex/validate=AtEnd/team/batch=7/file.mgl")
    assert options == {"validate": "AtEnd"}  # batch is no HOPEX option: a folder
    assert dry is False


def test_options_from_key_ignores_name_value_in_the_file_name():
    options, _ = options_from_key("inbox/hopex/a=b.mgl")
    assert options == {}


def test_options_from_key_keeps_equals_signs_inside_the_value():
    options, _ = options_from_key("inbox/aep/delimiter=a=b/x.json")
    assert options == {"delimiter": "a=b"}


# -- name=value folders: options only when the vendor has that option ---------------------------------
# Each vendor's option names (its connector's option_fields, docs/vendors/<vendor>.md), written by hand.
PARTITIONS = "year=2026/month=11/day=30/region=eu/dt=2026-11-30"


@pytest.mark.parametrize(("vendor", "key_options", "expected"), [
    ("hopex", "validate=AtEnd", {"validate": "AtEnd"}),
    ("campaign", "mapping_id=mapA/max_resubmits=2", {"mapping_id": "mapA", "max_resubmits": "2"}),
    ("aep", "format=csv/delimiter=;", {"format": "csv", "delimiter": ";"}),
    ("simplemente", "flux=ARTICLES", {"flux": "ARTICLES"}),
    ("cirrus", "object=Account/action=upsert/matching_field=Code",
     {"object": "Account", "action": "upsert", "matching_field": "Code"}),
])
def test_partition_folders_are_folders_and_known_names_are_options_for_every_vendor(vendor, key_options, expected):
    key = f"inbox/{vendor}/{PARTITIONS}/{key_options}/export=daily/events.data"
    options, dry = options_from_key(key)
    assert (options, dry) == (expected, False)
    assert build_request("b", key).options == expected


@pytest.mark.parametrize("vendor", ["hopex", "campaign", "aep", "simplemente", "cirrus"])
def test_the_data_lake_partition_layout_is_plain_folders_for_every_vendor(vendor):
    req = build_request("b", f"inbox/{vendor}/year=2026/month=11/day=30/events.ndjson")
    assert (req.vendor, req.options, req.dry_run) == (vendor, {}, False)


@pytest.mark.parametrize(("vendor", "segment", "meant"), [
    ("hopex", "valdate=AtEnd", "validate"),
    ("hopex", "valiate=AtEnd", "validate"),
    ("campaign", "maping_id=mapA", "mapping_id"),
    ("campaign", "max_resubmit=2", "max_resubmits"),
    ("aep", "formt=csv", "format"),
    ("aep", "delimeter=;", "delimiter"),
    ("simplemente", "flx=ARTICLES", "flux"),
    ("cirrus", "objet=Account", "object"),
    ("cirrus", "matching_feild=Code", "matching_field"),
])
def test_a_near_miss_of_an_option_name_fails_with_did_you_mean(vendor, segment, meant):
    key = f"inbox/{vendor}/year=2026/{segment}/file.data"
    with pytest.raises(InputError) as err:
        build_request("b", key)
    assert f"did you mean {meant}?" in err.value.message
    assert segment in err.value.message


@pytest.mark.parametrize(("segment", "expected"), [
    ("Validate=AtEnd", {"validate": "AtEnd"}),  # case aside, like S3 metadata names
    ("VALIDATE=Never", {"validate": "Never"}),
])
def test_option_names_in_the_key_ignore_case(segment, expected):
    assert options_from_key(f"inbox/hopex/{segment}/file.mgl")[0] == expected


def test_dashes_and_underscores_are_the_same_in_option_names():
    assert options_from_key("inbox/cirrus/matching-field=Code/file.xml")[0] == {"matching_field": "Code"}


@pytest.mark.parametrize("segment", ["dry-run", "DRY-RUN", "dry_run", "dryrun"])
def test_dry_run_segment_in_the_key_sets_dry_run(segment):
    options, dry = options_from_key(f"inbox/hopex/{segment}/file.mgl")
    assert dry is True and options == {}


def test_dry_run_from_s3_metadata():
    req = build_request("b", "inbox/hopex/file.mgl", metadata={"dry-run": "true"})
    assert req.dry_run is True
    assert "dry_run" not in req.options


def test_dry_run_metadata_false_keeps_a_real_import():
    assert build_request("b", "inbox/hopex/file.mgl", metadata={"dry-run": "no"}).dry_run is False


def test_dry_run_from_a_key_option_is_not_passed_on_as_an_option():
    req = build_request("b", "inbox/hopex/dry_run=true/file.mgl")
    assert req.dry_run is True
    assert "dry_run" not in req.options


def test_dry_run_from_a_console_option():
    req = build_request("b", "inbox/hopex/file.mgl", console_options={"dry_run": "yes"})
    assert req.dry_run is True


def test_console_dry_run_false_cannot_turn_a_dry_run_key_into_a_real_import():
    req = parse_console_input({"bucket": "b", "key": "inbox/hopex/dry-run/file.mgl", "dry_run": False})
    assert req.dry_run is True


def test_options_merge_key_then_metadata_then_console_most_explicit_wins():
    req = build_request("b", "inbox/cirrus/object=Account/action=insert/file.xml",
                        metadata={"Action": "update", "source-system": "crm"},
                        console_options={"object": "Contact"})
    assert req.options == {"object": "Contact", "action": "update"}


def test_metadata_that_is_no_option_of_the_vendor_is_ignored_not_an_error():
    # other tools put metadata of their own on objects (rclone's mtime, a source-system tag)
    req = build_request("b", "inbox/hopex/file.mgl", metadata={"mtime": "1700000000.1", "source-system": "crm",
                                                                "validate": "AtEnd"})
    assert req.options == {"validate": "AtEnd"}


def test_to_input_carries_what_s3_said_and_only_set_fields():
    req = build_request("b", "inbox/hopex/validate=Never/file.mgl", version_id="v1", etag="e", size=3)
    assert req.to_input() == {"bucket": "b", "key": "inbox/hopex/validate=Never/file.mgl", "version_id": "v1",
                              "etag": "e", "size": 3, "options": {"validate": "Never"}}
    assert build_request("b", "inbox/hopex/f").to_input() == {"bucket": "b", "key": "inbox/hopex/f"}


# -- execution names ----------------------------------------------------------------------------------

def test_execution_name_is_stable_for_the_same_object_version():
    assert execution_name("b", "inbox/hopex/f.mgl", "v1") == execution_name("b", "inbox/hopex/f.mgl", "v1")


def test_execution_name_differs_for_a_new_version_of_the_same_key():
    assert execution_name("b", "inbox/hopex/f.mgl", "v1") != execution_name("b", "inbox/hopex/f.mgl", "v2")


def test_execution_name_differs_per_bucket_and_per_key():
    base = execution_name("b", "inbox/hopex/f.mgl", "v1")
    assert base != execution_name("other", "inbox/hopex/f.mgl", "v1")
    assert base != execution_name("b", "inbox/hopex/g.mgl", "v1")


def test_execution_name_is_readable_vendor_and_file_first():
    assert execution_name("b", "inbox/hopex/clean.mgl", None).startswith("hopex-clean-mgl-")


@pytest.mark.parametrize("key", [
    "inbox/hopex/" + "very-long-name-" * 20 + ".mgl",
    "inbox/" + "v" * 60 + "/file.mgl",
    "inbox/hopex/dir with spaces/Ünïcødé (copy) [1] {x} *?.mgl",
    "inbox/hopex/日本語.mgl",
    "inbox/hopex/sub/",
    "elsewhere/file.mgl",
])
def test_execution_name_fits_step_functions_rules(key):
    name = execution_name("bucket", key, "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo")
    assert SFN_NAME.match(name), name
    assert len(name) <= 80


# -- console input ------------------------------------------------------------------------------------

def test_console_input_with_bucket_and_key_is_an_import_request():
    req = parse_console_input({"bucket": "b", "key": "inbox/hopex/validate=AtEnd/f.mgl"})
    assert (req.bucket, req.key, req.vendor, req.options, req.dry_run) == (
        "b", "inbox/hopex/validate=AtEnd/f.mgl", "hopex", {"validate": "AtEnd"}, False)


def test_console_input_options_and_version_are_kept():
    req = parse_console_input({"bucket": "b", "key": "inbox/hopex/f.mgl", "version_id": "v9",
                               "options": {"validate": "Never"}, "dry_run": True})
    assert req.version_id == "v9" and req.options == {"validate": "Never"} and req.dry_run is True


@pytest.mark.parametrize("inp", [None, [], "inbox/hopex/f.mgl", 42])
def test_console_input_that_is_not_an_object_is_refused(inp):
    with pytest.raises(InputError, match="must be a JSON object"):
        parse_console_input(inp)


@pytest.mark.parametrize("missing", ["bucket", "key"])
def test_console_input_missing_field_is_named(missing):
    inp = {"bucket": "b", "key": "inbox/hopex/f.mgl"}
    del inp[missing]
    with pytest.raises(InputError, match=f'input field "{missing}" is missing') as exc:
        parse_console_input(inp)
    assert '{"bucket": "<bucket>", "key": "inbox/<vendor>/<file>"}' in str(exc.value)


@pytest.mark.parametrize(("field", "value"), [("bucket", 3), ("bucket", ""), ("key", ["k"]), ("key", "  ")])
def test_console_input_wrong_type_or_empty_is_named(field, value):
    inp = {"bucket": "b", "key": "inbox/hopex/f.mgl", field: value}
    with pytest.raises(InputError, match=f'input field "{field}" must be a non-empty string'):
        parse_console_input(inp)


@pytest.mark.parametrize(("field", "value", "says"), [
    ("options", ["validate=AtEnd"], "must be an object"),
    ("dry_run", "yes", "must be true or false"),
    ("version_id", 7, "must be a string"),
])
def test_console_input_optional_fields_are_type_checked(field, value, says):
    inp = {"bucket": "b", "key": "inbox/hopex/f.mgl", field: value}
    with pytest.raises(InputError, match=f'input field "{field}" {says}'):
        parse_console_input(inp)


def test_console_input_key_outside_inbox_is_refused():
    with pytest.raises(InputError, match="not under inbox/"):
        parse_console_input({"bucket": "b", "key": "hopex/f.mgl"})
