"""The vendor step's payload, field by field, written by hand: what a poll carries forward from
the previous step, what it takes from the upload, and the exact timed-out answer (the cases the
mutation run, `make mutation`, showed untested)."""

from __future__ import annotations

import time

import pytest
from vendor_import.connectors import load_settings
from vendor_import.errors import InputError
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
                   "record_import": None,
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


def test_the_first_step_of_a_continued_execution_resumes_the_job_without_a_vendor_call(account):
    settings = load_settings("hopex", _offline_settings())
    fake = ScriptedConnector(settings)
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN)
    job = {**CARRIED, "polls": 40, "waited_seconds": 500, "wait_seconds": 30, "connector": {"n": 7},
           "vendor_ref": "J-1", "counts": {"sent": 3}, "usage": {"lambda_invocations": 41, "lambda_gb_seconds": 2.0},
           "continue_in_new_execution": True, "next_execution_name": "job-1-c-1",
           "execution": {"index": 0, "name": "job-1", "polls": 40, "invocations_before": 0, "waited_at_start": 0},
           "executions": ["job-1"], "executions_count": 1}
    out = make_step(account, settings, fake).run(event("submit", account, job=job, name="job-1-c-1"))
    assert fake.calls == []
    # the job goes on as it was: same id, cursor, counts and pending wait
    assert {k: out[k] for k in CARRIED} == CARRIED
    assert (out["polls"], out["waited_seconds"], out["wait_seconds"]) == (40, 500, 30)
    assert (out["connector"], out["vendor_ref"], out["counts"]) == ({"n": 7}, "J-1", {"sent": 3})
    # a new execution: index 1, nothing polled in it yet, 500 s waited before it, the attempt before this one
    assert out["execution"] == {"index": 1, "name": "job-1-c-1", "polls": 0, "invocations_before": 0,
                                "waited_at_start": 500}
    assert (out["executions"], out["executions_count"]) == (["job-1", "job-1-c-1"], 2)
    assert out["continue_in_new_execution"] is False
    assert "next_execution_name" not in out
    assert out["usage"]["lambda_invocations"] == 42  # this step counts
    assert account.jobs.get("job-1")["current_execution"] == "job-1-c-1"


def test_a_submit_named_otherwise_than_the_continuation_asked_starts_a_new_job(account):
    settings = load_settings("hopex", _offline_settings())
    fake = ScriptedConnector(settings, submit=Progress(job={"n": 1}, message="sent"))
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN)
    job = {"job_id": "job-1", "continue_in_new_execution": True, "next_execution_name": "job-1-c-1"}
    out = make_step(account, settings, fake).run(event("submit", account, job=job, name="other"))
    assert fake.calls == ["validate", "submit"]
    assert out["job_id"] == "other"
    assert out["execution"]["index"] == 0


def test_a_missing_upload_is_an_input_error_naming_it(account):
    settings = load_settings("hopex", _offline_settings())
    step = make_step(account, settings, ScriptedConnector(settings))
    with pytest.raises(InputError) as caught:
        step.run(event("submit", account))
    assert str(caught.value) == ("cannot read s3://unit-import-bucket/inbox/hopex/clean.mgl: it does not exist or is "
                                 "not readable (404)")


def test_the_upload_is_read_at_its_version(account):
    # the object exists, not at this version: the step must not read another version
    settings = load_settings("hopex", _offline_settings())
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN)
    step = make_step(account, settings, ScriptedConnector(settings))
    with pytest.raises(InputError) as caught:
        step.run(event("submit", account, version_id="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"))
    assert str(caught.value) == ("cannot read s3://unit-import-bucket/inbox/hopex/clean.mgl version "
                                 "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY: it does not exist or is not readable (404)")


def refused_submit(account, text: str):
    """Submit with a connector whose vendor refuses the file with ``text``: the error raised."""
    from vendor_import.errors import VendorRejectedError

    settings = load_settings("hopex", _offline_settings())

    def refuse(ctx):
        raise VendorRejectedError(text)

    fake = ScriptedConnector(settings)
    fake.submit = refuse
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN)
    with pytest.raises(VendorRejectedError) as caught:
        make_step(account, settings, fake).run(event("submit", account))
    return caught.value


