"""The vendor step's guard paths and its settle action, payload by payload, written by hand: the
admission (logic/guard.py's slots and breaker) at submit, the QUEUED payload and the jobs table row
that says so, a vendor outage that pauses the import instead of failing it, a poll while the target
is paused, and the settle step after a record import failed part-way (the cases `make mutation`
showed untested)."""

from __future__ import annotations

import json

import pytest
from vendor_import.connectors import load_settings
from vendor_import.dal.guard_table import GuardTable
from vendor_import.errors import InputError, VendorOutage, VendorUnavailableError
from vendor_import.logic.continuation import next_name
from vendor_import.logic.guard import Breaker, Guard
from vendor_import.logic.record_count import RecordTally
from vendor_import.logic.vendor_step import VendorStep
from vendor_import.model import FinalState, Progress, RawRejects, RejectRow

from ..conftest import JOBS_TABLE
from .test_vendor_step import CLEAN, KEY, ScriptedConnector, _offline_settings, event

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
UNSET = object()


class Setup:
    """A hopex step behind a real guard and breaker (moto DynamoDB), with a scripted connector."""

    def __init__(self, account, connector_cls=ScriptedConnector, **settings):
        self.account = account
        self.now = T0
        self.settings = load_settings("hopex", {**_offline_settings(), **settings})
        self.fake = connector_cls(self.settings)
        self.guard = Guard(GuardTable(account.dynamodb.Table(JOBS_TABLE)), describe=lambda arn: "RUNNING",
                           clock=lambda: self.now)
        self.asked: list[str] = []  # the targets whose settings were loaded
        cache = {("hopex", target, id(self.settings)): self.fake for target in ("default", "prod")}
        self.step = VendorStep(vendor="hopex", settings_loader=self.load, s3_client=account.s3,
                               store=account.store, jobs=account.jobs, clock=lambda: self.now,
                               connector_cache=cache, guard=self.guard)
        self.step.breaker = Breaker(self.guard)
        account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN)

    def load(self, target="default"):
        self.asked.append(target)
        return self.settings

    def run(self, action, job=None, name="job-1", **inp):
        out = self.step.run({**event(action, self.account, job=job, name=name, **inp),
                             "execution_arn": f"arn:sfn:{name}"})
        out.pop("usage", None)
        return out

    def item(self):
        return GuardTable(self.account.dynamodb.Table(JOBS_TABLE)).read("guard#hopex#default")

    def row(self):
        return self.account.jobs.get("job-1")


FIRST_EXECUTION = {"continue_in_new_execution": False, "executions": ["job-1"], "executions_count": 1,
                   "execution": {"index": 0, "name": "job-1", "polls": 0, "invocations_before": 0,
                                 "waited_at_start": 0}}


def queued(guard, message, wait=30, **extra):
    return {"job_id": "job-1", "vendor": "hopex", "target": "default", "source_name": "clean.mgl", "polls": 0,
            "waited_seconds": 0, "dry_run": False, "done": False, "state": None, "queued": True,
            "wait_seconds": wait, "guard": guard, "connector": {}, "counts": {}, "vendor_ref": None,
            "message": message, **extra}


FULL = "queued: 0 import(s) of hopex/default ahead; max_concurrent_imports reached"
PAUSED = "paused: hopex/default is paused (vendor outage); the import waits and submits when it resumes"


# -- admission -------------------------------------------------------------------------------------------------

def test_a_submit_at_the_limit_queues_then_starts_when_the_slot_frees(account):
    s = Setup(account, max_concurrent_imports=1, queue_check_seconds=20)
    s.fake.submit_progress = Progress(job={"n": 1}, message="sent")
    s.guard.acquire("hopex", "default", "other", "arn:sfn:other", limit=1)
    out = s.run("submit")
    assert s.fake.calls == []  # nothing read, nothing validated, no vendor call
    assert out == {**queued({"checks": 0, "queued_seconds": 0, "paused_seconds": 0, "position": 0}, FULL, 20),
                   **FIRST_EXECUTION}
    row = s.row()
    assert {k: row[k] for k in ("state", "message", "source_key", "target", "current_execution", "updated_at")} == {
        "state": "QUEUED", "message": FULL, "source_key": KEY, "target": "default", "current_execution": "job-1",
        "updated_at": "2026-01-01T00:00:00.000000Z"}
    assert s.item()["waiters"]["job-1"]["arn"] == "arn:sfn:job-1"
    # Wait in queue (20 s), then Submit again in the same execution: still full, nothing new to tell
    s.now += 20
    again = s.run("submit", job=out)
    assert again == {**queued({"checks": 1, "queued_seconds": 20, "paused_seconds": 0, "position": 0}, FULL, 20),
                     **FIRST_EXECUTION, "execution": {**FIRST_EXECUTION["execution"], "polls": 1}}
    assert s.row()["updated_at"] == "2026-01-01T00:00:00.000000Z"  # the row already said so
    s.guard.release("hopex", "default", "other")
    s.now += 20
    started = s.run("submit", job=again)
    assert s.fake.calls == ["validate", "submit"]
    assert started["guard"] == {"checks": 2, "queued_seconds": 40, "paused_seconds": 0, "suspected": None}
    assert (started["job_id"], started["queued"], started["done"], started["connector"]) == ("job-1", False, False,
                                                                                          {"n": 1})
    assert started["execution"] == {**FIRST_EXECUTION["execution"], "polls": 2}
    assert s.row()["state"] == "RUNNING"
    assert list(s.item()["holders"]) == ["job-1"]


def test_a_queued_import_whose_place_changes_tells_the_jobs_table(account):
    s = Setup(account, max_concurrent_imports=1)
    s.guard.acquire("hopex", "default", "other", "arn:sfn:other", limit=1)
    s.guard.acquire("hopex", "default", "ahead", "arn:sfn:ahead", limit=1)
    out = s.run("submit")
    ahead = "queued: 1 import(s) of hopex/default ahead; max_concurrent_imports reached"
    assert (out["message"], out["guard"]["position"], out["wait_seconds"]) == (ahead, 1, 60)  # 30 x (1 + 1 // 1)
    s.guard.release("hopex", "default", "ahead")
    s.now += 60
    again = s.run("submit", job=out)
    assert (again["message"], again["guard"]["position"], again["wait_seconds"]) == (FULL, 0, 30)
    assert (s.row()["message"], s.row()["updated_at"]) == (FULL, "2026-01-01T00:01:00.000000Z")


def test_a_queue_without_a_known_place_says_some(account):
    s = Setup(account, max_concurrent_imports=1)
    payload = s.step._queued("job-1", s.step._request({"bucket": account.bucket, "key": KEY}),
                             {"checks": 0, "queued_seconds": 0, "paused_seconds": 0, "shown": None},
                             wait=0, position=-1)
    assert payload == queued({"checks": 0, "queued_seconds": 0, "paused_seconds": 0, "position": -1},
                             "queued: some import(s) of hopex/default ahead; max_concurrent_imports reached", 1)


def test_a_dry_run_and_an_unlimited_target_write_nothing_to_the_guard(account):
    s = Setup(account, max_concurrent_imports=1)
    s.guard.acquire("hopex", "default", "other", "arn:sfn:other", limit=1)
    dry = s.run("submit", dry_run=True)
    assert dry["state"] == FinalState.VALIDATED.value and "guard" not in dry
    assert list(s.item()["holders"]) == ["other"] and s.item()["waiters"] == {}
    free = Setup(account)  # no max_concurrent_imports: no slot taken
    free.fake.submit_progress = Progress(job={}, message="sent")
    out = free.run("submit", name="job-2")
    assert free.fake.calls == ["validate", "submit"] and "guard" not in out and out["queued"] is False
    assert list(free.item()["holders"]) == ["other"]


def test_a_campaign_like_lane_is_taken_from_the_uploads_options(account):
    s = Setup(account, one_import_per_lane=None)
    # hopex has no lane: even with one_import_per_lane unset nothing is written
    s.fake.submit_progress = Progress(job={}, message="sent")
    s.run("submit")
    assert s.item()["version"] == 0


