"""The vendor function's logic: Submit and Poll steps around a connector, with moto S3/DynamoDB."""

from __future__ import annotations

import csv
import io

import pytest
from vendor_import.connectors import load_settings
from vendor_import.connectors.base import Connector
from vendor_import.errors import InputError, VendorUnavailableError
from vendor_import.logic.vendor_step import VendorStep
from vendor_import.model import FinalState, Progress, RejectRow

from local.simulators.hopex import PASSWORD, HopexSimulator

CLEAN = b'.Create ."Org-Unit" "Sales Department"\n.Validate\n'
KEY = "inbox/hopex/clean.mgl"


@pytest.fixture(scope="module")
def shared_simulator():
    with HopexSimulator() as sim:
        yield sim


@pytest.fixture
def sim(shared_simulator):
    shared_simulator.reset()
    return shared_simulator


def make_step(account, settings, connector=None, vendor="hopex"):
    cache = {(vendor, "default", id(settings)): connector} if connector is not None else {}
    return VendorStep(vendor=vendor, settings_loader=lambda: settings, s3_client=account.s3,
                      store=account.store, jobs=account.jobs, connector_cache=cache)


@pytest.fixture
def hopex(account, sim):
    """A VendorStep for hopex talking to the simulator, with the file uploaded."""
    settings = load_settings("hopex", sim.settings())
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN)
    return make_step(account, settings)


def event(action, account, key=KEY, job=None, name="job-1", **inp):
    payload = {"bucket": account.bucket, "key": key, **inp}
    if job is not None:
        payload["job"] = job
    return {"action": action, "input": payload, "execution_name": name}


class ScriptedConnector(Connector):
    """A connector whose answers the test writes: no HTTP."""

    vendor = "hopex"

    def __init__(self, settings, *, validate_rows=(), submit=None, polls=()):
        super().__init__(settings)
        self.validate_rows = list(validate_rows)
        self.submit_progress = submit
        self.polls = list(polls)
        self.calls: list[str] = []
        self.seen_jobs: list[dict] = []

    def validate(self, ctx):
        self.calls.append("validate")
        return self.validate_rows

    def submit(self, ctx):
        self.calls.append("submit")
        return self.submit_progress

    def poll(self, job, ctx):
        self.calls.append("poll")
        self.seen_jobs.append(job)
        step = self.polls.pop(0)
        return step(job, ctx) if callable(step) else step


# -- input ---------------------------------------------------------------------------------------------------

def test_unknown_action_is_an_input_error(hopex, account):
    with pytest.raises(InputError, match="unknown action 'resume'"):
        hopex.run(event("resume", account))


def test_key_of_another_vendor_is_refused_by_this_state_machine(hopex, account, sim):
    with pytest.raises(InputError, match="routed to vendor 'cirrus' but this is the hopex state machine") as exc:
        hopex.run(event("submit", account, key="inbox/cirrus/accounts.xml"))
    assert "inbox/hopex/" in str(exc.value)
    assert sim.requests == []


def test_missing_key_in_the_input_is_named(hopex, account):
    with pytest.raises(InputError, match='input field "key" is missing'):
        hopex.run({"action": "submit", "input": {"bucket": account.bucket}, "execution_name": "j"})


def test_missing_object_is_an_input_error_with_its_uri(hopex, account, sim):
    uri = f"s3://{account.bucket}/inbox/hopex/missing.mgl"
    with pytest.raises(InputError, match=f"cannot read {uri}: it does not exist"):
        hopex.run(event("submit", account, key="inbox/hopex/missing.mgl"))
    assert sim.requests == []


def test_missing_version_is_an_input_error_naming_the_version(hopex, account):
    with pytest.raises(InputError, match="version 3HL4kqtJlcpXroDTDmJ"):
        hopex.run(event("submit", account, version_id="3HL4kqtJlcpXroDTDmJ"))


def test_missing_bucket_is_an_input_error(hopex, account):
    with pytest.raises(InputError, match="cannot read s3://no-such-bucket-here/"):
        hopex.run({"action": "submit", "input": {"bucket": "no-such-bucket-here", "key": KEY}, "execution_name": "j"})


def test_empty_object_is_an_input_error_before_any_vendor_call(hopex, account, sim):
    account.s3.put_object(Bucket=account.bucket, Key="inbox/hopex/empty.mgl", Body=b"")
    with pytest.raises(InputError, match="empty"):
        hopex.run(event("submit", account, key="inbox/hopex/empty.mgl"))
    assert sim.requests == []


def test_bad_option_is_an_input_error_before_any_vendor_call(hopex, account, sim):
    with pytest.raises(InputError, match="option validate"):
        hopex.run(event("submit", account, options={"validate": "Sometimes"}))
    assert sim.requests == []


