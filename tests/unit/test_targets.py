"""Targets: several named systems of one vendor in one settings document, the target an upload
chooses, the learned pace kept per target, and the target's metrics dimension set."""

from __future__ import annotations

import json

import pytest
from vendor_import import metrics as import_metrics
from vendor_import.connectors import load_settings
from vendor_import.errors import InputError, SettingsError
from vendor_import.logic.routing import build_request, choose_target, options_from_key, parse_console_input
from vendor_import.settings import target_names, target_settings

PROD = {"base_url": "https://hopex.example.com", "environment_id": "e", "repository_id": "prod-repo",
        "profile_id": "p", "auth": {"type": "basic", "username": "u", "password": "prod-password"}}
TEST = {**PROD, "base_url": "https://hopex-test.example.com", "repository_id": "test-repo",
        "auth": {"type": "basic", "username": "u", "password": "test-password"}}
MULTI = {"vendor": "hopex", "targets": {"prod": PROD, "test": TEST}}
SINGLE = {"vendor": "hopex", **PROD}


# -- the settings document ------------------------------------------------------------------------------------

def test_a_single_target_document_is_target_default():
    assert target_names(SINGLE) == ["default"]
    assert target_settings(SINGLE, "hopex") == SINGLE
    assert load_settings("hopex", SINGLE)["repository_id"] == "prod-repo"


def test_each_target_of_a_multi_target_document_is_a_full_settings_document():
    assert target_names(MULTI) == ["prod", "test"]
    assert target_names(json.dumps(MULTI)) == ["prod", "test"]
    test = load_settings("hopex", json.dumps(MULTI), "test")
    assert (test["vendor"], test["base_url"], test["repository_id"]) == (
        "hopex", "https://hopex-test.example.com", "test-repo")
    assert load_settings("hopex", MULTI, "prod")["auth"]["password"] == "prod-password"


def test_an_unknown_target_is_an_input_error_naming_the_known_ones():
    with pytest.raises(InputError) as err:
        load_settings("hopex", MULTI, "staging")
    assert err.value.message == "unknown target 'staging' for hopex: the settings define prod, test"
    with pytest.raises(InputError) as err:
        load_settings("hopex", SINGLE, "prod")
    assert err.value.message == "unknown target 'prod' for hopex: the settings define default"
    with pytest.raises(InputError):  # a multi-target document without a "default" target
        load_settings("hopex", MULTI)


@pytest.mark.parametrize(("doc", "expected"), [
    ({"vendor": "hopex", "targets": {}}, "setting targets must be an object of target names to settings"),
    ({"vendor": "hopex", "targets": []}, "setting targets must be an object of target names to settings"),
    ({"vendor": "hopex", "targets": {"pr od": PROD}}, "target name 'pr od' must be 1-64 letters"),
    ({"vendor": "hopex", "timeout_seconds": 5, "targets": {"prod": PROD}},
     "setting timeout_seconds sits beside targets: put it inside each target"),
    ({"vendor": "hopex", "targets": {"prod": "https://x"}}, "setting targets.prod must be a JSON object"),
    ({"vendor": "hopex", "targets": {"prod": {**PROD, "vendor": "cirrus"}}},
     "setting targets.prod.vendor differs from the document's vendor"),
])
def test_a_malformed_multi_target_document_is_a_settings_error(doc, expected):
    with pytest.raises(SettingsError) as err:
        load_settings("hopex", doc, "prod")
    assert err.value.message.startswith(expected)


def test_a_targets_own_fields_are_validated_with_the_target_named_nowhere_else():
    broken = {"vendor": "hopex", "targets": {"prod": PROD, "test": {**TEST, "repository_id": None}}}
    assert load_settings("hopex", broken, "prod")["repository_id"] == "prod-repo"  # prod still works
    with pytest.raises(SettingsError) as err:
        load_settings("hopex", broken, "test")
    assert err.value.message.startswith("missing setting repository_id")


# -- choosing the target ------------------------------------------------------------------------------------