def test_a_submit_to_a_paused_target_waits_its_cool_down_then_probes(account):
    s = Setup(account)
    s.step.breaker.set_state("hopex", "default", "PAUSED")
    s.fake.submit_progress = Progress(job={"n": 1}, message="sent")
    out = s.run("submit")
    assert out == {**queued({"checks": 0, "queued_seconds": 0, "paused_seconds": 0, "paused": True,
                             "pause_epoch": 1, "pause_waited": 0, "position": None}, PAUSED, 60), **FIRST_EXECUTION}
    assert s.row()["message"] == PAUSED and s.fake.calls == []
    s.now += 30
    half = s.run("submit", job={**out, "wait_seconds": 30})
    assert half["guard"] == {"checks": 1, "queued_seconds": 30, "paused_seconds": 30, "paused": True,
                             "pause_epoch": 1, "pause_waited": 30, "position": None}
    assert half["wait_seconds"] == 30 and s.fake.calls == []
    s.now += 30
    started = s.run("submit", job=half)  # a whole cool-down waited in epoch 1: this import probes
    assert s.fake.calls == ["validate", "submit"]
    assert started["guard"] == {"checks": 2, "queued_seconds": 60, "paused_seconds": 60, "suspected": None}
    assert s.item()["breaker"]["state"] == "CLOSED"  # the probe went through


def test_a_submit_paused_past_the_pause_deadline_fails(account):
    s = Setup(account, pause_deadline_seconds=100)
    s.step.breaker.set_state("hopex", "default", "PAUSED")
    job = queued({"checks": 3, "queued_seconds": 50, "paused_seconds": 50, "paused": True, "pause_epoch": 1,
                  "pause_waited": 50, "position": None}, PAUSED, 50)
    with pytest.raises(VendorOutage) as exc:
        s.run("submit", job=job)
    assert str(exc.value) == ("hopex/default stayed paused (vendor outage) while this import waited 100 s "
                              "(pause_deadline_seconds = 100)")
    with pytest.raises(VendorOutage):
        s.run("submit", job={**job, "wait_seconds": 49, "guard": {**job["guard"], "paused_seconds": 51}})
    s.fake.submit_progress = Progress(job={}, message="sent")
    ok = s.run("submit", job={**job, "wait_seconds": 49})  # 99 s: under the deadline, and the probe
    assert ok["guard"]["paused_seconds"] == 99


def test_a_wait_in_queue_while_not_paused_is_not_a_paused_wait(account):
    s = Setup(account, max_concurrent_imports=1)
    s.guard.acquire("hopex", "default", "other", "arn:sfn:other", limit=1)
    job = queued({"checks": 1, "queued_seconds": 30, "paused_seconds": 7, "pause_waited": 5, "position": 0},
                 FULL, 30)
    out = s.run("submit", job=job)
    assert out["guard"] == {"checks": 2, "queued_seconds": 60, "paused_seconds": 7, "position": 0}


# -- a vendor outage at submit ----------------------------------------------------------------------------------

class Down(ScriptedConnector):
    def submit(self, ctx):
        self.calls.append("submit")
        raise VendorUnavailableError("503 from the vendor")


def test_an_outage_that_pauses_the_target_makes_the_import_wait_instead_of_failing(account):
    s = Setup(account, Down, breaker_failures=1, breaker_cooldown_seconds=40)
    out = s.run("submit")
    assert s.fake.calls == ["validate", "submit"]
    assert out == {**queued({"checks": 0, "queued_seconds": 0, "paused_seconds": 0, "paused": True,
                             "pause_epoch": None, "pause_waited": 0, "position": None}, PAUSED, 40),
                   **FIRST_EXECUTION}
    b = s.item()["breaker"]
    assert (b["state"], b["failing"], b["cooldown"]) == ("OPEN", ["job-1"], 40)


def test_an_outage_while_other_imports_fail_waits_once_then_fails(account):
    s = Setup(account, Down, breaker_failures=3, breaker_cooldown_seconds=40)
    s.step.breaker.failed("hopex", "default", threshold=3, cooldown=40, max_cooldown=900, job_id="other")
    out = s.run("submit")
    assert out["guard"] == {"checks": 0, "queued_seconds": 0, "paused_seconds": 0, "suspected": True,
                            "paused": True, "pause_epoch": None, "pause_waited": 0, "position": None}
    assert out["wait_seconds"] == 40
    with pytest.raises(VendorUnavailableError):
        s.run("submit", job=out)  # suspected once already: the second failure fails as before
    assert s.item()["breaker"]["failing"] == ["other", "job-1"]


def test_a_lone_import_against_a_dead_vendor_fails_as_before(account):
    s = Setup(account, Down, breaker_failures=2)
    with pytest.raises(VendorUnavailableError):
        s.run("submit")
    assert s.item()["breaker"] == {"failing": ["job-1"], "failures": 1}


def test_the_failure_threshold_is_at_most_the_slots(account):
    s = Setup(account, Down, breaker_failures=5, max_concurrent_imports=2, breaker_cooldown_seconds=40)
    s.step.breaker.failed("hopex", "default", threshold=2, cooldown=40, max_cooldown=900, job_id="other")
    out = s.run("submit")  # two failing imports of two slots: the target pauses
    assert s.item()["breaker"]["state"] == "OPEN"
    assert out["guard"]["paused"] is True and "suspected" not in out["guard"]


def test_a_success_after_failures_resets_the_count(account):
    s = Setup(account)
    s.step.breaker.failed("hopex", "default", threshold=5, cooldown=60, max_cooldown=900, job_id="other")
    s.fake.submit_progress = Progress(job={}, message="sent")
    s.run("submit")
    assert s.item()["breaker"] == {"failing": [], "failures": 0, "state": "CLOSED", "probe": None}


# -- polls while the target is paused --------------------------------------------------------------------------

POLLED = {"job_id": "job-1", "vendor": "hopex", "target": "default", "source_name": "clean.mgl",
          "size": len(CLEAN), "dry_run": False, "submitted_at": "2026-01-01T00:00:00.000000Z", "polls": 3,
          "waited_seconds": 90, "connector": {"n": 3}, "vendor_ref": "J-3", "counts": {"sent": 3},
          "message": "running"}


def test_a_poll_of_a_paused_target_waits_without_asking_the_vendor(account):
    s = Setup(account, breaker_cooldown_seconds=50)
    s.step.breaker.set_state("hopex", "default", "PAUSED")
    out = s.run("poll", job={**POLLED, "wait_seconds": 30})
    assert s.fake.calls == []
    assert {k: out[k] for k in ("done", "state", "paused", "wait_seconds", "pause_epoch", "pause_waited",
                                "polls", "waited_seconds", "connector", "counts", "vendor_ref", "message")} == {
        "done": False, "state": None, "paused": True, "wait_seconds": 60, "pause_epoch": 1, "pause_waited": 0,
        "polls": 4, "waited_seconds": 120, "connector": {"n": 3}, "counts": {"sent": 3}, "vendor_ref": "J-3",
        "message": "running"}
    assert "paused_seconds" not in out
    # the next poll: 60 s paused (not counted in waited_seconds), then it probes
    s.fake.polls = [Progress(job={"n": 4}, message="running")]
    nxt = s.run("poll", job=out)
    assert s.fake.calls == ["poll"]
    assert (nxt["waited_seconds"], nxt["paused_seconds"], nxt["pause_epoch"], nxt["pause_waited"]) == (120, 60, 1, 60)
    assert nxt["connector"] == {"n": 4} and s.item()["breaker"]["state"] == "CLOSED"


def test_a_poll_goes_to_the_target_its_submit_chose(account):
    s = Setup(account)
    s.step.breaker.set_state("hopex", "prod", "PAUSED")
    out = s.run("poll", job={**POLLED, "target": "prod", "wait_seconds": 30})
    assert (out["target"], out["paused"], s.asked, s.fake.calls) == ("prod", True, ["prod"], [])
    s.fake.polls = [Progress(job={"n": 4}, message="running")]
    out = s.run("poll", job={**POLLED, "wait_seconds": 30})
    assert (out["target"], out.get("paused"), s.asked[-1], s.fake.calls) == ("default", None, "default", ["poll"])


