"""Reliability and security promises, proven through the whole local pipeline: the real template in
moto, the real handlers in-process, the five vendor simulators over HTTP.

One pipeline for the package. Only one LocalPipeline can run in a process (same stack names in one
moto): the e2e package's ``pipe`` is package-scoped too, and pytest tears a package's fixtures down
before it runs the next package, so by the time this one starts, that one is stopped (the fixture
below fails loudly if it is not).

Every simulator runs with distinctive credentials (``SECRETS``) so the secrets test can look for
them everywhere. Tests keep apart by using their own S3 keys and record ids; nothing is reset
between tests. Figures (imports, faults, retries...) are collected in ``FIGURES`` and printed in
pytest's terminal summary, with or without ``-s``.
"""

from __future__ import annotations

import pytest

from local.simulators import aep as aep_sim_mod
from local.simulators import campaign as campaign_sim_mod
from local.simulators import cirrus as cirrus_sim_mod
from local.simulators import hopex as hopex_sim_mod
from local.simulators import simplemente as simplemente_sim_mod

from .helpers import FIGURES, SECRETS, VENDORS, default_settings


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for section, lines in FIGURES.items():
        terminalreporter.write_line(f"{section}:")
        for line in lines:
            terminalreporter.write_line(f"  {line}")


# -- simulators and the pipeline ---------------------------------------------------------------------------

@pytest.fixture(scope="package")
def sims():
    """The five simulators, with the distinctive credentials above (module constants patched for
    the package's lifetime: the simulators read them when they check a request)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(hopex_sim_mod, "PASSWORD", SECRETS["hopex_password"])
    mp.setattr(hopex_sim_mod, "CLIENT_SECRET", SECRETS["hopex_client_secret"])
    mp.setattr(campaign_sim_mod, "CLIENT_SECRET", SECRETS["campaign_client_secret"])
    mp.setattr(simplemente_sim_mod, "SECRET", SECRETS["simplemente_secret"])
    mp.setattr(cirrus_sim_mod, "PASSWORD", SECRETS["cirrus_password"])
    aep = aep_sim_mod.AepSimulator(authenticated=True, seed=11)
    aep.CLIENT_SECRET = SECRETS["aep_client_secret"]
    simulators = {
        "hopex": hopex_sim_mod.HopexSimulator(running_polls=1, seed=12),
        "campaign": campaign_sim_mod.CampaignSimulator(polls_before_done=1, seed=13),
        "aep": aep,
        "simplemente": simplemente_sim_mod.SimplementeSimulator(seed=14),
        "cirrus": cirrus_sim_mod.CirrusSimulator(users={cirrus_sim_mod.USERNAME: SECRETS["cirrus_password"]},
                                                 seed=15),
    }
    try:
        for sim in simulators.values():
            sim.start()
        yield simulators
    finally:
        for sim in simulators.values():
            sim.stop()
        mp.undo()


@pytest.fixture(scope="package")
def pipe(sims, tmp_path_factory):
    from local import runner
    from local.runner import LocalPipeline

    if runner._running is not None:
        pytest.fail("another LocalPipeline is still running in this process: the e2e package's pipeline "
                    "should have been stopped when its package ended")
    settings = {vendor: default_settings(sims, vendor) for vendor in VENDORS}
    with LocalPipeline(settings=settings, simulators=sims, out_dir=tmp_path_factory.mktemp("reliability-out"),
                       execution_timeout=120) as pipeline:
        yield pipeline


@pytest.fixture
def settings_restored(pipe, sims):
    """Put every vendor's default settings back after a test that changes them."""
    yield
    for vendor in VENDORS:
        doc = default_settings(sims, vendor)
        if pipe.settings.get(vendor) != doc:
            pipe.set_settings(vendor, doc)