def test_a_vendor_error_too_long_for_the_state_travels_cut_and_whole_in_s3(account):
    text = "refused: " + "x" * 20_000  # 20,009 characters, over the 16,000 a state text may hold
    error = refused_submit(account, text)
    assert len(error.message) <= 16_000
    assert error.message.endswith("characters cut: the whole text is in the status JSON in S3]")
    assert error.args == (error.message,)
    assert account.read("work/job-1/error.txt").decode() == text


def test_a_vendor_error_of_exactly_the_state_limit_is_left_whole(account):
    text = "y" * 16_000
    assert refused_submit(account, text).message == text
    assert account.keys("work/job-1/") == []


def test_a_clean_dry_run_says_so(account):
    settings = load_settings("hopex", _offline_settings())
    fake = ScriptedConnector(settings)
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN)
    out = make_step(account, settings, fake).run(event("submit", account, dry_run=True))
    assert (out["state"], out["message"], out["counts"]) == (
        "VALIDATED", "dry run: the file passed every local check; nothing was sent to the vendor", {"would_reject": 0})


def test_the_timed_out_answer_quotes_the_last_vendor_status(account):
    settings = load_settings("hopex", {**_offline_settings(), "deadline_seconds": 100})
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN)
    job = {**CARRIED, "polls": 4, "waited_seconds": 95, "wait_seconds": 10, "message": "job J-9 is RUNNING"}
    out = make_step(account, settings, ScriptedConnector(settings)).run(event("poll", account, job=job))
    assert out["message"] == ("the vendor job was still running after 105 s of polling (deadline_seconds = 100); "
                              "last vendor status: job J-9 is RUNNING")


def submit_with_limit(account, data: bytes, max_file_bytes):
    settings = load_settings("hopex", _offline_settings())
    fake = ScriptedConnector(settings, submit=Progress(job={}, message="sent"))
    fake.max_file_bytes = max_file_bytes
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=data)
    return fake, make_step(account, settings, fake).run(event("submit", account))


def test_a_file_of_exactly_the_connectors_limit_is_sent(account):
    fake, _ = submit_with_limit(account, b"12345", 5)
    assert fake.calls == ["validate", "submit"]


def test_a_file_over_the_connectors_limit_or_empty_is_refused_before_any_vendor_call(account):
    with pytest.raises(InputError, match=r"^clean\.mgl is 6 bytes, over "):
        submit_with_limit(account, b"123456", 5)
    with pytest.raises(InputError, match=r"^clean\.mgl is empty \(0 bytes\): nothing to import$"):
        submit_with_limit(account, b"", None)


def test_a_gzip_upload_reaches_the_connector_decompressed_at_every_step(account):
    import gzip

    settings = load_settings("hopex", _offline_settings())
    seen = []

    def look(job, ctx):
        seen.append(ctx.source)
        return Progress(job={}, message="running")

    fake = ScriptedConnector(settings, submit=Progress(job={}, message="sent"), polls=[look])
    fake.validate = lambda ctx: seen.append(ctx.source) or []
    key = KEY + ".gz"
    account.s3.put_object(Bucket=account.bucket, Key=key, Body=gzip.compress(CLEAN))
    step = make_step(account, settings, fake)
    out = step.run(event("submit", account, key=key))
    step.run(event("poll", account, key=key, job=out))
    for source in seen:  # submit, then the poll: the staged copy, named without .gz
        assert (source.name, source.size) == ("clean.mgl", len(CLEAN))
        with source.open(0) as stream:
            assert stream.read() == CLEAN
    assert len(seen) == 2


def test_a_vendor_message_too_long_for_the_state_is_cut_and_kept_whole_in_s3(account):
    settings = load_settings("hopex", _offline_settings())
    text = "status: " + "z" * 20_000
    fake = ScriptedConnector(settings, submit=Progress(job={}, message=text))
    fake.rejects_are_records = False  # a vendor whose rejects are messages, not records
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN)
    out = make_step(account, settings, fake).run(event("submit", account))
    assert len(out["message"]) <= 16_000
    assert out["message"].endswith("characters cut: the whole text is in the status JSON in S3]")
    assert account.read(out["message_key"]).decode() == text
    assert out["message_key"] == "work/job-1/message.txt"
    assert out["rejects_are_records"] is False
