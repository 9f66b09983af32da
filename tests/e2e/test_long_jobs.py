"""Issue 13, part 2: long vendor jobs end SUCCEEDED or TIMED_OUT, never crash, and every
execution of the poll loop stays under Step Functions' limits (25,000 history events, the 7-day
execution timeout): the loop goes on in a new execution of the same job before either.

Vendor time is the runner's virtual clock (the nominal seconds of every Wait state), so a 30-day
job runs in minutes of wall time, with the waits scaled to nothing.
"""

from __future__ import annotations

import pytest

from local import moto_seams
from local.simulators import simulator_class

pytestmark = pytest.mark.e2e

HISTORY_LIMIT = 25_000  # https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html
DAY = 86_400


def history(pipe, arn: str) -> list[dict]:
    events, token = [], None
    while True:
        kwargs = {"executionArn": arn, "maxResults": 1000, **({"nextToken": token} if token else {})}
        page = pipe.sfn.get_execution_history(**kwargs)
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return events


def hopex_job(e2e, seconds: float, poll: dict, deadline: int):
    sim = e2e.sim
    sim.running_polls, sim.job_seconds, sim.clock = 0, seconds, moto_seams.virtual_clock
    e2e.pipe.set_settings("hopex", {**sim.settings(), "poll": poll, "deadline_seconds": deadline})
    started = moto_seams.virtual_clock()
    result = e2e.pipe.import_file(e2e.sample("clean.mgl"), e2e.key())
    return result, moto_seams.virtual_clock() - started


def test_continuation_keeps_one_job_one_record_and_the_deadline_across_executions(e2e, pipe, no_wait, monkeypatch,
                                                                                     static_polling):
    """The continuation mechanism with a small history budget (500 events), so it is cheap to
    run: a job that never ends, polled every second, deadline 300 s."""
    from vendor_import.logic import continuation

    monkeypatch.setattr(continuation, "HISTORY_BUDGET", 500)
    result, _ = hopex_job(e2e, 10 * DAY, {"first_wait_seconds": 1, "max_wait_seconds": 1, "factor": 1.0},
                          deadline=300)
    record, message = e2e.one_outcome(key=result.key)
    # poll n has waited n s: poll 300 reaches the deadline
    assert record["state"] == "TIMED_OUT", record
    assert record["waited_seconds"] == 300 and record["polls"] == 300
    # an execution holds 5 + 6 x polls + 3 x invocations events (8 + 9 x polls without retries);
    # the vendor step continues when the next iteration would pass the budget: 8 + 9p + 9 > 500
    # from p = 54. 300 polls: 5 executions of 54 polls, then 30 polls in a 6th
    assert record["executions_count"] == 6 == len(record["executions"])
    assert record["executions"][0].endswith(":" + record["job_id"])
    assert record["execution_arn"] == record["executions"][-1]
    sizes = [len(history(pipe, arn)) for arn in record["executions"]]
    # continued: 5 + 6 x 54 + 3 x 55 = 494, + Continue task 5 + Succeed 2 + ExecutionSucceeded 1;
    # the last: 5 + 6 x 30 + 3 x 31 = 278, + Finalize 5 + ExecutionSucceeded 1
    assert sizes == [502] * 5 + [284]
    statuses = [pipe.sfn.describe_execution(executionArn=arn)["status"] for arn in record["executions"]]
    assert statuses == ["SUCCEEDED"] * 6
    # every invocation counted: submit + 300 polls + 5 resumed starts + finalize
    assert record["cost"]["lambda_invocations"] == 307
    assert record["cost"]["state_transitions"] == 2 + 3 * 300 + 1 + 4 * 5
    assert message["body"]["executions_count"] == 6
    # the continued executions resumed the job: HOPEX got one import and one status GET per poll
    assert len(e2e.sim.requests_to("/import", "POST")) == 1
    assert len(e2e.import_status_gets()) == 299  # poll 300 ended at the deadline before asking


def test_record_vendor_slices_with_no_wait_obey_the_same_budget(pipe, no_wait, monkeypatch):
    """Cirrus sends one batch per step here (safety margin = the whole Lambda run): 60 records
    in batches of 1 are 60 slices with 0-second waits, continued over executions."""
    from vendor_import.logic import continuation

    monkeypatch.setattr(continuation, "HISTORY_BUDGET", 300)
    sim = simulator_class("cirrus")().start()
    try:
        pipe.set_settings("cirrus", {**sim.settings(), "batch_size": 1, "safety_margin_seconds": 900})
        records = "".join(f"<Account><Name>acct-{i:02d}</Name></Account>" for i in range(60))
        body = f'<?xml version="1.0" encoding="UTF-8"?><Data>{records}</Data>'.encode()
        result = pipe.import_file(body, "inbox/cirrus/object=Account/slices.xml")
        record = result.record
        assert record["state"] == "SUCCEEDED", record
        assert record["counts"]["accepted"] == 60 and record["counts"]["records"] == 60
        sent = [r for r in sim.requests if "/DataAction/" in r.path]
        assert len(sent) == 60  # every record once, none twice across the executions
        # 8 + 9p + 9 > 300 from p = 32: 60 slices + the final poll that says done
        sizes = [len(history(pipe, arn)) for arn in record["executions"]]
        assert record["executions_count"] == len(sizes) >= 2
        assert max(sizes) <= 300 + 8, sizes
    finally:
        sim.stop()


def test_a_30_day_vendor_job_polled_with_max_wait_30_succeeds_across_executions(e2e, pipe, no_wait):
    """30 vendor days, max_wait_seconds 30, deadline 31 days. The learned pace (three earlier
    30-day jobs of this size) waits until the expected end in waits of at most a day; each
    execution stops before its 7-day timeout (6 days of waits) and the job goes on in the next."""
    body = e2e.sample("clean.mgl") + b"* 30-day size class\n" * 40_000
    size = len(body)
    for i in range(3):
        pipe.table.put_item(Item={"job_id": f"thirty-day-history-{i}", "vendor": "hopex", "state": "SUCCEEDED",
                                  "updated_at": f"2099-01-0{i + 1}T00:00:00.000000Z",
                                  "vendor_seconds": 30 * DAY, "source": {"size": size}, "finished_at": "x"})
    try:
        sim = e2e.sim
        sim.running_polls, sim.job_seconds, sim.clock = 0, 30 * DAY, moto_seams.virtual_clock
        pipe.set_settings("hopex", {**sim.settings(), "deadline_seconds": 31 * DAY,
                                    "poll": {"first_wait_seconds": 5, "max_wait_seconds": 30, "factor": 2.0}})
        result = pipe.import_file(body, e2e.key())
        record = result.record
        assert record["state"] == "SUCCEEDED", record
        assert record["waited_seconds"] == 30 * DAY
        # waits of one day (polling.MAX_WAIT_SECONDS) up to the expected end: 30 polls, 6 per execution
        # (5 x 86,400 + 86,400 = 6 days is the budget; a 7th would pass it): 5 executions
        assert record["polls"] == 30
        assert record["executions_count"] == 5
        for arn in record["executions"]:
            assert pipe.sfn.describe_execution(executionArn=arn)["status"] == "SUCCEEDED"
            assert len(history(pipe, arn)) < HISTORY_LIMIT
    finally:
        for i in range(3):
            pipe.table.delete_item(Key={"job_id": f"thirty-day-history-{i}"})
