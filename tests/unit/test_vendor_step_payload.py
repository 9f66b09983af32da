"""The vendor step's payload, field by field, written by hand: what a poll carries forward from
the previous step, what it takes from the upload, and the exact timed-out answer (the cases the
mutation run, `make mutation`, showed untested)."""

from __future__ import annotations

import time

from vendor_import.connectors import load_settings
from vendor_import.model import FinalState, Progress

from .test_vendor_step import CLEAN, KEY, ScriptedConnector, _offline_settings, event, make_step

CARRIED = {"job_id": "job-1", "vendor": "hopex", "source_name": "clean.mgl", "size": 999, "dry_run": False,
           "submitted_at": "2026-01-01T00:00:00.000000Z", "raw_format": {"name": "clean.rejects.txt"},
           "pace": {"expected_seconds": 100, "step_seconds": 5}}


def test_a_poll_carries_the_job_forward_and_reads_options_from_the_upload(account):
    settings = load_settings("hopex", _offline_settings())
    seen = []

    def answer(job, ctx):
        seen.append(ctx)
        return Progress(job={"n": 2}, message="still running")  # no vendor_ref: the previous one stays

    fake = ScriptedConnector(settings, polls=[answer])
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN, Metadata={"validate": "AtEnd"})
    job = {**CARRIED, "polls": 2, "waited_seconds": 30, "wait_seconds": 10, "connector": {"n": 1},
           "vendor_ref": "J-1", "counts": {}}
    out = make_step(account, settings, fake).run(event("poll", account, job=job))
    assert {k: out[k] for k in CARRIED} == CARRIED
    assert (out["polls"], out["waited_seconds"], out["vendor_ref"], out["connector"]) == (3, 40, "J-1", {"n": 2})
    assert out["wait_seconds"] == 60  # the learned pace: expected end at 100 s, 40 s waited
    assert fake.seen_jobs == [{"n": 1}]
    (ctx,) = seen
    assert ctx.source.size == 999  # the size the submit saw, not asked again
    assert ctx.options == {"validate": "AtEnd"}  # S3 metadata options reach every step


def test_a_poll_without_a_previous_wait_counts_none(account):
    settings = load_settings("hopex", _offline_settings())
    fake = ScriptedConnector(settings, polls=[Progress(job={}, message="running")])
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN)
    out = make_step(account, settings, fake).run(event("poll", account, job={"polls": 1, "waited_seconds": 30}))
    assert out["waited_seconds"] == 30 and out["polls"] == 2


def test_the_timed_out_answer_exactly(account):
    settings = load_settings("hopex", {**_offline_settings(), "deadline_seconds": 100})
    fake = ScriptedConnector(settings)
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN)
    job = {**CARRIED, "polls": 4, "waited_seconds": 90, "wait_seconds": 10, "connector": {"c": 1},
           "vendor_ref": "J-9", "counts": {"records": 3}}
    out = make_step(account, settings, fake).run(event("poll", account, job=job))
    assert fake.calls == []
    out.pop("usage")
    assert out == {**CARRIED, "polls": 5, "waited_seconds": 100, "done": True, "state": FinalState.TIMED_OUT.value,
                   "wait_seconds": 0, "connector": {"c": 1}, "counts": {"records": 3}, "vendor_ref": "J-9",
                   "message": "the vendor job was still running after 100 s of polling (deadline_seconds = 100)",
                   "error_type": "DeadlineExceeded", "target": "default", "staged": None, "rejects_are_records": None,
                   # the first execution of the job, its first poll (statemachines: continuation)
                   "continue_in_new_execution": False, "executions": ["job-1"], "executions_count": 1,
                   "queued": False,  # not held back by the vendor guard (statemachines: Wait in queue)
                   "execution": {"index": 0, "name": "job-1", "polls": 1, "invocations_before": 0,
                                 "waited_at_start": 0}}


def test_a_submit_gives_the_connector_every_hook_wired_to_this_job(account):
    from urllib.parse import parse_qs, urlsplit

    from vendor_import.model import RawRejects, RejectRow

    settings = load_settings("hopex", _offline_settings())
    version = account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN,
                                    Metadata={"validate": "AtEnd"})["VersionId"]
    seen = {}

    class Hooks(ScriptedConnector):
        def submit(self, ctx):
            seen["options"], seen["size"], seen["job_id"] = ctx.options, ctx.source.size, ctx.job_id
            seen["url"] = ctx.presign(10**9)  # longer than SigV4 allows: capped at 7 days
            ctx.checkpoint({"cursor": 7})
            ctx.emit_rejects("p1", [RejectRow("1", "bad")], b"raw-1\n", RawRejects("x.rejects.txt", "text/plain"))
            return Progress(job={"cursor": 8}, message="submitted", vendor_ref="J-5")

    step = make_step(account, settings, Hooks(settings))
    out = step.run(event("submit", account, version_id=version))
    assert seen["options"] == {"validate": "AtEnd"} and seen["size"] == len(CLEAN) and seen["job_id"] == "job-1"
    url = urlsplit(seen["url"])
    query = parse_qs(url.query)
    assert url.path.endswith(f"/{KEY}") and query["versionId"] == [version]
    if "X-Amz-Expires" in query:  # SigV4
        assert query["X-Amz-Expires"] == ["604800"]
    else:  # SigV2 (this test's client): an expiry time, 7 days from now
        assert abs(int(query["Expires"][0]) - time.time() - 604800) < 60
    assert account.jobs.load_checkpoint("job-1", 0) == {"cursor": 7}
    assert account.keys("work/job-1/rejects/") == ["work/job-1/rejects/part-p1.csv", "work/job-1/rejects/part-p1.raw"]
    assert account.read("work/job-1/rejects/part-p1.raw") == b"raw-1\n"
    assert out["raw_format"] == {"name": "x.rejects.txt", "content_type": "text/plain", "header": "", "footer": ""}
    assert (out["job_id"], out["vendor"], out["source_name"], out["size"], out["polls"], out["waited_seconds"],
            out["dry_run"], out["vendor_ref"], out["connector"]) == (
        "job-1", "hopex", "clean.mgl", len(CLEAN), 0, 0, False, "J-5", {"cursor": 8})
    assert out["submitted_at"].endswith("Z") and out["pace"] is None  # no history yet: the static backoff


def test_a_submit_learns_the_pace_from_this_vendors_recent_jobs_of_a_similar_size(account):
    settings = load_settings("hopex", _offline_settings())
    for n, seconds in enumerate((40, 60, 80)):
        account.jobs.put_status({"job_id": f"old-{n}", "vendor": "hopex", "state": "SUCCEEDED",
                                 "updated_at": f"2026-01-0{n + 1}T00:00:00.000000Z", "vendor_seconds": seconds,
                                 "source": {"size": len(CLEAN)}})
    fake = ScriptedConnector(settings, submit=Progress(job={}, message="submitted"))
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN)
    out = make_step(account, settings, fake).run(event("submit", account))
    assert out["pace"] == {"expected_seconds": 40, "step_seconds": 2, "samples": 3}
    assert out["wait_seconds"] == 40