def test_a_poll_paused_past_the_pause_deadline_ends_failed(account):
    s = Setup(account, pause_deadline_seconds=100)
    job = {**POLLED, "paused": True, "wait_seconds": 40, "paused_seconds": 60, "pause_epoch": 2, "pause_waited": 0,
           "guard": {"checks": 1}}
    out = s.run("poll", job=job)
    assert s.fake.calls == []
    for key in ("continue_in_new_execution", "executions", "executions_count", "execution", "queued"):
        out.pop(key)
    assert out == {"job_id": "job-1", "vendor": "hopex", "target": "default", "source_name": "clean.mgl",
                   "size": len(CLEAN), "dry_run": False, "submitted_at": "2026-01-01T00:00:00.000000Z",
                   "raw_format": None, "pace": None, "staged": None, "rejects_are_records": None,
                   "record_import": None, "polls": 4, "waited_seconds": 90, "paused_seconds": 100,
                   "guard": {"checks": 1}, "done": True, "state": FinalState.FAILED.value, "wait_seconds": 0,
                   "connector": {"n": 3}, "counts": {"sent": 3}, "vendor_ref": "J-3", "error_type": "VendorOutage",
                   "message": "the vendor stayed unavailable: this import waited 100 s while hopex/default was "
                              "paused (pause_deadline_seconds = 100)"}
    s.fake.polls = [Progress(job={}, message="running")]
    below = s.run("poll", job={**job, "wait_seconds": 39})
    assert below["state"] != FinalState.FAILED.value and below["paused_seconds"] == 99


def test_a_poll_after_a_pause_ended_keeps_its_paused_seconds(account):
    s = Setup(account)
    s.fake.polls = [Progress(job={"n": 4}, message="running")]
    out = s.run("poll", job={**POLLED, "wait_seconds": 30, "paused_seconds": 60})
    assert (out["paused_seconds"], out["waited_seconds"]) == (60, 120)
    assert "pause_epoch" not in out and "pause_waited" not in out


def test_a_poll_that_fails_into_a_pause_goes_on_from_what_it_checkpointed(account):
    class SendThenDown(ScriptedConnector):
        def poll(self, job, ctx):
            self.calls.append("poll")
            ctx.checkpoint({"n": 4, "counts": {"sent": 4}})
            raise VendorUnavailableError("reset after the batch")

    s = Setup(account, SendThenDown, breaker_failures=1, breaker_cooldown_seconds=45)
    out = s.run("poll", job={**POLLED, "wait_seconds": 10})
    assert {k: out[k] for k in ("paused", "wait_seconds", "pause_epoch", "pause_waited", "connector", "counts",
                                "vendor_ref", "message", "done", "polls")} == {
        "paused": True, "wait_seconds": 45, "pause_epoch": None, "pause_waited": 0,
        "connector": {"n": 4, "counts": {"sent": 4}}, "counts": {"sent": 4}, "vendor_ref": "J-3",
        "message": "running", "done": False, "polls": 4}
    # nothing checkpointed: the job's cursor and counts stay
    s2 = Setup(account, Down, breaker_failures=1)
    s2.fake.poll = lambda job, ctx: (_ for _ in ()).throw(VendorUnavailableError("down"))
    out2 = s2.run("poll", job={**POLLED, "job_id": "job-2", "wait_seconds": 10}, name="job-2")
    assert (out2["connector"], out2["counts"]) == ({"n": 3}, {"sent": 3})


# -- a continued execution keeps its slot ----------------------------------------------------------------------

def test_a_continued_execution_moves_the_slot_to_itself(account):
    s = Setup(account, max_concurrent_imports=1)
    s.guard.acquire("hopex", "default", "job-1", "arn:sfn:job-1", limit=1)
    job = {**POLLED, "wait_seconds": 30, "continue_in_new_execution": True, "next_execution_name": "job-1-c-2",
           "execution": {"index": 1, "name": "job-1-c-1", "polls": 9}}
    s.now += 5
    out = s.run("submit", job=job, name="job-1-c-2")
    holder = s.item()["holders"]["job-1"]
    assert (holder["arn"], holder["index"]) == ("arn:sfn:job-1-c-2", 2)
    assert (s.row()["current_execution"], s.row()["updated_at"]) == ("job-1-c-2", "2026-01-01T00:00:05.000000Z")
    assert s.fake.calls == [] and out["connector"] == {"n": 3}
    dry = Setup(account, max_concurrent_imports=1)  # a dry run holds no slot: nothing to move
    dry.guard.acquire("hopex", "default", "job-3", "arn:sfn:job-3", limit=2)
    dry.run("submit", job={**job, "job_id": "job-3", "dry_run": True}, name="job-1-c-2")
    assert dry.item()["holders"]["job-3"]["arn"] == "arn:sfn:job-3"


# -- settle ----------------------------------------------------------------------------------------------------

class Settling(ScriptedConnector):
    """A record connector: settle stages what no step reported, from the failed attempt's cursor."""

    tally = None

    def settle(self, job, ctx, reason):
        self.calls.append("settle")
        self.seen_jobs.append(job)
        self.reason = reason
        if job.get("nothing_left"):
            return None
        ctx.emit_rejects("settle", [RejectRow("5", reason)], b"raw-5\n", RawRejects("x.rejects.txt", "text/plain"))
        return Progress(job={**job, "settled": True}, done=True, counts={"sent": 4, "not_sent": 1},
                        message="1 record not sent")

    def record_tally(self, job):
        return self.tally


ERROR = {"Error": "VendorUnavailableError", "Cause": json.dumps({"errorMessage": "the vendor went away"})}


def test_settle_stages_what_no_step_reported_from_the_failed_attempts_checkpoint(account):
    s = Setup(account, Settling)
    s.fake.tally = RecordTally(read=5, accepted=4, refused_by_vendor=0, refused_locally=0, not_sent=1)
    account.jobs.save_checkpoint("job-1", "hopex", 4, {"n": 4}, "2026-01-01T00:00:00.000000Z")
    job = {**POLLED, "record_import": True}
    out = s.run("settle", job=job, error=ERROR)
    assert s.fake.seen_jobs == [{"n": 4}]  # the failed 4th poll's checkpoint, newer than $.job's
    assert s.fake.reason == "not sent: the import stopped before this record (VendorUnavailableError: " \
                            "the vendor went away)"
    assert out == {**job, "connector": {"n": 4, "settled": True}, "counts": {"sent": 4, "not_sent": 1},
                   "settled": "1 record not sent",
                   "raw_format": {"name": "x.rejects.txt", "content_type": "text/plain", "header": "", "footer": ""}}
    assert account.keys("work/job-1/rejects/") == ["work/job-1/rejects/part-settle.csv",
                                                   "work/job-1/rejects/part-settle.raw"]


def test_settle_without_a_newer_checkpoint_uses_the_jobs_cursor(account):
    s = Setup(account, Settling)
    account.jobs.save_checkpoint("job-1", "hopex", 3, {"n": "old"}, "2026-01-01T00:00:00.000000Z")
    out = s.run("settle", job=POLLED, error=None)
    assert s.fake.seen_jobs == [{"n": 3}]
    assert s.fake.reason == "not sent: the import stopped before this record (None: None)"
    assert out["settled"] == "1 record not sent" and "error_type" not in out


def test_settle_with_nothing_to_settle_returns_the_job_as_it_was(account):
    s = Setup(account, Settling)
    assert s.run("settle", job={**POLLED, "connector": {}}, error=ERROR) == {**POLLED, "connector": {},
                                                                             "settled": ""}
    assert s.fake.calls == []
    assert s.run("settle", job={**POLLED, "connector": {"nothing_left": 1}}, error=ERROR) == {
        **POLLED, "connector": {"nothing_left": 1}, "settled": ""}
    assert s.fake.calls == ["settle"]


