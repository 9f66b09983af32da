"""HOPEX answers the documents leave open (seed 002, VENDORS.md section 3), each switched on in the
simulator and met by the connector: the HTTP code of status and rejects answers (the V2 page shows
202, "do not rely on HTTP 200 vs 202") and the shape of a failed job (only reason DONE is documented;
"treat any other job_status or reason as failure")."""

from __future__ import annotations

import pytest
from vendor_import.model import FinalState

from local.simulators.hopex import FAILURE_SHAPES, HopexSimulator

from .test_hopex_contract import context, make_connector, run


@pytest.fixture(scope="module")
def shared_simulator():
    with HopexSimulator() as simulator:
        yield simulator


@pytest.fixture
def sim(shared_simulator):
    shared_simulator.reset()
    return shared_simulator


@pytest.mark.parametrize("code", [202, 200])
def test_status_and_rejects_answered_with_either_code(sim, code):
    sim.status_code = code
    final = run(make_connector(sim), context("with-rejects.mgl"))[-1]
    assert final.state == FinalState.SUCCEEDED_WITH_REJECTS and final.counts["rejected"] == 2
    assert [r.record for r in final.rejects] == ["1", "2"]
    clean = run(make_connector(sim), context("clean.mgl"))[-1]
    assert clean.state == FinalState.SUCCEEDED


@pytest.mark.parametrize("shape", FAILURE_SHAPES)
def test_every_plausible_failed_job_shape_ends_failed(sim, shape):
    sim.failure = shape
    final = run(make_connector(sim), context("fails.mgl"))[-1]
    assert final.done and final.state == FinalState.FAILED, final.message
    assert sim.requests_to("/rejects") == []
    if shape != "bare":  # the only shapes that carry the vendor's message
        assert "Import aborted at line 2" in final.message
