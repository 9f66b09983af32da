"""Exactly one submission per uploaded object version.

The same S3 event delivered many times, at once (threads sending the same SQS body, and several
pumps of the queue running together) and late (after the first import ended), starts one
execution and makes one vendor submission, counted at the simulator. A re-upload of the same key
is a new object version, hence a new import.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from .helpers import (
    VENDORS,
    assert_one_outcome,
    executions_for,
    make_sample,
    outcomes_by_job,
    report,
    submissions,
    take_queue_messages,
)

pytestmark = pytest.mark.e2e

COPIES = 25  # deliveries of the same event at once
LATE = 3  # deliveries after the import ended


def deliver(pipe, body: str, copies: int) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: pipe.sqs.send_message(QueueUrl=pipe.queue_url, MessageBody=body), range(copies)))


def pump_concurrently(pipe, pumps: int = 3) -> list[dict]:
    """Several event source mapping pollers at once, as Lambda runs them."""
    outcomes: list[dict] = []
    lock = threading.Lock()

    def one():
        got = pipe.pump_queue(max_rounds=100)
        with lock:
            outcomes.extend(got)

    threads = [threading.Thread(target=one) for _ in range(pumps)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return outcomes + pipe.pump_queue()  # whatever a visibility change put back


@pytest.mark.parametrize("vendor", VENDORS)
def test_one_event_delivered_many_times_at_once_and_late_starts_one_import(pipe, sims, vendor, request):
    sample = make_sample(vendor, f"once-{request.node.name}", records=4)
    put = pipe.upload(sample.body, sample.key)
    # S3's own notification (S3's test event aside): now delivered COPIES times at once
    (body,) = [b for b in take_queue_messages(pipe) if json.loads(b).get("Records")]
    assert json.loads(body)["Records"][0]["s3"]["object"]["versionId"] == put["VersionId"]

    deliver(pipe, body, COPIES)
    outcomes = pump_concurrently(pipe)
    # every copy handled (some maybe twice: SQS delivers at least once, and so does moto to
    # pollers racing for the same message)
    assert len(outcomes) >= COPIES
    (result,) = pipe_results(pipe, sample.key, outcomes)
    assert result.state in ("SUCCEEDED", "SUCCEEDED_WITH_REJECTS"), result.record

    for _ in range(LATE):  # the same event again, long after the import ended
        deliver(pipe, body, 1)
        assert len(pipe.pump_queue()) == 1

    executions = executions_for(pipe, vendor, key=sample.key)
    assert [e["name"] for e in executions] == [result.job_id]
    assert submissions(sims, sample) == 1
    found = outcomes_by_job(pipe, [result.job_id])[result.job_id]
    assert_one_outcome(found, result.job_id)
    assert pipe.dlq_depth() == 0
    report("exactly once (tests/reliability/test_exactly_once.py)",
           f"{vendor}: 1 S3 event delivered {COPIES} times at once + {LATE} times late -> "
           f"{len(executions)} execution, {submissions(sims, sample)} vendor submission, "
           "1 status record, 1 SNS message")


@pytest.mark.parametrize("vendor", VENDORS)
def test_reupload_of_the_same_key_is_a_new_import(pipe, sims, vendor, request):
    sample = make_sample(vendor, f"again-{request.node.name}", records=3)
    first = pipe.import_file(sample.body, sample.key)
    second = pipe.import_file(sample.body, sample.key)  # same key, same bytes: a new object version
    assert first.job_id != second.job_id
    assert first.state == second.state and first.state in ("SUCCEEDED", "SUCCEEDED_WITH_REJECTS")
    assert {e["name"] for e in executions_for(pipe, vendor, key=sample.key)} == {first.job_id, second.job_id}
    assert submissions(sims, sample) == 2
    found = outcomes_by_job(pipe, [first.job_id, second.job_id])
    versions = {assert_one_outcome(found[j], j)["source"]["version_id"] for j in (first.job_id, second.job_id)}
    assert len(versions) == 2


def pipe_results(pipe, key, outcomes):
    """The import(s) the pumped outcomes of ``key`` started (one per distinct object version)."""
    by_version = {}
    for outcome in outcomes:
        if outcome["key"] == key:
            by_version[outcome.get("version") or outcome.get("etag")] = outcome
    return [pipe._result_for(key, outcome) for outcome in by_version.values()]
