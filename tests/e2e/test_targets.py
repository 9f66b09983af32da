"""Targets: two HOPEX systems (prod and test) in one settings secret, each served by its own
simulator on its own port with credentials of its own, through the whole local pipeline.

An upload chooses its target by key folder ``target=<name>``, S3 metadata ``target`` or the console
input's ``"target"``; none means ``default``; an unknown one ends FAILED naming the known ones,
before any vendor call. The target is in the status record, the SNS attribute ``target`` (a filter
policy selects one target) and the subject."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest

from local.simulators import start_targets, targets_document
from local.simulators.hopex import TOKEN_PATH

pytestmark = pytest.mark.e2e

CLEAN = b'.Create ."Org-Unit" "Sales Department"\n.Validate\n'


@pytest.fixture
def targets(e2e):
    """Settings with three HOPEX targets: default (the shared simulator), prod and test (one
    simulator each). The e2e fixture puts the single-target settings back afterwards."""
    sims = start_targets("hopex", ["prod", "test"])
    doc = targets_document("hopex", {"default": e2e.sim, **sims})
    e2e.pipe.set_settings("hopex", doc)
    yield sims
    for sim in sims.values():
        sim.stop()


def imported_files(sim) -> list[str]:
    return sorted(job.filename for job in sim.jobs.values())


def secrets_of(sim) -> set[str]:
    return {sim.password, sim.client_secret, *sim.tokens}


def everything_sent_to(sim) -> str:
    return json.dumps([[r.path, r.headers, r.body.decode("utf-8", "replace")] for r in sim.requests])


def filtered_queue(pipe, name: str, policy: dict) -> str:
    url = pipe.sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = pipe.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pipe.sns.subscribe(TopicArn=pipe.deployment.refs["CompletionTopic"], Protocol="sqs", Endpoint=arn,
                       Attributes={"FilterPolicy": json.dumps(policy)})
    return url


def test_each_target_receives_exactly_its_imports_with_its_own_credentials(e2e, targets, capfd):
    prod, test = targets["prod"], targets["test"]
    prod_only = filtered_queue(e2e.pipe, f"{e2e.name}-prod"[:80], {"vendor": ["hopex"], "target": ["prod"]})
    by_key = e2e.key(segments="target=prod/")
    by_metadata = e2e.key("-meta.mgl")
    no_target = e2e.key("-plain.mgl")

    results = [e2e.pipe.import_file(CLEAN, by_key), e2e.pipe.import_file(CLEAN, by_metadata, {"target": "test"}),
               e2e.pipe.import_file(CLEAN, no_target)]

    assert [r.state for r in results] == ["SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]
    name = e2e.name
    assert imported_files(prod) == [f"{name}.mgl"]
    assert imported_files(test) == [f"{name}-meta.mgl"]
    assert imported_files(e2e.sim) == [f"{name}-plain.mgl"]
    # each simulator was asked for a token with its own user and password, and only once
    for sim in (prod, test, e2e.sim):
        (token_call,) = sim.requests_to(TOKEN_PATH, "POST")
        form = {k: v[0] for k, v in parse_qs(token_call.body.decode()).items()}
        assert (form["username"], form["password"]) == (sim.username, sim.password)
    # no target's credentials or tokens ever reached another target
    assert not [s for s in secrets_of(test) | secrets_of(e2e.sim) if s in everything_sent_to(prod)]
    assert not [s for s in secrets_of(prod) | secrets_of(e2e.sim) if s in everything_sent_to(test)]
    records = {}
    for result, target in zip(results, ("prod", "test", "default"), strict=True):
        record, message = e2e.one_outcome(job_id=result.job_id)
        assert record["target"] == target and message["attributes"]["target"] == target
        records[target] = (record, message)
    assert records["prod"][1]["subject"] == f"[hopex/prod] SUCCEEDED: {name}.mgl"
    assert records["default"][1]["subject"] == f"[hopex] SUCCEEDED: {name}-plain.mgl"
    # no credentials of any target in the records, messages or anything the functions printed
    printed = capfd.readouterr()
    text = json.dumps(records, default=str) + printed.out + printed.err
    assert not [s for s in secrets_of(prod) | secrets_of(test) | secrets_of(e2e.sim) if s in text]
    # a subscriber filtering on target prod hears of the prod import only
    got = e2e.pipe.sqs.receive_message(QueueUrl=prod_only, MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(json.loads(m["Body"])["Message"])["source"]["key"] for m in got] == [by_key]


def test_an_unknown_target_fails_naming_the_known_ones_without_calling_any_vendor(e2e, targets):
    key = e2e.key(segments="target=staging/")
    result = e2e.pipe.import_file(CLEAN, key)
    assert result.state == "FAILED"
    record, message = e2e.one_outcome(job_id=result.job_id)
    assert record["error"]["type"] == "InputError"
    assert record["error"]["message"] == "unknown target 'staging' for hopex: the settings define default, prod, test"
    assert record["target"] == "staging" and message["attributes"]["target"] == "staging"
    assert [sim.requests for sim in (e2e.sim, *targets.values())] == [[], [], []]


def test_an_unknown_target_from_metadata_fails_too(e2e, targets):
    result = e2e.pipe.import_file(CLEAN, e2e.key(), {"target": "Prod"})  # names are case-sensitive
    record, _ = e2e.one_outcome(job_id=result.job_id)
    assert result.state == "FAILED" and record["error"]["type"] == "InputError"
    assert record["error"]["message"] == "unknown target 'Prod' for hopex: the settings define default, prod, test"
    assert [sim.requests for sim in (e2e.sim, *targets.values())] == [[], [], []]


def test_a_malformed_target_name_fails_at_submit(e2e, targets):
    result = e2e.pipe.import_file(CLEAN, e2e.key(), {"target": "prod test"})
    record, _ = e2e.one_outcome(job_id=result.job_id)
    assert result.state == "FAILED" and record["error"]["type"] == "InputError"
    assert record["error"]["message"].startswith("target 'prod test' from the S3 metadata is not a target name")
    assert result.execution_status is None  # rejected by the submit function: no execution


def test_console_target_wins_over_metadata_and_key(e2e, targets):
    key = e2e.key(segments="target=prod/")
    e2e.pipe.s3.put_object(Bucket=e2e.pipe.bucket, Key=key, Body=CLEAN, Metadata={"target": "prod"})
    e2e.drop_messages(e2e.pipe.queue_url)
    result = e2e.pipe.start_console("hopex", {"bucket": e2e.pipe.bucket, "key": key, "target": "test"})
    assert result.state == "SUCCEEDED"
    record, _ = e2e.one_outcome(job_id=result.job_id)
    assert record["target"] == "test"
    assert imported_files(targets["test"]) == [f"{e2e.name}.mgl"] and imported_files(targets["prod"]) == []


def test_metadata_wins_over_the_key_and_a_console_start_reads_it(e2e, targets):
    key = e2e.key(segments="target=prod/")
    e2e.pipe.s3.put_object(Bucket=e2e.pipe.bucket, Key=key, Body=CLEAN, Metadata={"target": "test"})
    e2e.drop_messages(e2e.pipe.queue_url)
    result = e2e.pipe.start_console("hopex", {"bucket": e2e.pipe.bucket, "key": key})
    assert result.state == "SUCCEEDED"
    record, _ = e2e.one_outcome(job_id=result.job_id)
    assert record["target"] == "test"
    assert imported_files(targets["test"]) == [f"{e2e.name}.mgl"] and imported_files(targets["prod"]) == []


def test_list_target_and_show_name_the_target(e2e, targets, tmp_path):
    from local import operator

    prod = e2e.pipe.import_file(CLEAN, e2e.key(segments="target=prod/"))
    test = e2e.pipe.import_file(CLEAN, e2e.key("-t.mgl"), {"target": "test"})
    backend = operator.AwsBackend(e2e.pipe.s3, e2e.pipe.ddb, e2e.pipe.bucket, e2e.pipe.table.name)
    prod_ids = [r["job_id"] for r in backend.list("hopex", 50, "prod")]
    assert prod.job_id in prod_ids and test.job_id not in prod_ids
    assert all(r["target"] == "prod" for r in backend.list(None, 50, "prod"))
    assert test.job_id in [r["job_id"] for r in backend.list("hopex", 50, "test")]
    line = next(li for li in operator.list_text(backend.list("hopex", 50, "test")).splitlines() if test.job_id in li)
    assert " test " in line
    assert "target:         prod" in operator.show_text(backend.get(prod.job_id)).splitlines()
    # the local runner's output folder: the same filter
    local = operator.LocalBackend(prod.status_path.parent.parent)
    assert [r["job_id"] for r in local.list("hopex", 500, "test") if r["job_id"] in (prod.job_id, test.job_id)] == [
        test.job_id]
