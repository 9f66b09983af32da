"""Issue 13, part 3: a vendor that answers 503 to everything gets a bounded number of requests
per import (README "Retry budget"), and the status record counts every request and every Lambda
invocation that really happened, retried steps included."""

from __future__ import annotations

import importlib

import pytest

from local.simulators import SIMULATORS, simulator_class
from local.simulators.base import Fault
from local.template_deploy import ROOT

pytestmark = pytest.mark.e2e


def first_success_case(vendor: str):
    module = importlib.import_module(SIMULATORS[vendor].split(":")[0])
    return next(c for c in module.DEMO_CASES if c.expect == "SUCCEEDED")


# Requests the vendor receives for one import when it answers 503 to everything, written from
# the call each vendor's first step makes (README "Retry budget"): the step runs twice (the
# state machine retries VendorUnavailableError once) and each run sends
# - a GET/HEAD: 1 + 2 urllib3 retries = 3 requests,
# - a POST/PUT that may have reached the vendor: 1 request (never replayed by urllib3),
# - an AEP inlet batch: 1 + max_retries (5, the inlet's "retry at least 3 times") = 6 requests.
EXPECTED_REQUESTS = {
    "hopex": 2 * 1,  # POST of the UAS token (client credentials)
    "campaign": 2 * 1,  # POST of the IMS token
    "aep": 2 * 6,  # submit sends nothing; the first poll POSTs the first batch
    "simplemente": 2 * 1,  # PUT app/mediations/standard/{flux}
    "cirrus": 2 * 3,  # GET /RestApi/AuthToken (the sign-in is a GET with query parameters)
}


@pytest.mark.parametrize("vendor", sorted(EXPECTED_REQUESTS))
def test_a_vendor_down_gets_the_documented_number_of_requests_and_the_status_counts_them(
        pipe, hopex_sim, no_wait, vendor):
    sim = hopex_sim if vendor == "hopex" else simulator_class(vendor)().start()
    try:
        settings = sim.settings()
        if vendor == "aep":
            settings = {**settings, "retry_base_seconds": 0.01, "retry_max_seconds": 0.02}
        pipe.set_settings(vendor, settings)
        sim.requests.clear()
        sim.inject(*[Fault(status=503) for _ in range(1_000)])
        case = first_success_case(vendor)
        folder, name = case.key.rsplit("/", 1)
        result = pipe.import_file(ROOT / case.file, f"{folder}/down-{name}", case.metadata or None)
        record = result.record
        assert record["state"] == "FAILED", record
        assert record["error"]["type"] == "VendorUnavailableError", record["error"]
        assert len(sim.requests) == EXPECTED_REQUESTS[vendor], [(r.method, r.path) for r in sim.requests]
        assert record["cost"]["vendor_requests"] == EXPECTED_REQUESTS[vendor]
        if vendor == "aep":  # the connector's own counts say the same (they said 0 before)
            assert record["counts"]["requests"] == 12 and record["counts"]["retries"] == 2 * 5 + 1
        # the failing step ran twice (AEP: after a submit that sent nothing, then its unsent records are settled)
        steps = 2 if vendor != "aep" else 3 + 1
        assert record["cost"]["lambda_invocations"] == steps + 1  # + Finalize
        # retried requests (a GET's 2 urllib3 retries, AEP's 5) in both runs, + the state machine's retry
        per_run_retries = {"cirrus": 2, "aep": 5}.get(vendor, 0)
        assert record["cost"]["retries"] == 2 * per_run_retries + 1
    finally:
        sim._faults.clear()
        if vendor != "hopex":
            sim.stop()
        else:
            pipe.set_settings("hopex", hopex_sim.settings())