def test_settle_whose_records_do_not_add_up_says_so(account):
    s = Setup(account, Settling)
    s.fake.tally = RecordTally(read=6, accepted=4, refused_by_vendor=0, refused_locally=0, not_sent=1)
    out = s.run("settle", job=POLLED, error=ERROR)
    assert out["error_type"] == "RecordCountMismatch"
    assert out["settled"] == s.fake.tally.mismatch()
    assert out["settled"].startswith("record count mismatch: 6 records read from the file, but 4 accepted")


def test_settle_cuts_a_long_reason_and_masks_secrets(account):
    s = Setup(account, Settling)
    cause = "password=offline-password " + "x" * 500
    s.run("settle", job=POLLED, error={"Error": "VendorProtocolError", "Cause": cause})
    assert len(s.fake.reason) <= 400 and "offline-password" not in s.fake.reason
    assert s.fake.reason.startswith("not sent: the import stopped before this record (VendorProtocolError: ")


# -- a record import a poll ends without the vendor: settled there, not by the Catch's Settle step --------------

RECORD_POLLED = {**POLLED, "record_import": True}


def test_a_record_import_past_deadline_seconds_lists_what_it_did_not_send(account):
    s = Setup(account, Settling, deadline_seconds=100)
    s.fake.tally = RecordTally(read=5, accepted=4, refused_by_vendor=0, refused_locally=0, not_sent=1)
    out = s.run("poll", job={**RECORD_POLLED, "wait_seconds": 10})
    assert s.fake.calls == ["settle"] and s.fake.seen_jobs == [{"n": 3}]  # no poll: settled from the cursor
    assert s.fake.reason == ("not sent: the import stopped before this record (DeadlineExceeded: the vendor job "
                             "was still running after 100 s of polling (deadline_seconds = 100); last vendor "
                             "status: running)")
    assert {k: out[k] for k in ("done", "state", "error_type", "connector", "counts", "message", "raw_format",
                                "wait_seconds")} == {
        "done": True, "state": FinalState.TIMED_OUT.value, "error_type": "DeadlineExceeded",
        "connector": {"n": 3, "settled": True}, "counts": {"sent": 4, "not_sent": 1},
        "message": "the vendor job was still running after 100 s of polling (deadline_seconds = 100); last vendor "
                   "status: running; 1 record not sent",
        "raw_format": {"name": "x.rejects.txt", "content_type": "text/plain", "header": "", "footer": ""},
        "wait_seconds": 0}
    assert "settled" not in out  # no Settle step ran: Finalize counts none in the cost
    assert account.keys("work/job-1/rejects/") == ["work/job-1/rejects/part-settle.csv",
                                                   "work/job-1/rejects/part-settle.raw"]


def test_a_record_import_paused_past_the_pause_deadline_lists_what_it_did_not_send(account):
    s = Setup(account, Settling, pause_deadline_seconds=100)
    s.fake.tally = RecordTally(read=5, accepted=4, refused_by_vendor=0, refused_locally=0, not_sent=1)
    account.jobs.save_checkpoint("job-1", "hopex", 4, {"n": 4}, "2026-01-01T00:00:00.000000Z")
    job = {**RECORD_POLLED, "paused": True, "wait_seconds": 40, "paused_seconds": 60, "pause_epoch": 2}
    out = s.run("poll", job=job)
    assert s.fake.calls == ["settle"] and s.fake.seen_jobs == [{"n": 4}]  # this poll's checkpoint is newer
    assert (out["state"], out["error_type"], out["counts"]) == (FinalState.FAILED.value, "VendorOutage",
                                                                {"sent": 4, "not_sent": 1})
    assert out["message"] == ("the vendor stayed unavailable: this import waited 100 s while hopex/default was "
                              "paused (pause_deadline_seconds = 100); 1 record not sent")


def test_a_record_import_ended_at_a_poll_whose_records_do_not_add_up_fails_loudly(account):
    s = Setup(account, Settling, deadline_seconds=100)
    s.fake.tally = RecordTally(read=6, accepted=4, refused_by_vendor=0, refused_locally=0, not_sent=1)
    out = s.run("poll", job={**RECORD_POLLED, "wait_seconds": 10})
    assert (out["done"], out["state"], out["error_type"]) == (True, FinalState.FAILED.value, "RecordCountMismatch")
    assert out["message"] == (f"{s.fake.tally.mismatch()} (the import had failed: the vendor job was still running "
                              "after 100 s of polling (deadline_seconds = 100); last vendor status: running)")


def test_a_record_import_ended_at_a_poll_keeps_its_rejects_format_when_settling_emits_none(account):
    class SettlingWithoutFormat(Settling):
        def settle(self, job, ctx, reason):
            self.calls.append("settle")
            return Progress(job={**job, "settled": True}, done=True, counts={"sent": 3, "not_sent": 0},
                            message="0 records not sent")

    s = Setup(account, SettlingWithoutFormat, deadline_seconds=100)
    fmt = {"name": "x.rejects.txt", "content_type": "text/plain", "header": "", "footer": ""}
    out = s.run("poll", job={**RECORD_POLLED, "wait_seconds": 10, "raw_format": fmt})
    assert (out["raw_format"], out["state"]) == (fmt, FinalState.TIMED_OUT.value)


def test_a_record_import_ended_at_a_poll_with_a_long_message_keeps_it_whole_in_s3(account):
    s = Setup(account, Settling, deadline_seconds=100)
    s.fake.tally = RecordTally(read=5, accepted=4, refused_by_vendor=0, refused_locally=0, not_sent=1)
    status = "still importing; " * 2_000  # the vendor's last words: 34,000 characters
    out = s.run("poll", job={**RECORD_POLLED, "wait_seconds": 10, "message": status})
    whole = (f"the vendor job was still running after 100 s of polling (deadline_seconds = 100); last vendor "
             f"status: {status}; 1 record not sent")
    assert out["message_key"] == "work/job-1/message.txt"
    assert account.read("work/job-1/message.txt").decode() == whole
    assert len(out["message"]) < len(whole) and out["message"].endswith("characters cut: the whole text is in the "
                                                                       "status JSON in S3]")


def test_a_record_import_ended_at_a_poll_with_nothing_left_ends_as_it_would_have(account):
    s = Setup(account, Settling, deadline_seconds=100)
    job = {**RECORD_POLLED, "wait_seconds": 10, "connector": {"nothing_left": 1}}
    out = s.run("poll", job=job)
    assert s.fake.calls == ["settle"]
    assert (out["state"], out["connector"], out["counts"]) == (FinalState.TIMED_OUT.value, {"nothing_left": 1},
                                                               {"sent": 3})
    assert out["message"] == ("the vendor job was still running after 100 s of polling (deadline_seconds = 100); "
                              "last vendor status: running")


# -- submit: the target, the pace, a dry run's rejects ------------------------------------------------------------

def test_a_submit_takes_the_target_from_the_uploads_metadata_unless_the_input_names_one(account):
    s = Setup(account)
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN, Metadata={"target": "prod"})
    s.fake.submit_progress = Progress(job={}, message="sent")
    out = s.run("submit")
    assert (out["target"], s.asked, s.row()["target"]) == ("prod", ["prod"], "prod")
    s.asked.clear()
    given = s.run("submit", name="job-2", target="default")
    assert (given["target"], s.asked) == ("default", ["default"])
    s.asked.clear()
    in_options = s.run("submit", name="job-3", options={"target": "default"})
    assert (in_options["target"], s.asked) == ("default", ["default"])