# -- dry run -------------------------------------------------------------------------------------------------

def test_dry_run_is_validated_without_any_vendor_call(hopex, account, sim):
    job = hopex.run(event("submit", account, dry_run=True))
    assert job["done"] is True
    assert job["state"] == FinalState.VALIDATED.value
    assert job["dry_run"] is True
    assert job["counts"] == {"would_reject": 0}
    assert "nothing was sent" in job["message"]
    assert sim.requests == []
    assert "state" not in (account.jobs.get("job-1") or {})  # not even marked running (only its usage is counted)


def test_dry_run_segment_in_the_key_is_a_dry_run(hopex, account, sim):
    account.s3.put_object(Bucket=account.bucket, Key="inbox/hopex/dry-run/clean.mgl", Body=CLEAN)
    job = hopex.run(event("submit", account, key="inbox/hopex/dry-run/clean.mgl"))
    assert job["state"] == "VALIDATED" and sim.requests == []


def test_dry_run_stages_the_would_be_rejects(account):
    settings = load_settings("hopex", {**_offline_settings()})
    fake = ScriptedConnector(settings, validate_rows=[RejectRow("4", "name too long", "E1")])
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN)
    job = make_step(account, settings, fake).run(event("submit", account, dry_run=True))
    assert fake.calls == ["validate"]
    assert job["counts"] == {"would_reject": 1}
    assert "1 record(s) would be rejected" in job["message"]
    record = account.finalizer().from_state({"input": {"bucket": account.bucket, "key": KEY, "dry_run": True,
                                                       "job": job}, "execution_name": "job-1"})
    assert record["state"] == "VALIDATED" and record["rejects"]["rows"] == 1


# -- submit and poll against the simulator -------------------------------------------------------------------

def test_submit_starts_the_vendor_job_and_asks_for_the_first_wait(hopex, account, sim):
    job = hopex.run(event("submit", account))
    assert job["done"] is False and job["state"] is None
    assert job["wait_seconds"] == 5  # poll.first_wait_seconds
    assert job["vendor_ref"] == job["connector"]["job_id"] in sim.jobs
    assert (job["source_name"], job["size"], job["polls"], job["vendor"]) == ("clean.mgl", len(CLEAN), 0, "hopex")
    assert len(sim.requests_to("/import", "POST")) == 1
    assert account.jobs.get("job-1")["state"] == "RUNNING"


def test_polls_until_done_with_growing_waits(hopex, account, sim):
    job = hopex.run(event("submit", account))
    waits = [job["wait_seconds"]]
    while not job["done"]:
        job = hopex.run(event("poll", account, job=job))
        waits.append(job["wait_seconds"])
    assert job["state"] == "SUCCEEDED"
    assert job["polls"] == 3  # the simulator answers RUNNING twice
    assert waits == [5, 10, 20, 0]
    assert job["waited_seconds"] == 5 + 10 + 20


def test_no_secret_in_the_step_payload(hopex, account, sim):
    job = hopex.run(event("submit", account))
    job = hopex.run(event("poll", account, job=job))
    text = repr(job)
    assert PASSWORD not in text
    assert not any(token in text for token in sim.tokens)


# -- deadline ------------------------------------------------------------------------------------------------

def test_poll_past_the_deadline_is_timed_out_without_asking_the_vendor(account, sim):
    settings = load_settings("hopex", sim.settings(deadline_seconds=100))
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN)
    step = make_step(account, settings)
    job = {"job_id": "job-1", "vendor": "hopex", "source_name": "clean.mgl", "size": len(CLEAN), "polls": 4,
           "waited_seconds": 60, "wait_seconds": 40, "connector": {"job_id": "J-9"}, "vendor_ref": "J-9",
           "counts": {"polls": 4}}
    out = step.run(event("poll", account, job=job))
    assert out["done"] is True and out["state"] == FinalState.TIMED_OUT.value
    assert out["waited_seconds"] == 100 and out["polls"] == 5
    assert out["vendor_ref"] == "J-9" and out["connector"] == {"job_id": "J-9"}
    assert "deadline_seconds = 100" in out["message"]
    assert sim.requests == []


def test_poll_just_before_the_deadline_still_asks_the_vendor(account):
    settings = load_settings("hopex", {**_offline_settings(), "deadline_seconds": 100})
    fake = ScriptedConnector(settings, polls=[Progress(job={"n": 2}, message="still running")])
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN)
    out = make_step(account, settings, fake).run(
        event("poll", account, job={"polls": 4, "waited_seconds": 60, "wait_seconds": 39, "size": len(CLEAN)}))
    assert fake.calls == ["poll"] and out["done"] is False and out["waited_seconds"] == 99


