"""Metrics per vendor (EMF through powertools Metrics), the handlers' observability wiring and the
CloudWatch dashboard that shows them."""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path

import pytest
from vendor_import import metrics as import_metrics

ROOT = Path(__file__).resolve().parents[2]
VENDORS = ("hopex", "campaign", "aep", "simplemente", "cirrus")
NAMESPACE = "UnitImports"


def record(state="SUCCEEDED", vendor="cirrus", **extra):
    return {"job_id": f"{vendor}-x-0123", "vendor": vendor, "state": state, "dry_run": False,
            "counts": {"records": 12, "sent": 12, "accepted": 9, "rejected": 3}, "rejects": {"rows": 3},
            "polls": 4, "duration_seconds": 12.5, **extra}


@pytest.fixture
def emf(monkeypatch, capsys):
    """Metrics enabled (the tests' environment disables them) and a reader of the EMF printed."""
    from aws_lambda_powertools import Metrics

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "s3-vendor-import")
    metrics = Metrics(namespace=NAMESPACE)
    metrics.clear_metrics()
    capsys.readouterr()

    def documents():
        out = capsys.readouterr().out
        return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]

    yield metrics, documents
    metrics.clear_metrics()


def values_of(doc):
    names = [m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    return {n: doc[n][0] if isinstance(doc[n], list) and len(doc[n]) == 1 else doc[n] for n in names}


# -- the mapping from a status record ---------------------------------------------------------------------

@pytest.mark.parametrize(("state", "name"), list(import_metrics.STATE_METRICS.items()))
def test_each_final_state_counts_one_import_under_its_own_metric(state, name):
    names = [n for n, _, _ in import_metrics.ended_values(record(state))]
    assert names[0] == name
    assert [n for n in names if n.startswith("Imports")] == [name]


def test_records_polls_and_duration_come_from_the_status_record():
    values = {n: (str(u.value), v) for n, u, v in import_metrics.ended_values(record("SUCCEEDED_WITH_REJECTS"))}
    assert values == {"ImportsSucceededWithRejects": ("Count", 1), "RecordsSent": ("Count", 12),
                      "RecordsRefused": ("Count", 3), "Polls": ("Count", 4), "DurationSeconds": ("Seconds", 12.5)}


def test_a_vendor_without_record_counts_sends_no_records_metric_but_its_rejects_rows():
    hopex = record("SUCCEEDED_WITH_REJECTS", "hopex", counts={"polls": 3}, rejects={"rows": 2})
    values = {n: v for n, _, v in import_metrics.ended_values(hopex)}
    assert "RecordsSent" not in values and values["RecordsRefused"] == 2


def test_a_dry_run_counts_as_validated_and_sends_no_records_metrics():
    dry = record("VALIDATED", dry_run=True, counts={"would_reject": 2})
    names = [n for n, _, _ in import_metrics.ended_values(dry)]
    assert names == ["ImportsValidated", "Polls", "DurationSeconds"]


def test_every_metric_name_is_declared():
    emitted = {n for s in import_metrics.STATE_METRICS for n, _, _ in import_metrics.ended_values(record(s))}
    assert emitted | {"ImportsStarted"} == set(import_metrics.METRIC_NAMES)


# -- EMF output ---------------------------------------------------------------------------------------------

def test_import_ended_prints_one_emf_document_with_the_vendor_dimension(emf):
    metrics, documents = emf
    import_metrics.import_ended(metrics, record("FAILED", "aep"))
    (doc,) = documents()
    cw = doc["_aws"]["CloudWatchMetrics"][0]
    assert cw["Namespace"] == NAMESPACE
    assert sorted(cw["Dimensions"][0]) == ["service", "vendor"]
    assert doc["vendor"] == "aep" and doc["service"] == "s3-vendor-import"
    assert values_of(doc) == {"ImportsFailed": 1.0, "RecordsSent": 12.0, "RecordsRefused": 3.0, "Polls": 4.0,
                              "DurationSeconds": 12.5}
    assert {m["Name"]: m["Unit"] for m in cw["Metrics"]}["DurationSeconds"] == "Seconds"


def test_imports_of_several_vendors_in_one_invocation_keep_their_own_vendor(emf):
    metrics, documents = emf
    import_metrics.import_started(metrics, "hopex")
    import_metrics.import_started(metrics, "cirrus")
    import_metrics.import_ended(metrics, record("SUCCEEDED", "campaign"))
    docs = documents()
    assert [(d["vendor"], sorted(values_of(d))) for d in docs] == [
        ("hopex", ["ImportsStarted"]), ("cirrus", ["ImportsStarted"]),
        ("campaign", ["DurationSeconds", "ImportsSucceeded", "Polls", "RecordsRefused", "RecordsSent"])]


def test_disabled_metrics_print_nothing_and_keep_nothing(monkeypatch, capsys):
    from aws_lambda_powertools import Metrics

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    metrics = Metrics(namespace=NAMESPACE)
    for _ in range(150):  # powertools prints by itself at 100 values, disabled or not
        import_metrics.import_started(metrics, "hopex")
    assert '"_aws"' not in capsys.readouterr().out
    assert metrics.metric_set == {}


def test_a_metrics_failure_never_fails_the_import(emf):
    metrics, documents = emf
    import_metrics.emit(metrics, "hopex", [("Bad", "NotAUnit", 1)])
    assert documents() == []
    assert metrics.metric_set == {}


def test_a_finalize_retried_after_it_completed_emits_nothing_more(account, emf):
    """Metrics hang on the SNS publication: once per import, however often Finalize runs."""
    from vendor_import.dal.notifier import Notifier
    from vendor_import.logic.finalize import Finalizer

    metrics, documents = emf
    notifier = Notifier(account.sns, account.topic_arn, on_published=partial(import_metrics.import_ended, metrics))
    finalizer = Finalizer(account.store, account.jobs, notifier)
    event = {"input": {"bucket": account.bucket, "key": "inbox/hopex/a.mgl",
                       "job": {"vendor": "hopex", "state": "SUCCEEDED", "polls": 2, "counts": {"polls": 2}}},
             "execution_name": "hopex-a-mgl-1", "started_at": "2024-05-01T10:00:00.000Z"}
    finalizer.from_state(event)
    finalizer.from_state(event)
    docs = documents()
    assert [(d["vendor"], values_of(d)["ImportsSucceeded"]) for d in docs] == [("hopex", 1.0)]
    assert len(account.messages()) == 1


# -- the handlers --------------------------------------------------------------------------------------------

def handler_source(role: str) -> str:
    return (ROOT / "functions" / role / "app.py").read_text()


def test_every_handler_logs_json_with_the_job_id_as_correlation_id():
    assert 'correlation_id_path="execution_name"' in handler_source("vendor")
    assert 'correlation_id_path="execution_name || detail.name"' in handler_source("finalize")
    assert "logger.set_correlation_id(job_id)" in handler_source("submit")
    for role in ("vendor", "finalize", "submit"):
        assert "route_library_logs(logger)" in handler_source(role)
        assert "@tracer.capture_lambda_handler" in handler_source(role)


def test_finalize_correlation_id_path_finds_the_job_in_both_event_shapes():
    from aws_lambda_powertools.utilities.jmespath_utils import query

    assert query(envelope="execution_name || detail.name", data={"execution_name": "job-1"}) == "job-1"
    assert query(envelope="execution_name || detail.name", data={"detail": {"name": "job-2"}}) == "job-2"


def test_submit_handler_names_jobs_as_the_router_does(monkeypatch):
    """The submit handler computes the correlation id before routing: it must be the job id."""
    import importlib.util

    from vendor_import.logic.routing import execution_name

    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    spec = importlib.util.spec_from_file_location("submit_app_under_test", ROOT / "functions/submit/app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    body = json.dumps({"Records": [{"s3": {"bucket": {"name": "b"}, "object": {
        "key": "inbox/hopex/a+b%C3%A9.mgl", "versionId": "v9", "eTag": "e", "sequencer": "s"}}}]})
    assert app.job_ids(body) == [execution_name("b", "inbox/hopex/a bé.mgl", "v9")]
    no_version = json.dumps({"Records": [{"s3": {"bucket": {"name": "b"},
                                                 "object": {"key": "inbox/x/f", "eTag": "e"}}}]})
    assert app.job_ids(no_version) == [execution_name("b", "inbox/x/f", "e")]
    assert app.job_ids("not json") == [] and app.job_ids('{"Event": "s3:TestEvent"}') == []