def test_a_submit_learns_the_pace_of_its_own_target_and_size(account):
    s = Setup(account)
    for n, (target, seconds) in enumerate((("prod", 40), ("prod", 60), ("prod", 80), ("default", 900))):
        account.jobs.put_status({"job_id": f"old-{n}", "vendor": "hopex", "state": "SUCCEEDED", "target": target,
                                 "updated_at": f"2026-01-0{n + 1}T00:00:00.000000Z", "vendor_seconds": seconds,
                                 "source": {"size": len(CLEAN)}})
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN, Metadata={"target": "prod"})
    s.fake.submit_progress = Progress(job={}, message="sent")
    out = s.run("submit")
    assert out["pace"] == {"expected_seconds": 40, "step_seconds": 2, "samples": 3}


class ValidatesItself(ScriptedConnector):
    """A record vendor's dry run: validate stages its would-be rejects (rows and raw records) itself."""

    def validate(self, ctx):
        self.calls.append("validate")
        rows = [RejectRow("2", "bad date")]
        ctx.emit_rejects("v1", rows, b"raw-2\n", RawRejects("x.rejects.txt", "text/plain", header="h\n"))
        return rows


def test_a_dry_run_of_a_vendor_that_stages_its_own_rejects_is_not_staged_twice(account):
    s = Setup(account, ValidatesItself)
    out = s.run("submit", dry_run=True)
    assert account.keys("work/job-1/rejects/") == ["work/job-1/rejects/part-v1.csv", "work/job-1/rejects/part-v1.raw"]
    assert (out["counts"], out["raw_format"], out["message"]) == (
        {"would_reject": 1}, {"name": "x.rejects.txt", "content_type": "text/plain", "header": "h\n", "footer": ""},
        "dry run: 1 record(s) would be rejected; nothing was sent to the vendor")
    assert s.fake.calls == ["validate"] and "pace" not in out


def test_a_dry_run_of_a_file_vendor_stages_the_rows_it_returns(account):
    s = Setup(account)
    s.fake.validate_rows = [RejectRow("3", "unknown class")]
    out = s.run("submit", dry_run=True)
    assert account.keys("work/job-1/rejects/") == ["work/job-1/rejects/dry-run.csv"]
    assert (out["raw_format"], out["counts"]) == (None, {"would_reject": 1})


# -- the step's payload -------------------------------------------------------------------------------------------

def test_a_vendor_wait_hint_that_is_not_a_number_means_poll_again_now(account):
    s = Setup(account)
    s.fake.polls = [Progress(job={}, next_wait_seconds=float("nan"))]
    assert s.run("poll", job={**POLLED, "wait_seconds": 30})["wait_seconds"] == 0


def test_a_step_stages_its_raw_rejects_and_an_unfinished_step_has_no_state(account):
    s = Setup(account)
    s.fake.polls = [Progress(job={}, state=FinalState.SUCCEEDED, raw_rejects=b"raw-7\n",
                             raw_rejects_format=RawRejects("x.rejects.txt", "text/plain"))]
    out = s.run("poll", job={**POLLED, "wait_seconds": 30})
    assert (out["done"], out["state"]) == (False, None)
    assert account.read("work/job-1/rejects/step-000004.raw") == b"raw-7\n"
    assert out["raw_format"]["name"] == "x.rejects.txt"


def test_a_vendor_message_of_exactly_the_state_limit_travels_whole(account):
    s = Setup(account)
    text = "m" * 16_000
    s.fake.polls = [Progress(job={}, message=text)]
    out = s.run("poll", job={**POLLED, "wait_seconds": 30})
    assert out["message"] == text and "message_key" not in out


def test_a_poll_reads_the_decompressed_copy_at_the_size_submit_staged(account):
    s = Setup(account)
    account.s3.put_object(Bucket=account.bucket, Key="work/job-1/source/clean.mgl", Body=CLEAN)
    seen = []

    def answer(job, ctx):
        seen.append(ctx.source)
        return Progress(job={})

    s.fake.polls = [answer]
    staged = {"key": "work/job-1/source/clean.mgl", "size": 7, "name": "clean.mgl"}
    s.run("poll", job={**POLLED, "wait_seconds": 30, "staged": staged})
    (source,) = seen
    assert (source.bucket, source.key, source.version_id, source.size, source.name) == (
        account.bucket, "work/job-1/source/clean.mgl", None, 7, "clean.mgl")


# -- the cases the second mutation run left --------------------------------------------------------------------

class Refuses(ScriptedConnector):
    """Stands where a step must not look: the connector of another target."""

    def validate(self, ctx):
        raise AssertionError("the connector of another target was used")

    poll = submit = settle = validate


def only_prod(s):
    s.step._connectors[("hopex", "default", id(s.settings))] = Refuses(s.settings)


def test_every_step_uses_the_connector_of_the_jobs_own_target(account):
    s = Setup(account, Settling)
    only_prod(s)
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN, Metadata={"target": "prod"})
    s.fake.submit_progress = Progress(job={"n": 1}, message="sent")
    assert s.run("submit")["target"] == "prod"
    s.fake.polls = [Progress(job={"n": 2}, message="running")]
    assert s.run("poll", job={**POLLED, "target": "prod", "wait_seconds": 30})["connector"] == {"n": 2}
    s.asked.clear()
    out = s.run("settle", job={**POLLED, "target": "prod"}, error=ERROR)
    assert (out["settled"], s.asked) == ("1 record not sent", ["prod"])


def test_a_step_without_a_guard_keeps_the_queue_counters_it_was_given(account):
    s = Setup(account)
    s.step.guard = s.step.breaker = None
    s.fake.submit_progress = Progress(job={}, message="sent")
    job = queued({"checks": 1, "queued_seconds": 30, "paused_seconds": 0, "position": 0}, FULL, 30)
    assert s.run("submit", job=job)["guard"] == {"checks": 2, "queued_seconds": 60, "paused_seconds": 0,
                                                 "suspected": None}


def test_a_requeued_import_registers_with_its_upload_time_and_execution(account):
    s = Setup(account, max_concurrent_imports=1)
    s.guard.acquire("hopex", "default", "other", "arn:sfn:other", limit=1)
    job = {**queued({"checks": 1, "queued_seconds": 30, "paused_seconds": 0, "position": 3}, FULL, 30),
           "execution": {"index": 2, "name": "job-1-c-2", "polls": 1}}
    out = s.run("submit", job=job, name="job-1-c-2", uploaded_at="2026-01-01T00:00:04.000Z")
    assert out["wait_seconds"] == 2  # uploaded 1 s before: a burst, earlier uploads may register first
    waiter = s.item()["waiters"]["job-1"]
    assert (waiter["index"], waiter["arn"], waiter["order"]) == (2, "arn:sfn:job-1-c-2",
                                                                 "2026-01-01T00:00:04.000Z|000000000001")
    # its place changed (3 ahead before, none now): the jobs row names this execution
    assert s.row()["current_execution"] == "job-1-c-2"


def test_a_limited_target_paused_by_its_breaker_queues_as_paused(account):
    s = Setup(account, max_concurrent_imports=1)
    s.step.breaker.set_state("hopex", "default", "PAUSED")
    out = s.run("submit")
    assert out["guard"] == {"checks": 0, "queued_seconds": 0, "paused_seconds": 0, "paused": True,
                            "pause_epoch": None, "pause_waited": 0, "position": 0}
    assert (out["message"], out["wait_seconds"]) == (PAUSED, 60)
    again = s.run("submit", job={**out, "guard": {**out["guard"], "pause_epoch": 1}})
    assert again["guard"]["pause_epoch"] == 1 and again["guard"]["paused_seconds"] == 60


def test_a_new_pause_epoch_restarts_the_imports_pause_wait(account):
    s = Setup(account)
    for state in ("PAUSED", "RESUMED", "PAUSED"):
        s.step.breaker.set_state("hopex", "default", state)
    job = queued({"checks": 1, "queued_seconds": 30, "paused_seconds": 30, "paused": True, "pause_epoch": 1,
                  "pause_waited": 30, "position": None}, PAUSED, 30)
    out = s.run("submit", job=job)
    assert out["guard"] == {"checks": 2, "queued_seconds": 60, "paused_seconds": 60, "paused": True,
                            "pause_epoch": 2, "pause_waited": 0, "position": None}
    assert out["wait_seconds"] == 60


