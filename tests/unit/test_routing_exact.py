"""Exact values of routing.py written by hand: execution names, what a console input carries, and
dry run from any source (the cases the mutation run, `make mutation`, showed untested)."""

from __future__ import annotations

import hashlib

import pytest
from vendor_import.errors import InputError
from vendor_import.logic.routing import ImportRequest, build_request, execution_name, parse_console_input


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@pytest.mark.parametrize(("bucket", "key", "version", "expected"), [
    ("b", "inbox/hopex/My File (1).mgl", None, "hopex-My-File-1-mgl-" + digest("b\ninbox/hopex/My File (1).mgl\n")),
    ("b", "inbox/hopex/a.mgl", "v7", "hopex-a-mgl-" + digest("b\ninbox/hopex/a.mgl\nv7")),
    ("b", "inbox/hopex/--a--.csv", None, "hopex-a---csv-" + digest("b\ninbox/hopex/--a--.csv\n")),
    ("b", "inbox/hopex/()", None, "hopex-file-" + digest("b\ninbox/hopex/()\n")),
    ("b", "x.csv", None, "unrouted-x-csv-" + digest("b\nx.csv\n")),
    ("b", "inbox/hopex/Xa.csvX", None, "hopex-Xa-csvX-" + digest("b\ninbox/hopex/Xa.csvX\n")),
    ("b", "inbox/my vendor/a.csv", None, "my-vendor-a-csv-" + digest("b\ninbox/my vendor/a.csv\n")),
    ("b", "inbox/averyveryverylongvendor/" + "y" * 40 + ".csv", None,
     "averyveryver-" + "y" * 30 + "-" + digest("b\ninbox/averyveryverylongvendor/" + "y" * 40 + ".csv\n")),
])
def test_execution_name_exactly(bucket, key, version, expected):
    assert execution_name(bucket, key, version) == expected
    assert len(expected) <= 80


def test_console_input_keeps_etag_and_size():
    req = parse_console_input({"bucket": "b", "key": "inbox/hopex/a.mgl", "etag": "abc", "size": 5})
    assert (req.etag, req.size) == ("abc", 5)


def test_dry_run_travels_in_the_execution_input():
    assert ImportRequest("b", "inbox/hopex/a.mgl", "hopex", dry_run=True).to_input() == {
        "bucket": "b", "key": "inbox/hopex/a.mgl", "dry_run": True}


@pytest.mark.parametrize("source", [{"metadata": {"dry-run": "true"}}, {"console_options": {"dry_run": "yes"}}],
                         ids=["metadata", "option"])
def test_any_source_asking_for_a_dry_run_wins_over_an_explicit_false(source):
    assert build_request("b", "inbox/hopex/a.mgl", dry_run=False, **source).dry_run is True


# -- an unknown console input field: the field meant, or none --------------------------------------------
@pytest.mark.parametrize(("field", "hint"), [
    ("Dry-Run", ': did you mean "dry_run"?'),  # the same name once case and punctuation are dropped
    ("dryRun", ': did you mean "dry_run"?'),
    ("dry-run", ': did you mean "dry_run"?'),
    ("DRY_RUN", ': did you mean "dry_run"?'),
    ("option", ': did you mean "options"?'),
    ("versionId", ': did you mean "version_id"?'),
    ("Key", ': did you mean "key"?'),
    ("bucket_name", ': did you mean "bucket"?'),  # close enough (difflib ratio >= 0.6)
    ("targets", ': did you mean "target"?'),
    ("zzz", ""),  # nothing close: no guess
    ("quux", ""),
])
def test_an_unknown_console_field_names_the_closest_field_or_none(field, hint):
    with pytest.raises(InputError) as err:
        parse_console_input({"bucket": "b", "key": "inbox/hopex/x.mgl", field: True})
    assert str(err.value) == (f'unknown input field "{field}"{hint} '
                              "Input fields: bucket, key, version_id, options, dry_run, target")


def test_the_execution_input_names_a_target_other_than_the_default():
    request = build_request("b", "inbox/hopex/x.mgl", metadata={"target": "eu"}, etag="e1", size=5)
    assert request.to_input() == {"bucket": "b", "key": "inbox/hopex/x.mgl", "etag": "e1", "size": 5,
                                  "target": "eu"}
    assert "target" not in build_request("b", "inbox/hopex/x.mgl").to_input()


def test_a_bad_target_is_named_with_its_first_80_characters():
    from vendor_import.logic.routing import check_target

    with pytest.raises(InputError) as err:
        check_target("T" * 79 + "!?", "S3 metadata")
    assert str(err.value) == ("target '" + "T" * 79 + "!' from the S3 metadata is not a target name: use 1-64 "
                              "letters, digits, - or _ (no target means default)")


@pytest.mark.parametrize(("metadata", "console", "key", "where"), [
    ({}, "Bad Name!", "inbox/hopex/x.mgl", "console input"),
    ({"target": "Bad Name!"}, None, "inbox/hopex/x.mgl", "S3 metadata"),
    ({}, None, "inbox/hopex/target=Bad Name!/x.mgl", "key folder target="),
])
def test_a_bad_target_names_where_it_came_from(metadata, console, key, where):
    from vendor_import.logic.routing import choose_target

    with pytest.raises(InputError) as err:
        choose_target(key, metadata, console)
    assert str(err.value) == (f"target 'Bad Name!' from the {where} is not a target name: use 1-64 letters, digits, "
                              "- or _ (no target means default)")


def test_key_folders_around_the_options_and_the_target_are_skipped():
    from vendor_import.logic.routing import options_from_key, target_from_key

    key = "inbox/hopex/sub/target=eu/validate=AtEnd/x.mgl"
    assert options_from_key(key) == ({"validate": "AtEnd"}, False)
    assert target_from_key(key) == "eu"
    assert target_from_key("inbox/hopex/target=a=b/x.mgl") == "a=b"
    assert target_from_key("outbox/hopex/target=eu/x.mgl") is None


def test_an_unknown_option_in_the_key_is_refused_by_build_request():
    with pytest.raises(InputError, match="valdate=AtEnd"):
        build_request("b", "inbox/hopex/valdate=AtEnd/x.mgl")


def test_options_after_a_dry_run_folder_are_read_too():
    from vendor_import.logic.routing import options_from_key

    assert options_from_key("inbox/hopex/dry-run/validate=AtEnd/x.mgl") == ({"validate": "AtEnd"}, True)
