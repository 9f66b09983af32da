"""Imports to one target share its rates (logic/guard.SharedRate, issue 19): two Cirrus imports
sending at once, each in its own thread as two Lambdas would, against the Cirrus simulator, with
``max_calls_per_second`` 20 for the target. The local runner runs one Lambda at a time, so this
concurrency is shown here, on the connectors' own send path, with the budget in a moto table."""

from __future__ import annotations

import threading

import pytest
from vendor_import.logic.guard import share_rates
from vendor_import.model import FinalState

from local.simulators.cirrus import CirrusSimulator

from ..unit.test_guard import table  # noqa: F401 - the jobs table in moto (a fixture, by getfixturevalue)
from .test_cirrus_contract import accounts, make_connector, make_ctx, run_import

RATE = 20  # max_calls_per_second of the target


@pytest.fixture
def sim():
    simulator = CirrusSimulator().start()
    yield simulator
    simulator.stop()


def most_calls_in_one_second(times: list[float]) -> int:
    """The most calls in any window of one second (whatever second the vendor counts in)."""
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))


def two_imports_at_once(sim, jobs_table, *, shared: bool) -> int:
    """Two imports of 40 records, one call per record, started together; the most DataAction calls
    the simulator received in one second."""
    results = {}

    def run(prefix: str) -> None:
        conn = make_connector(sim, batch_size=1, max_calls_per_second=RATE)
        if shared:
            assert share_rates("cirrus", "default", conn, conn.settings, jobs_table)
        results[prefix] = run_import(conn, make_ctx(accounts(40, prefix=prefix)))

    threads = [threading.Thread(target=run, args=(p,)) for p in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[p].state for p in ("A", "B")] == [FinalState.SUCCEEDED, FinalState.SUCCEEDED]
    names = sim.received_values("Name")
    assert max(i for i, n in enumerate(names) if n.startswith("A")) > names.index(next(n for n in names
                                                                                      if n.startswith("B")))
    assert len(sim.data_action_times) == 80
    return most_calls_in_one_second(sim.data_action_times)


def test_two_imports_of_one_target_stay_under_its_rate_together(sim, request):
    assert two_imports_at_once(sim, request.getfixturevalue("table"), shared=True) <= RATE


def test_without_the_shared_budget_they_would_pass_it(sim, request):
    """The same run, each import with its own bucket only: the simulator sees more than the rate
    in some second (what the shared budget prevents)."""
    assert two_imports_at_once(sim, request.getfixturevalue("table"), shared=False) > RATE
