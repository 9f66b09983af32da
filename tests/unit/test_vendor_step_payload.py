"""The vendor step's payload, field by field, written by hand: what a poll carries forward from
the previous step, what it takes from the upload, and the exact timed-out answer (the cases the
mutation run, `make mutation`, showed untested)."""

from __future__ import annotations

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
                   "message": "the vendor job was still running after 100 s of polling (deadline_seconds = 100)"}