def test_the_key_folder_target_is_not_an_option_nor_a_near_miss():
    assert options_from_key("inbox/hopex/target=prod/validate=AtEnd/f.mgl", {"validate"}) == (
        {"validate": "AtEnd"}, False)
    req = build_request("b", "inbox/hopex/target=prod/f.mgl")
    assert (req.target, req.options) == ("prod", {})
    assert build_request("b", "inbox/hopex/f.mgl").target == "default"


def test_precedence_is_console_then_metadata_then_key():
    key = "inbox/hopex/target=prod/f.mgl"
    assert choose_target(key, {}) == "prod"
    assert choose_target(key, {"Target": "test"}) == "test"  # metadata names compare case-insensitively
    assert choose_target(key, {"target": "test"}, "uat") == "uat"
    assert choose_target("inbox/hopex/f.mgl", {"other": "x"}) == "default"


def test_the_target_travels_in_the_execution_input_and_back():
    req = build_request("b", "inbox/hopex/f.mgl", metadata={"target": "test"})
    assert req.to_input() == {"bucket": "b", "key": "inbox/hopex/f.mgl", "target": "test"}
    assert parse_console_input(req.to_input()).target == "test"
    assert "target" not in build_request("b", "inbox/hopex/f.mgl").to_input()  # default: as before targets
    # a console user who puts it among the options means the same
    console = parse_console_input({"bucket": "b", "key": "inbox/hopex/f.mgl", "options": {"target": "uat"}})
    assert (console.target, console.options) == ("uat", {})


@pytest.mark.parametrize("bad", ["", "prod test", "x" * 65, "prod/2", 42])
def test_a_malformed_target_name_is_an_input_error(bad):
    with pytest.raises(InputError) as err:
        parse_console_input({"bucket": "b", "key": "inbox/hopex/f.mgl", "target": bad})
    assert "is not a target name: use 1-64 letters, digits, - or _" in err.value.message


# -- the learned pace, per target ------------------------------------------------------------------------------

def finished(job_id, target, seconds, updated_at):
    record = {"job_id": job_id, "vendor": "hopex", "state": "SUCCEEDED", "vendor_seconds": seconds,
              "source": {"size": 100}, "updated_at": updated_at}
    if target is not None:
        record["target"] = target
    return record


def test_recent_jobs_and_the_learned_pace_are_per_target(account):
    from vendor_import.logic.vendor_step import VendorStep

    jobs = account.jobs
    # three old prod jobs of 600 s, then 25 newer test jobs of 30 s (more than one query page
    # of 20), and three jobs written before targets existed (target default), of 100 s
    for i in range(3):
        jobs.put_status(finished(f"prod-{i}", "prod", 600, f"2026-01-01T00:00:0{i}Z"))
        jobs.put_status(finished(f"old-{i}", None, 100, f"2026-01-02T00:00:0{i}Z"))
    for i in range(25):
        jobs.put_status(finished(f"test-{i:02d}", "test", 30, f"2026-01-03T00:00:{i:02d}Z"))
    assert [j["job_id"] for j in jobs.recent("hopex", 20, target="prod")] == ["prod-2", "prod-1", "prod-0"]
    assert [j["job_id"] for j in jobs.recent("hopex", 20, target="default")] == ["old-2", "old-1", "old-0"]
    assert len(jobs.recent("hopex", 20, target="test")) == 20
    step = VendorStep(vendor="hopex", settings_loader=lambda target="default": {}, s3_client=account.s3,
                      store=account.store, jobs=jobs)
    assert step._learned_pace(100, "job-x", "prod")["expected_seconds"] == 600
    assert step._learned_pace(100, "job-x", "test")["expected_seconds"] == 30
    assert step._learned_pace(100, "job-x", "default")["expected_seconds"] == 100
    assert step._learned_pace(100, "job-x", "uat") is None  # no history: the static backoff


# -- metrics ----------------------------------------------------------------------------------------------------

