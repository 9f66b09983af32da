"""The AEP and Cirrus simulators shared by the record-import e2e modules (quirks corpus, rejects
round trip): module-scoped servers, the pipeline pointed at them, and a reset of what they received."""

from __future__ import annotations

import pytest

from local.simulators.aep import AepSimulator
from local.simulators.cirrus import CirrusSimulator


@pytest.fixture(scope="module")
def aep_sim():
    with AepSimulator() as sim:
        yield sim


@pytest.fixture(scope="module")
def cirrus_sim():
    with CirrusSimulator() as sim:
        yield sim


def clear(sims: dict) -> None:
    """Forget what the simulators received (each test counts its own records)."""
    aep = sims["aep"]
    with aep._lock, aep._inlet_lock:
        aep.requests.clear()
        aep.accepted.clear()
        aep.refused.clear()
    sims["cirrus"].received.clear()


@pytest.fixture
def record_sims(pipe, aep_sim, cirrus_sim):
    """Both simulators, the pipeline's aep and cirrus settings pointing at them, nothing received."""
    pipe.set_settings("aep", aep_sim.settings())
    pipe.set_settings("cirrus", cirrus_sim.settings())
    sims = {"aep": aep_sim, "cirrus": cirrus_sim}
    clear(sims)
    yield sims
    pipe.set_settings("aep", aep_sim.settings())