def test_library_logs_go_through_the_json_handler_with_the_correlation_id(capsys):
    import io
    import logging

    from aws_lambda_powertools import Logger
    from vendor_import.observability import LIBRARY_LOGGERS, route_library_logs

    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate, logging.getLogger(n).level)
             for n in LIBRARY_LOGGERS}
    stream = io.StringIO()
    logger = Logger(service="unit-obs", logger_handler=logging.StreamHandler(stream))
    try:
        assert route_library_logs(logger) is False  # not in Lambda: logging left alone
        assert route_library_logs(logger, force=True) is True
        logger.set_correlation_id("cirrus-a-xml-42")
        logging.getLogger("vendor_import.dal.notifier").warning("hook failed with token=abc&authToken=s3cr3t")
        logging.getLogger("urllib3.connectionpool").warning("Retrying (Retry(total=2))")
    finally:
        for n, (handlers, propagate, level) in saved.items():
            lg = logging.getLogger(n)
            lg.handlers, lg.propagate = handlers, propagate
            lg.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["correlation_id"] for line in lines] == ["cirrus-a-xml-42"] * 2
    assert "s3cr3t" not in stream.getvalue()


# -- the template ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def template():
    from local.template_deploy import load_sam_template

    return load_sam_template()


@pytest.fixture(scope="module")
def dashboard(template):
    body, variables = template["Resources"]["ImportsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    return json.loads(re.sub(r"\$\{([^}]+)\}", lambda m: f"SUB:{m.group(1)}", body)), variables


