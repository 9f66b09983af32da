"""The vendor guard's pure parts (logic/guard.py): limits, lanes, the shared per-second budget."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from vendor_import.connectors import load_settings
from vendor_import.logic.continuation import next_name
from vendor_import.logic.guard import Guard, SharedRate, lane_of, limit_of


def test_no_limit_applies_unless_the_target_sets_one():
    # no vendor document states a concurrency limit: 0 (none) by default
    assert limit_of({}) == 0
    assert limit_of({"max_concurrent_imports": None}) == 0
    assert limit_of({"max_concurrent_imports": 7}) == 7


def test_campaign_serializes_a_mapping_by_default_and_simplemente_a_flux_only_when_asked():
    # Campaign: seed 001 "Ingestion request already in progress for the Mapping ID"
    assert lane_of("campaign", {"mapping": "M1"}, {}) == "mapping=M1"
    assert lane_of("campaign", {"mapping_id": "M2"}, {}) == "mapping=M2"
    assert lane_of("campaign", {}, {}) == "mapping=?"
    assert lane_of("campaign", {"mapping": "M1"}, {"one_import_per_lane": False}) is None
    # simplement-e: seed 000 states no rule per flux: opt-in
    assert lane_of("simplemente", {"flux": "clients"}, {}) is None
    assert lane_of("simplemente", {"flux": "clients"}, {"one_import_per_lane": True}) == "flux=clients"
    assert lane_of("hopex", {"mapping": "M1"}, {"one_import_per_lane": True}) is None


@pytest.fixture
def table():
    with mock_aws():
        ddb = boto3.resource("dynamodb", region_name="eu-west-1")
        yield ddb.create_table(TableName="jobs", KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
                               AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
                               BillingMode="PAY_PER_REQUEST")


def test_two_pacers_of_one_target_share_one_rate(table):
    """Two imports (two SharedRate objects, as two Lambdas would hold) of a target at 100 tokens/s:
    paced together at 90/s (90 %), in leases of 9 tokens (a tenth of a second) that never overlap."""
    now = [1000.0]
    slept = []

    def sleep(s):
        slept.append(round(s, 6))
        now[0] += s

    key = "rate#cirrus#default#max_calls_per_second"
    a = SharedRate(table, key, 100, clock=lambda: now[0], sleep=sleep)
    b = SharedRate(table, key, 100, clock=lambda: now[0], sleep=sleep)
    for _ in range(9):  # a's lease: [1000.0, 1000.1)
        assert a.acquire(1) == 0
    assert round(b.acquire(1), 6) == 0.1  # b's lease starts where a's ends: [1000.1, 1000.2)
    for _ in range(8):
        assert b.acquire(1) == 0
    assert round(a.acquire(1), 6) == 0.1  # a's 10th token: a new lease, [1000.2, 1000.3)
    assert slept == [0.1, 0.1] and round(now[0], 6) == 1000.2
    assert table.get_item(Key={"job_id": key})["Item"]["tat"] == 1_000_300_000  # epoch microseconds


HOPEX = {"base_url": "https://hopex.example.com", "environment_id": "e", "repository_id": "r", "profile_id": "p",
         "auth": {"type": "basic", "username": "u", "password": "pw"}}


def test_the_guard_settings_are_each_targets_own_and_default_to_no_limit():
    doc = json.dumps({"vendor": "hopex", "targets": {"prod": {**HOPEX, "max_concurrent_imports": 2},
                                                     "test": HOPEX}})
    prod, test = load_settings("hopex", doc, "prod"), load_settings("hopex", doc, "test")
    assert limit_of(prod) == 2 and limit_of(test) == 0
    assert test["one_import_per_lane"] is None
    names = ("breaker_failures", "breaker_cooldown_seconds", "pause_deadline_seconds")
    assert [test[n] for n in names] == [5, 60, 21600]


def test_a_slot_follows_its_job_into_the_executions_it_continued_in():
    """Reclaim asks Step Functions about the holder's execution; one that SUCCEEDED without
    releasing went on in a new execution (continuation.next_name): the slot is alive while that one
    runs, and is freed once the last one has ended."""
    prefix = "arn:aws:states:eu-west-1:123456789012:execution:stack-hopex-import"
    statuses = {f"{prefix}:job-1": "SUCCEEDED", f"{prefix}:{next_name('job-1', 1)}": "SUCCEEDED",
                f"{prefix}:{next_name('job-1', 2)}": "RUNNING"}
    guard = Guard(table=None, describe=statuses.get)
    assert guard._current("job-1", {"arn": f"{prefix}:job-1", "index": 0}) == (f"{prefix}:{next_name('job-1', 2)}", 2)
    statuses[f"{prefix}:{next_name('job-1', 2)}"] = "FAILED"
    assert guard._current("job-1", {"arn": f"{prefix}:job-1", "index": 0}) is None
    statuses[f"{prefix}:job-2"] = "SUCCEEDED"  # ended for good (Finalize's release lost): no continuation exists
    assert guard._current("job-2", {"arn": f"{prefix}:job-2", "index": 0}) is None