def test_emf_keeps_the_alarms_dimension_set_and_adds_one_with_the_target(monkeypatch, capsys):
    from aws_lambda_powertools import Metrics

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "s3-vendor-import")
    metrics = Metrics(namespace="UnitTargets")
    metrics.clear_metrics()
    capsys.readouterr()
    import_metrics.import_ended(metrics, {"vendor": "hopex", "target": "prod", "state": "FAILED", "polls": 2})
    import_metrics.import_started(metrics, "hopex")
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    # the order of names inside a set means nothing to CloudWatch
    assert [[sorted(s) for s in d["_aws"]["CloudWatchMetrics"][0]["Dimensions"]] for d in docs] == [
        [["service", "vendor"], ["service", "target", "vendor"]]] * 2
    assert [(d["vendor"], d["target"]) for d in docs] == [("hopex", "prod"), ("hopex", "default")]
    assert docs[0]["ImportsFailed"] == [1.0] and docs[1]["ImportsStarted"] == [1.0]
    metrics.clear_metrics()


def test_a_resubmit_goes_to_the_same_target():
    from local.operator import resubmit_metadata

    record = {"vendor": "cirrus", "target": "prod", "source": {"key": "inbox/cirrus/f.xml"}}
    assert resubmit_metadata(record, "inbox/cirrus/f.resubmit-1.xml", {}) == {"target": "prod"}  # console's
    assert resubmit_metadata(record, "inbox/cirrus/target=prod/f.resubmit-1.xml", {}) == {}  # in the key
    assert resubmit_metadata(record, "inbox/cirrus/f.resubmit-1.xml", {"target": "prod"}) == {"target": "prod"}
    assert resubmit_metadata({**record, "target": "default"}, "inbox/cirrus/f.resubmit-1.xml", {}) == {}


def test_the_dashboard_shows_imports_per_target_and_keeps_the_per_vendor_widgets():
    import re

    from local.template_deploy import load_sam_template

    body, _ = load_sam_template()["Resources"]["ImportsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(re.sub(r"\$\{([^}]+)\}", r"SUB:\1", body))["widgets"]
    expressions = {w["properties"]["title"]: w["properties"]["metrics"][0][0].get("expression", "")
                   for w in widgets if w["type"] == "metric" and isinstance(w["properties"]["metrics"][0][0], dict)}
    by_target = expressions["Imports ended, per vendor target (settings targets)"]
    assert by_target == ("SEARCH('{S3VendorImport,service,target,vendor} service=\"s3-vendor-import\" MetricName=("
                         '"ImportsSucceeded" OR "ImportsSucceededWithRejects" OR "ImportsFailed" OR "ImportsTimedOut")'
                         "', 'Sum', 300)")
    # the per-vendor widgets search the {service, vendor} set only (the alarms' set), not the target one
    assert expressions["Imports started, per vendor"].startswith(
        "SEARCH('{S3VendorImport,service,vendor} service=\"s3-vendor-import\" MetricName=")


def test_the_vendor_function_reads_each_target_from_its_one_secret(aws, monkeypatch):
    """wiring.load_vendor_settings: the one vendor secret, one validated settings dict per target
    (the same object while the secret is unchanged, so each target keeps its connector and token)."""
    import boto3
    from aws_lambda_powertools.utilities import parameters
    from vendor_import import wiring

    monkeypatch.setattr(wiring, "_settings_cache", {})
    parameters.clear_caches()
    arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="hopex-settings", SecretString=json.dumps(MULTI))["ARN"]
    prod = wiring.load_vendor_settings("hopex", arn, "prod")
    test = wiring.load_vendor_settings("hopex", arn, "test")
    assert (prod["repository_id"], test["repository_id"]) == ("prod-repo", "test-repo")
    assert wiring.load_vendor_settings("hopex", arn, "prod") is prod
    with pytest.raises(InputError, match="unknown target 'default' for hopex: the settings define prod, test"):
        wiring.load_vendor_settings("hopex", arn)
    parameters.clear_caches()