def test_an_import_paused_by_its_own_failure_waits_the_cool_down_of_the_epoch_it_then_sees(account):
    s = Setup(account, Down, breaker_failures=1, breaker_cooldown_seconds=40)
    out = s.run("submit")  # pause_epoch None: the failure opened epoch 1
    s.now += 40
    again = s.run("submit", job=out)
    assert again["guard"] == {"checks": 1, "queued_seconds": 40, "paused_seconds": 40, "paused": True,
                              "pause_epoch": 1, "pause_waited": 40, "position": None}
    assert again["wait_seconds"] == 40 and s.fake.calls == ["validate", "submit"]


def test_an_open_breaker_without_a_cool_down_uses_the_targets_setting(account):
    s = Setup(account, breaker_cooldown_seconds=40)
    GuardTable(account.dynamodb.Table(JOBS_TABLE)).write("guard#hopex#default", {
        "holders": {}, "waiters": {}, "next_ticket": 0, "version": 0, "breaker": {"state": "OPEN", "epoch": 1}})
    assert s.run("submit")["wait_seconds"] == 40


def test_the_probe_is_claimed_by_this_import(account):
    s = Setup(account)
    s.step.breaker.set_state("hopex", "default", "PAUSED")
    seen = {}

    def submit(ctx):
        seen["probe"] = s.item()["breaker"]["probe"]["job_id"]
        return Progress(job={}, message="sent")

    s.fake.submit = submit
    job = queued({"checks": 1, "queued_seconds": 60, "paused_seconds": 60, "paused": True, "pause_epoch": 1,
                  "pause_waited": 60, "position": None}, PAUSED, 0)
    s.run("submit", job=job)
    assert seen == {"probe": "job-1"}


def test_a_paused_poll_adds_this_wait_to_what_it_waited_in_the_epoch(account):
    s = Setup(account)
    s.step.breaker.set_state("hopex", "default", "PAUSED")
    job = {**POLLED, "paused": True, "paused_seconds": 20, "pause_epoch": 1, "pause_waited": 25, "wait_seconds": 5}
    out = s.run("poll", job=job)
    # 25 + 5 s waited in epoch 1 of a 60 s cool-down: 30 s more
    assert (out["paused_seconds"], out["pause_waited"], out["waited_seconds"], out["wait_seconds"]) == (25, 30, 90, 30)
    no_wait = s.run("poll", job={**job, "wait_seconds": None})
    assert (no_wait["paused_seconds"], no_wait["waited_seconds"]) == (20, 90)


def test_a_poll_failure_counts_for_this_import_and_a_suspected_one_fails(account):
    s = Setup(account, Down, breaker_failures=3)
    s.fake.poll = lambda job, ctx: (_ for _ in ()).throw(VendorUnavailableError("down"))
    with pytest.raises(VendorUnavailableError):
        s.run("poll", job={**POLLED, "wait_seconds": 30})
    assert s.item()["breaker"]["failing"] == ["job-1"]
    with pytest.raises(VendorUnavailableError):  # others fail too, but this import waited once already
        s.run("poll", job={**POLLED, "job_id": "job-2", "wait_seconds": 30, "suspected": True}, name="job-2")


class Mismatched(ScriptedConnector):
    """A record connector whose tally never adds up: only a finished step may be checked."""

    def record_tally(self, job):
        return RecordTally(read=9, accepted=1, refused_by_vendor=0, refused_locally=0)


def test_an_unfinished_step_is_not_held_to_the_record_count(account):
    s = Setup(account, Mismatched)
    s.fake.polls = [Progress(job={"n": 4}, message="running")]
    out = s.run("poll", job={**POLLED, "wait_seconds": 30})
    assert out["done"] is False and out["error_type"] is None


def test_a_continued_execution_without_an_index_is_the_second(account):
    s = Setup(account, max_concurrent_imports=1)
    s.guard.acquire("hopex", "default", "job-1", "arn:sfn:job-1", limit=1)
    job = {**POLLED, "wait_seconds": 30, "continue_in_new_execution": True, "next_execution_name": "job-1-c-1",
           "execution": {"name": "job-1"}}
    s.run("submit", job=job, name="job-1-c-1")
    assert s.item()["holders"]["job-1"]["index"] == 1


def test_settle_reads_the_upload_and_checkpoints_at_the_failed_poll(account):
    class Reads(Settling):
        def settle(self, job, ctx, reason):
            self.ctx = ctx
            ctx.checkpoint({"n": 9})
            return super().settle(job, ctx, reason)

        def record_tally(self, job):
            assert job["settled"] is True
            return None

    s = Setup(account, Reads)
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN, Metadata={"validate": "AtEnd"})
    account.jobs.save_checkpoint("job-1", "hopex", 1, {"n": 0}, "2026-01-01T00:00:00.000000Z")
    job = {k: v for k, v in POLLED.items() if k != "polls"}  # failed at its first poll
    s.run("settle", job=job, error=ERROR)
    assert s.fake.seen_jobs == [{"n": 0}]
    assert (s.fake.ctx.source.size, s.fake.ctx.options) == (len(CLEAN), {"validate": "AtEnd"})
    assert account.jobs.load_checkpoint("job-1", 1) == {"n": 9}


def test_an_unfinished_settle_is_not_held_to_the_record_count(account):
    class Unfinished(Mismatched):
        def settle(self, job, ctx, reason):
            return Progress(job={"n": 5}, message="partly settled")

    s = Setup(account, Unfinished)
    out = s.run("settle", job=POLLED, error=ERROR)
    assert out["settled"] == "partly settled" and "error_type" not in out


def test_a_gzip_upload_is_staged_under_its_job_and_held_to_the_vendors_limit(account):
    import gzip

    s = Setup(account)
    account.s3.put_object(Bucket=account.bucket, Key=KEY + ".gz", Body=gzip.compress(CLEAN))
    s.fake.submit_progress = Progress(job={}, message="sent")
    out = s.run("submit", key=KEY + ".gz")
    assert out["staged"] == {"key": "work/job-1/source/clean.mgl", "size": len(CLEAN), "name": "clean.mgl"}
    s.fake.max_file_bytes = 10
    with pytest.raises(InputError) as exc:
        s.run("submit", key=KEY + ".gz", name="job-2")
    assert str(exc.value) == ("clean.mgl.gz decompresses to more than HOPEX's limit of 10 bytes: split the file and "
                              "upload the parts (each gzip-compressed if you like)")


def test_an_upload_said_to_be_gzip_by_its_content_encoding_is_read_as_gzip(account):
    s = Setup(account)
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN, ContentEncoding="gzip")
    with pytest.raises(InputError):  # not a gzip stream after all
        s.run("submit")
    assert s.fake.calls == []


def test_a_campaign_import_waits_for_its_mapping_named_in_the_uploads_metadata_or_options(account):
    """Campaign runs one ingestion per XDM mapping (seed 001): the lane comes from the upload's
    options (metadata, console), read before the file."""
    doc = {"vendor": "campaign", "base_url": "https://mc.example.test", "organization": "acme",
           "ims": {"token_url": "https://ims.example.test/ims/token/v3", "client_id": "cid",
                   "client_secret": "unit-secret-77", "scopes": "openid"}}
    settings = load_settings("campaign", doc)
    fake = ScriptedConnector(settings, submit=Progress(job={}, message="sent"))
    guard = Guard(GuardTable(account.dynamodb.Table(JOBS_TABLE)), describe=lambda arn: "RUNNING", clock=lambda: T0)
    step = VendorStep(vendor="campaign", settings_loader=lambda: settings, s3_client=account.s3, store=account.store,
                      jobs=account.jobs, clock=lambda: T0, guard=guard,
                      connector_cache={("campaign", "default", id(settings)): fake})
    guard.acquire("campaign", "default", "other", "arn:sfn:other", limit=0, lane="mapping=M7")
    key = "inbox/campaign/profiles.json"
    account.s3.put_object(Bucket=account.bucket, Key=key, Body=b'{"a": 1}\n', Metadata={"mapping": "M7"})
    out = step.run({"action": "submit", "input": {"bucket": account.bucket, "key": key}, "execution_name": "job-1"})
    assert out["queued"] is True and fake.calls == []
    assert guard.snapshot("campaign", "default")["waiters"]["job-1"]["lane"] == "mapping=M7"
    other = step.run({"action": "submit", "execution_name": "job-2",
                      "input": {"bucket": account.bucket, "key": key, "options": {"mapping": "M8"}}})
    assert other["queued"] is False and fake.calls == ["validate", "submit"]
    assert guard.snapshot("campaign", "default")["holders"]["job-2"]["lane"] == "mapping=M8"