# -- what the step does with the connector's answers ---------------------------------------------------------

def _offline_settings():
    return {"vendor": "hopex", "base_url": "https://hopex.invalid", "environment_id": "e", "repository_id": "r",
            "profile_id": "p", "auth": {"type": "basic", "username": "u", "password": "offline-password"}}


def test_connector_wait_overrides_the_backoff_and_zero_means_poll_again_now(account):
    settings = load_settings("hopex", _offline_settings())
    fake = ScriptedConnector(settings, submit=Progress(job={"cursor": 0}, next_wait_seconds=0),
                             polls=[Progress(job={"cursor": 1}, next_wait_seconds=7)])
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN)
    step = make_step(account, settings, fake)
    job = step.run(event("submit", account))
    assert job["wait_seconds"] == 0
    job = step.run(event("poll", account, job=job))
    assert job["wait_seconds"] == 7 and job["connector"] == {"cursor": 1}


def test_rejects_of_submit_and_polls_are_assembled_in_step_order(account):
    settings = load_settings("hopex", _offline_settings())
    fake = ScriptedConnector(
        settings,
        submit=Progress(job={"c": 0}, rejects=[RejectRow("1", "from submit")]),
        polls=[Progress(job={"c": 1}, rejects=[RejectRow("2", "from poll 1")]),
               Progress(job={"c": 2}, done=True, state=FinalState.SUCCEEDED, rejects=[RejectRow("3", "from poll 2")])])
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN)
    step = make_step(account, settings, fake)
    job = step.run(event("submit", account))
    while not job["done"]:
        job = step.run(event("poll", account, job=job))
    record = account.finalizer().from_state({"input": {"bucket": account.bucket, "key": KEY, "job": job},
                                             "execution_name": "job-1"})
    rows = list(csv.reader(io.StringIO(account.read(record["rejects"]["csv_uri"]).decode())))
    assert [r[0] for r in rows] == ["record", "1", "2", "3"]
    assert record["state"] == "SUCCEEDED_WITH_REJECTS"


def test_retried_poll_resumes_from_the_checkpoint_of_the_failed_attempt(account):
    settings = load_settings("hopex", _offline_settings())

    def send_then_fail(job, ctx):
        ctx.emit_rejects("000000000000100", [RejectRow("100", "refused")])
        ctx.checkpoint({"cursor": 200})
        raise VendorUnavailableError("connection reset after the batch was sent")

    fake = ScriptedConnector(settings, polls=[send_then_fail, Progress(job={"cursor": 300}, done=True,
                                                                         state=FinalState.SUCCEEDED)])
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=CLEAN)
    step = make_step(account, settings, fake)
    job = {"polls": 0, "wait_seconds": 0, "connector": {"cursor": 100}, "size": len(CLEAN), "source_name": "clean.mgl"}
    with pytest.raises(VendorUnavailableError):
        step.run(event("poll", account, job=job))
    out = step.run(event("poll", account, job=job))  # the state machine retries with the same input
    assert fake.seen_jobs == [{"cursor": 100}, {"cursor": 200}]
    assert out["done"] is True
    record = account.finalizer().from_state({"input": {"bucket": account.bucket, "key": KEY, "job": out},
                                             "execution_name": "job-1"})
    assert record["rejects"]["rows"] == 1


def test_connector_is_reused_while_the_settings_are_unchanged(account):
    first = load_settings("hopex", _offline_settings())
    cache: dict = {}
    step = VendorStep(vendor="hopex", settings_loader=lambda: first, s3_client=account.s3, store=account.store,
                      jobs=account.jobs, connector_cache=cache)
    a = step._connector(first)
    assert step._connector(first) is a
    second = load_settings("hopex", _offline_settings())
    b = step._connector(second)
    assert b is not a and list(cache) == [("hopex", "default", id(second))]


def test_each_target_keeps_its_own_connector_and_a_change_drops_only_that_targets(account):
    """Tokens are cached per target: the connector (which holds the token) is keyed by target."""
    prod = load_settings("hopex", _offline_settings())
    test = load_settings("hopex", _offline_settings())
    cache: dict = {}
    step = VendorStep(vendor="hopex", settings_loader=lambda target="default": prod, s3_client=account.s3,
                      store=account.store, jobs=account.jobs, connector_cache=cache)
    a, b = step._connector(prod, "prod"), step._connector(test, "test")
    assert a is not b and step._connector(prod, "prod") is a
    newer = load_settings("hopex", _offline_settings())
    c = step._connector(newer, "prod")
    assert c is not a and step._connector(test, "test") is b
    assert sorted(k[:2] for k in cache) == [("hopex", "prod"), ("hopex", "test")]
