"""Every retry policy's exact bound, and every retryable status injected per message and per
request, over real HTTP against the simulators.

Each policy is tested at its bound from both sides: the last failure it absorbs (the call ends
well after exactly N+1 requests) and the first it does not (it gives up after exactly N+1 requests,
no more). The statuses are the ones the policies name:

* AEP inlet, whole request (connector ``_post``): 429, 500, 502, 503, 504 and no answer, up to
  ``max_retries`` retries. VENDORS.md section 4 "Batch": 429 too many requests, 500 processing
  error, "503: retry >= 3 times with exponential back-off".
* AEP inlet, one message of a 207 (connector ``_send_batch``): a message refused with 429, 500,
  502, 503 or 504 is resent up to ``max_retries`` times, then refused with "still refused after N
  attempts". VENDORS.md section 4: "resend only the failed ones".
* every connector's session (``http.new_session``): a GET answered 502/503/504 is retried twice by
  urllib3 (3 requests); 500 and 429 are not retried there; a POST is never replayed.
* one re-authentication on 401 is tested where it lives (test_cirrus_contract.py
  test_expired_token_is_renewed_once_on_401 / test_401_twice_is_an_auth_error, test_hopex_contract.py
  test_reauthenticates_once_on_401_then_succeeds / test_401_after_reauthentication_raises_auth_error);
  the state machine's Retry MaxAttempts in test_asl.py.
"""

from __future__ import annotations

import json

import pytest
from vendor_import.connectors import build_connector, load_settings
from vendor_import.errors import VendorThrottledError, VendorUnavailableError
from vendor_import.http import new_session, request
from vendor_import.model import FinalState
from vendor_import.source import BytesSource

from local.simulators.aep import AepSimulator
from local.simulators.base import Fault

from .test_aep_contract import Run

RETRYABLE = [429, 500, 502, 503, 504]
MAX_RETRIES = 3  # the smallest max_retries the AEP settings allow (VENDORS.md: retry >= 3 times)


@pytest.fixture
def aep():
    # XDM messages: the batch endpoint's documented payload (VENDORS.md section 4 "Batch")
    with AepSimulator(message_mode="xdm") as s:
        yield s


def aep_connector(sim):
    doc = sim.settings()
    doc.update(max_retries=MAX_RETRIES, retry_base_seconds=0.0, retry_max_seconds=0.0)
    return build_connector("aep", load_settings("aep", doc))


def one_record():
    return BytesSource(json.dumps({"id": "R1", "name": "one"}).encode() + b"\n", "one.ndjson")


def inlet_requests(sim):
    return sim.requests_to("/collection/batch/", "POST")


# -- AEP: one message of a 207 ------------------------------------------------------------------------------

@pytest.mark.parametrize("status", RETRYABLE)
def test_aep_message_refused_max_retries_times_is_accepted_on_the_last_attempt(aep, status):
    aep.fail_messages(status, count=MAX_RETRIES)  # attempts 1..3 refused, the 4th accepted
    done = Run(aep_connector(aep), one_record()).all()
    assert done.state == FinalState.SUCCEEDED
    assert (done.counts["accepted"], done.counts["rejected"]) == (1, 0)
    assert len(inlet_requests(aep)) == 4
    assert aep.accepted_ids() == {"R1": 1}


@pytest.mark.parametrize("status", RETRYABLE)
def test_aep_message_refused_once_more_is_rejected_after_exactly_max_retries_plus_one_attempts(aep, status):
    aep.fail_messages(status, count=MAX_RETRIES + 1, message=f"injected per-message {status}")
    run = Run(aep_connector(aep), one_record())
    done = run.all()
    assert len(inlet_requests(aep)) == 4  # not a fifth
    assert done.counts["accepted"] == 0 and done.counts["rejected"] == 1
    (row,) = run.rows
    assert row.code == str(status)
    assert row.reason == f"injected per-message {status} (still refused after 4 attempts; re-upload the rejects file)"
    assert aep.accepted_ids() == {}


def test_aep_message_refused_with_a_status_that_is_not_retryable_is_sent_once(aep):
    aep.fail_messages(400, count=1, message="Message has unknown xdm format")
    run = Run(aep_connector(aep), one_record())
    run.all()
    assert len(inlet_requests(aep)) == 1
    assert [(r.code, r.reason) for r in run.rows] == [("400", "Message has unknown xdm format")]


# -- AEP: the whole request ---------------------------------------------------------------------------------

def request_fault(kind):
    if kind == "drop":
        return Fault(drop=True, match="/collection/batch")
    return Fault(status=kind, match="/collection/batch")


@pytest.mark.parametrize("kind", [*RETRYABLE, "drop"])
def test_aep_request_failing_max_retries_times_succeeds_on_the_last_attempt(aep, kind):
    aep.inject(*[request_fault(kind) for _ in range(MAX_RETRIES)])
    done = Run(aep_connector(aep), one_record()).all()
    assert done.state == FinalState.SUCCEEDED
    assert len(inlet_requests(aep)) == 4
    assert done.counts["requests"] == 4 and done.counts["retries"] == 3
    assert aep.accepted_ids() == {"R1": 1}


@pytest.mark.parametrize("kind", [*RETRYABLE, "drop"])
def test_aep_request_failing_once_more_gives_up_after_exactly_max_retries_plus_one_attempts(aep, kind):
    aep.inject(*[request_fault(kind) for _ in range(MAX_RETRIES + 1)])
    conn = aep_connector(aep)
    run = Run(conn, one_record())
    start = run.submit()
    error = VendorThrottledError if kind == 429 else VendorUnavailableError
    with pytest.raises(error, match="gave up after 4 attempts") as caught:
        conn.poll(start.job, run.ctx())
    assert type(caught.value) is error
    assert len(inlet_requests(aep)) == 4
    assert aep.accepted_ids() == {}


# -- the shared session (urllib3) ---------------------------------------------------------------------------

@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_session_retries_a_get_answered_429_502_503_504_exactly_twice(aep, status):
    """http.HTTP_RETRIES = 2 (README "Retry budget"): a GET is retried on 429 and 502-504."""
    session = new_session({"timeout_seconds": 5})
    session.adapters["http://"].max_retries.backoff_factor = 0  # the count, not the wait, is tested
    aep.inject(*[Fault(status=status, match="/probe") for _ in range(2)])
    resp = request(session, "GET", aep.base_url + "/probe/a", what="probe")
    assert resp.status_code != status and len(aep.requests_to("/probe/a")) == 3
    aep.inject(*[Fault(status=status, match="/probe") for _ in range(3)])
    resp = request(session, "GET", aep.base_url + "/probe/b", what="probe")
    assert resp.status_code == status and len(aep.requests_to("/probe/b")) == 3


@pytest.mark.parametrize("status", [500])
def test_session_does_not_retry_a_get_answered_500(aep, status):
    session = new_session({"timeout_seconds": 5})
    aep.inject(Fault(status=status, match="/probe"))
    resp = request(session, "GET", aep.base_url + "/probe/c", what="probe")
    assert resp.status_code == status and len(aep.requests_to("/probe/c")) == 1


def test_session_never_replays_a_post(aep):
    session = new_session({"timeout_seconds": 5})
    aep.inject(Fault(status=503, match="/probe"))
    resp = request(session, "POST", aep.base_url + "/probe/d", what="probe", data=b"{}")
    assert resp.status_code == 503 and len(aep.requests_to("/probe/d")) == 1