def test_a_poll_near_the_executions_six_day_budget_goes_on_in_a_new_execution(account):
    """An execution may run 7 days (statemachines/import.asl.json); the loop moves to a new one
    once this one's age plus the next wait would pass 6 days (518,400 s)."""
    s = Setup(account, deadline_seconds=2_000_000)
    job = {**POLLED, "waited_seconds": 517_900, "wait_seconds": 100, "executions": ["job-1", "job-1-c"],
           "executions_count": 2, "execution": {"index": 1, "name": "job-1-c", "polls": 3, "invocations_before": 0,
                                                "waited_at_start": 0}}
    s.fake.polls = [Progress(job={}, next_wait_seconds=401), Progress(job={}, next_wait_seconds=400),
                    Progress(job={}, done=True, state=FinalState.SUCCEEDED)]
    out = s.run("poll", job=job, name="job-1-c")  # 518,000 s waited + 401 > 518,400
    assert (out["continue_in_new_execution"], out["next_execution_name"]) == (True, next_name("job-1", 2))
    assert (out["executions"], out["executions_count"]) == (["job-1", "job-1-c"], 2)
    assert out["execution"] == {"index": 1, "name": "job-1-c", "polls": 4, "invocations_before": 0,
                                "waited_at_start": 0}
    stay = s.run("poll", job=job, name="job-1-c")  # + 400: exactly the budget, not past it
    assert stay["continue_in_new_execution"] is False and "next_execution_name" not in stay
    done = s.run("poll", job=job, name="job-1-c")
    assert done["continue_in_new_execution"] is False and "next_execution_name" not in done


def test_an_executions_own_age_counts_too(account):
    s = Setup(account)
    s.fake.polls = [Progress(job={}, next_wait_seconds=1), Progress(job={}, next_wait_seconds=1)]
    ev = {**event("poll", account, job={**POLLED, "wait_seconds": 30}), "execution_arn": "arn:sfn:job-1"}
    old = s.step.run({**ev, "started_at": "2025-12-26T00:00:00Z"})  # 6 days before T0: + 1 s passes it
    assert old["continue_in_new_execution"] is True
    young = s.step.run({**ev, "started_at": "2025-12-26T00:00:01Z"})
    assert young["continue_in_new_execution"] is False


# -- submit's payloads and row, whole ---------------------------------------------------------------------------

def test_a_submit_returns_its_whole_payload_and_marks_the_job_running(account):
    s = Setup(account)
    s.fake.submit_progress = Progress(job={"n": 1}, message="sent", vendor_ref="J-1")
    s.now += 5  # the submit's times are the clock's, not the upload's
    out = s.run("submit")
    assert out == {"job_id": "job-1", "vendor": "hopex", "target": "default", "source_name": "clean.mgl",
                   "size": len(CLEAN), "polls": 0, "waited_seconds": 0, "dry_run": False,
                   "submitted_at": "2026-01-01T00:00:05.000000Z", "pace": None, "done": False, "state": None,
                   "wait_seconds": 5, "connector": {"n": 1}, "counts": {}, "vendor_ref": "J-1", "message": "sent",
                   "error_type": None, "raw_format": None, "queued": False, **FIRST_EXECUTION}
    row = s.row()
    assert {k: row[k] for k in ("state", "updated_at", "source_key", "current_execution", "target")} == {
        "state": "RUNNING", "updated_at": "2026-01-01T00:00:05.000000Z", "source_key": KEY,
        "current_execution": "job-1", "target": "default"}


def test_a_dry_run_returns_its_whole_payload(account):
    s = Setup(account)
    out = s.run("submit", dry_run=True)
    assert out == {"job_id": "job-1", "vendor": "hopex", "target": "default", "source_name": "clean.mgl",
                   "size": len(CLEAN), "polls": 0, "waited_seconds": 0, "dry_run": True,
                   "submitted_at": "2026-01-01T00:00:00.000000Z", "done": True, "state": "VALIDATED",
                   "wait_seconds": 0, "connector": {}, "counts": {"would_reject": 0},
                   "message": "dry run: the file passed every local check; nothing was sent to the vendor",
                   "vendor_ref": None, "raw_format": None, "queued": False, **FIRST_EXECUTION}
    assert s.fake.calls == ["validate"] and "state" not in s.row()  # a dry run writes no RUNNING row (usage only)


def test_an_import_that_queued_then_paused_the_target_at_submit_keeps_its_queue_counters(account):
    s = Setup(account, Down, max_concurrent_imports=1, queue_check_seconds=20, breaker_failures=1,
              breaker_cooldown_seconds=40)
    s.guard.acquire("hopex", "default", "other", "arn:sfn:other", limit=1)
    out = s.run("submit")
    s.guard.release("hopex", "default", "other")
    s.now += 20
    paused = s.run("submit", job=out)  # its slot now, and its own failure opens the breaker
    assert s.fake.calls == ["validate", "submit"]
    assert paused == {**queued({"checks": 1, "queued_seconds": 20, "paused_seconds": 0, "paused": True,
                                "pause_epoch": None, "pause_waited": 0, "position": None}, PAUSED, 40),
                      **FIRST_EXECUTION, "execution": {**FIRST_EXECUTION["execution"], "polls": 1}}


class Checkpoints(ScriptedConnector):
    """Keeps the context it was given and checkpoints its cursor at submit."""

    def submit(self, ctx):
        self.ctx = ctx
        ctx.checkpoint({"n": 1})
        return super().submit(ctx)


def test_a_submits_context_names_its_job_and_checkpoints_at_the_steps_time(account):
    s = Setup(account, Checkpoints)
    s.step.time_left = lambda: 42.0  # the Lambda's remaining time, as the handler gives it
    s.fake.submit_progress = Progress(job={"n": 1}, message="sent")
    s.now += 7
    s.run("submit")
    ctx = s.fake.ctx
    assert (ctx.job_id, ctx.dry_run, ctx.time_left()) == ("job-1", False, 42.0)
    row = s.row()
    assert (row["checkpoint_poll"], json.loads(row["checkpoint_job"]), row["updated_at"]) == (
        0, {"n": 1}, "2026-01-01T00:00:07.000000Z")
    assert s.fake.calls == ["validate", "submit"]


class KeepsContext(ScriptedConnector):
    def validate(self, ctx):
        self.ctx = ctx
        return super().validate(ctx)


def test_a_dry_runs_context_says_dry_run(account):
    s = Setup(account, KeepsContext)
    s.run("submit", dry_run=True)
    assert (s.fake.ctx.job_id, s.fake.ctx.dry_run) == ("job-1", True)


def test_a_third_execution_counts_on_from_the_second(account):
    s = Setup(account)
    job = {**POLLED, "wait_seconds": 30, "continue_in_new_execution": True, "next_execution_name": "job-1-c-2",
           "execution": {"index": 1, "name": "job-1-c-1", "polls": 4, "invocations_before": 5,
                         "waited_at_start": 40},
           "executions": ["job-1", "job-1-c-1"], "executions_count": 2}
    out = s.run("submit", job=job, name="job-1-c-2")
    assert s.fake.calls == []  # a resume asks the vendor nothing
    assert out == {**POLLED, "wait_seconds": 30, "continue_in_new_execution": False, "queued": False,
                   "execution": {"index": 2, "name": "job-1-c-2", "polls": 0, "invocations_before": 0,
                                 "waited_at_start": 90},
                   "executions": ["job-1", "job-1-c-1", "job-1-c-2"], "executions_count": 3}
    assert s.row()["current_execution"] == "job-1-c-2"