def dashboard_metrics(dashboard):
    body, _ = dashboard
    return [m for w in body["widgets"] for m in w["properties"].get("metrics", [])]


def searches(dashboard) -> list[tuple[str, str]]:
    """(search expression with its ${...} variables written in, statistic) of every SEARCH line."""
    _, variables = dashboard
    variables = {k: re.sub(r"\$\{([^}]+)\}", r"SUB:\1", v["Fn::Sub"]) if isinstance(v, dict) else v
                 for k, v in variables.items()}
    out = []
    for m in dashboard_metrics(dashboard):
        if isinstance(m[0], dict) and "expression" in m[0]:
            found = re.fullmatch(r"SEARCH\('(.*)', '(\w+)', 300\)", m[0]["expression"])
            assert found, m
            text = re.sub(r"SUB:(\w+)\b(?!:)", lambda v: str(variables.get(v.group(1), v.group(0))), found.group(1))
            out.append((text.replace('\\"', '"'), found.group(2)))
    return out


def test_functions_and_state_machines_are_traced(template):
    assert template["Globals"]["Function"]["Tracing"] == "Active"
    machines = [r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::StateMachine"]
    assert len(machines) == 5 and all(m["Properties"]["Tracing"] == {"Enabled": True} for m in machines)


def test_dashboard_shows_every_metric_per_vendor_in_the_functions_namespace(template, dashboard):
    # one SEARCH per metric over the dimensions the functions emit: one line per vendor, a new
    # vendor included without an edit of the dashboard
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    schema = f'{{{env["POWERTOOLS_METRICS_NAMESPACE"]},service,vendor}} service="{env["POWERTOOLS_SERVICE_NAME"]}"'
    shown = {text for text, _ in searches(dashboard)}
    for name in import_metrics.METRIC_NAMES:
        assert f'{schema} MetricName="{name}"' in shown, name


def test_dashboard_shows_the_dlq_depth_and_the_state_machine_failures(dashboard):
    metrics = dashboard_metrics(dashboard)
    assert [m[:4] for m in metrics if isinstance(m[0], str)] \
        == [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "SUB:UploadDeadLetterQueue.QueueName"],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "SUB:FinalizeDeadLetterQueue.QueueName"]]
    # the state machines of this stack are named <stack>-<vendor>-import: their ARNs hold "stateMachine:<stack>-"
    machines = '{AWS/States,StateMachineArn} "stateMachine:SUB:AWS::StackName-"'
    assert (f'{machines} MetricName=("ExecutionsFailed" OR "ExecutionsTimedOut" OR "ExecutionsAborted")',
            "Sum") in searches(dashboard)


def test_dashboard_widgets_fit_the_grid(dashboard):
    body, _ = dashboard
    for w in body["widgets"]:
        assert w["x"] >= 0 and w["x"] + w["width"] <= 24
        if w["type"] == "metric":
            assert w["properties"]["region"] == "SUB:AWS::Region" and w["properties"]["metrics"]


def test_the_stack_outputs_the_dashboard_url(template):
    assert "ImportsDashboard" in template["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]