# -- the paused part of a poll's payload, whole ------------------------------------------------------------------

def _poll_fails(s):
    s.fake.poll = lambda job, ctx: (_ for _ in ()).throw(VendorUnavailableError("down"))


def test_a_poll_whose_failure_pauses_the_target_waits_its_cool_down(account):
    s = Setup(account, Down, breaker_failures=1, breaker_cooldown_seconds=40)
    _poll_fails(s)
    out = s.run("poll", job={**POLLED, "wait_seconds": 30})
    assert out == {**POLLED, "polls": 4, "waited_seconds": 120, "raw_format": None, "pace": None, "staged": None,
                   "rejects_are_records": None, "record_import": None, "paused": True, "done": False,
                   "state": None, "wait_seconds": 40, "pause_epoch": None, "pause_waited": 0, "queued": False,
                   **FIRST_EXECUTION, "execution": {**FIRST_EXECUTION["execution"], "polls": 1}}


def test_a_poll_failing_while_others_fail_waits_one_cool_down_as_suspected(account):
    s = Setup(account, Down, breaker_failures=3, breaker_cooldown_seconds=40)
    s.step.breaker.failed("hopex", "default", threshold=3, cooldown=40, max_cooldown=900, job_id="other")
    _poll_fails(s)
    out = s.run("poll", job={**POLLED, "wait_seconds": 30})
    assert out == {**POLLED, "polls": 4, "waited_seconds": 120, "raw_format": None, "pace": None, "staged": None,
                   "rejects_are_records": None, "record_import": None, "paused": True, "done": False,
                   "state": None, "wait_seconds": 40, "pause_epoch": None, "pause_waited": 0, "suspected": True,
                   "queued": False, **FIRST_EXECUTION, "execution": {**FIRST_EXECUTION["execution"], "polls": 1}}


def test_a_failed_probe_doubles_the_cool_down_up_to_its_maximum(account):
    s = Setup(account, Down, breaker_cooldown_seconds=60, breaker_max_cooldown_seconds=90)
    s.step.breaker.set_state("hopex", "default", "PAUSED")
    _poll_fails(s)
    # waited the whole 60 s cool-down of epoch 1: this poll is the probe, and it fails
    out = s.run("poll", job={**POLLED, "paused": True, "pause_epoch": 1, "pause_waited": 30, "wait_seconds": 30})
    b = s.item()["breaker"]
    assert (b["state"], b["epoch"], b["cooldown"]) == ("OPEN", 2, 90)  # 2 x 60, at most 90
    assert (out["paused"], out["wait_seconds"]) == (True, 60)


def test_a_paused_poll_that_waited_nothing_yet_waits_the_whole_default_cool_down(account):
    s = Setup(account, breaker_cooldown_seconds=40)
    GuardTable(account.dynamodb.Table(JOBS_TABLE)).write("guard#hopex#default", {
        "holders": {}, "waiters": {}, "next_ticket": 0, "version": 0, "breaker": {"state": "OPEN", "epoch": 1}})
    out = s.run("poll", job={**POLLED, "paused": True, "pause_epoch": 1, "pause_waited": 0, "wait_seconds": None})
    assert s.fake.calls == []
    assert (out["wait_seconds"], out["pause_epoch"], out["pause_waited"]) == (40, 1, 0)


def test_a_submit_learns_its_pace_from_jobs_of_a_similar_size_and_probes_for_its_own_job(account):
    s = Setup(account)
    history = ((len(CLEAN), 40), (len(CLEAN), 60), (len(CLEAN), 80), (100_000, 900), (100_000, 900), (100_000, 900))
    for n, (size, seconds) in enumerate(history):
        account.jobs.put_status({"job_id": f"old-{n}", "vendor": "hopex", "state": "SUCCEEDED", "target": "default",
                                 "updated_at": f"2026-01-0{n + 1}T00:00:00.000000Z", "vendor_seconds": seconds,
                                 "source": {"size": size}})
    s.fake.submit_progress = Progress(job={}, message="sent")
    out = s.run("submit", name="job-7")  # job-7: one of the 1 in 5 job ids that probe an early end
    assert out["pace"] == {"expected_seconds": 40, "step_seconds": 2, "samples": 3, "probe_seconds": 32}


def test_a_cirrus_step_behind_a_guard_paces_its_connector_under_the_targets_shared_rate(account):
    from vendor_import.logic.guard import SharedPacer

    settings = load_settings("cirrus", {"vendor": "cirrus", "base_url": "https://cirrus.invalid", "username": "u",
                                        "password": "offline-password", "max_calls_per_second": 10})
    guard = Guard(GuardTable(account.dynamodb.Table(JOBS_TABLE)), describe=lambda arn: "RUNNING")
    step = VendorStep(vendor="cirrus", settings_loader=lambda *a: settings, s3_client=account.s3,
                      store=account.store, jobs=account.jobs, guard=guard)
    conn = step._connector(settings, "prod")
    assert isinstance(conn.pacer, SharedPacer)
    assert (conn.pacer.per_unit.key, conn.pacer.per_unit.rate) == ("rate#cirrus#prod#max_calls_per_second", 9.0)
    assert conn.pacer.per_unit.table.name == JOBS_TABLE  # the guard's table holds the shared budget
    assert step._connector(settings, "prod") is conn  # cached while the settings are unchanged
    other = step._connector(settings, "test")
    fresh = step._connector(dict(settings), "prod")  # new settings: prod's old connector (and token) dropped
    assert fresh is not conn and list(step._connectors.values()) == [other, fresh]


class DoneAtSubmit(Settling):
    """A record import small enough to end in its submit, one record refused."""

    def submit(self, ctx):
        self.calls.append("submit")
        return Progress(job={"n": 2}, done=True, state=FinalState.SUCCEEDED_WITH_REJECTS,
                        rejects=[RejectRow("2", "bad date")], counts={"sent": 2, "rejected": 1}, message="done")

    def record_tally(self, job):
        self.seen_jobs.append(job)
        return self.tally


def test_a_record_import_finished_at_submit_is_tallied_and_stages_its_rejects_as_the_first_step(account):
    s = Setup(account, DoneAtSubmit)
    s.fake.tally = RecordTally(read=2, accepted=1, refused_by_vendor=1, refused_locally=0)
    out = s.run("submit")
    assert s.fake.seen_jobs == [{"n": 2}]  # the finished job's own tally
    assert account.keys("work/job-1/rejects/") == ["work/job-1/rejects/step-000000.csv"]
    assert out == {"job_id": "job-1", "vendor": "hopex", "target": "default", "source_name": "clean.mgl",
                   "size": len(CLEAN), "polls": 0, "waited_seconds": 0, "dry_run": False,
                   "submitted_at": "2026-01-01T00:00:00.000000Z", "pace": None, "record_import": True, "done": True,
                   "state": "SUCCEEDED_WITH_REJECTS", "wait_seconds": 0, "connector": {"n": 2},
                   "counts": {"sent": 2, "rejected": 1}, "vendor_ref": None, "message": "done", "error_type": None,
                   "raw_format": None, "queued": False, **FIRST_EXECUTION}


def test_a_paused_poll_that_finds_a_new_epoch_starts_its_wait_again(account):
    s = Setup(account)
    GuardTable(account.dynamodb.Table(JOBS_TABLE)).write("guard#hopex#default", {
        "holders": {}, "waiters": {}, "next_ticket": 0, "version": 0,
        "breaker": {"state": "OPEN", "epoch": 2, "cooldown": 60}})
    out = s.run("poll", job={**POLLED, "paused": True, "pause_epoch": 1, "pause_waited": 25, "wait_seconds": 5})
    assert (out["wait_seconds"], out["pause_epoch"], out["pause_waited"]) == (60, 2, 0)  # epoch 1's 30 s don't count
