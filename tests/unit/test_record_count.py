"""Issue 13 part 1: the records-read invariant, in code at the end of every record import
(AEP, Cirrus): records read = accepted + refused by the vendor + refused locally + UNCONFIRMED.
A count broken on purpose must end the import FAILED with RecordCountMismatch, never SUCCEEDED."""

from __future__ import annotations

import pytest
from vendor_import.connectors import load_settings
from vendor_import.connectors.aep import AepConnector
from vendor_import.connectors.cirrus import CirrusConnector
from vendor_import.logic.record_count import RecordTally, enforce
from vendor_import.logic.vendor_step import VendorStep
from vendor_import.model import FinalState, Progress

from local.simulators.aep import AepSimulator

KEY = "inbox/aep/products.ndjson"
# 4 records: one refused by the inlet (INVALID), one refused locally (not an object)
DATA = b'{"id": "P1"}\n{"id": "P2", "name": "INVALID"}\n[1, 2]\n{"id": "P4"}\n'


@pytest.fixture(scope="module")
def sim():
    with AepSimulator() as simulator:
        yield simulator


class LosesOneRefusal(AepConnector):
    """The AEP connector with its accounting broken on purpose: one refused record is not counted."""

    def _commit(self, job, completed, ctx):
        super()._commit(job, completed, ctx)
        if job["counts"]["rejected"] and not job.get("broken"):
            job["counts"]["rejected"] -= 1
            job["broken"] = True


def run_import(account, sim, connector_class):
    settings = load_settings("aep", sim.settings())
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=DATA)
    step = VendorStep(vendor="aep", settings_loader=lambda: settings, s3_client=account.s3, store=account.store,
                      jobs=account.jobs, connector_cache={("aep", "default", id(settings)): connector_class(settings)})
    inp = {"bucket": account.bucket, "key": KEY}
    payload = step.run({"action": "submit", "input": inp, "execution_name": "job-rc"})
    while not payload["done"]:
        payload = step.run({"action": "poll", "input": {**inp, "job": payload}, "execution_name": "job-rc"})
    return payload


def test_a_broken_count_ends_the_import_failed_with_the_numbers(account, sim):
    payload = run_import(account, sim, LosesOneRefusal)
    assert payload["state"] == "FAILED"
    assert payload["error_type"] == "RecordCountMismatch"
    assert payload["message"].startswith(
        "record count mismatch: 4 records read from the file, but 2 accepted + 0 refused by the vendor + 1 "
        "refused locally + 0 unconfirmed = 3; ")
    record = account.finalizer().from_state({"input": {"bucket": account.bucket, "key": KEY, "job": payload},
                                             "execution_name": "job-rc"})
    assert record["state"] == "FAILED"
    assert record["error"] == {"type": "RecordCountMismatch", "message": payload["message"]}
    (message,) = account.messages()
    assert message["attributes"]["state"] == "FAILED"


def test_the_same_import_counted_right_passes_the_check(account, sim):
    payload = run_import(account, sim, AepConnector)
    assert payload["state"] == "SUCCEEDED_WITH_REJECTS"
    assert payload["error_type"] is None
    assert (payload["counts"]["records"], payload["counts"]["accepted"], payload["counts"]["rejected"]) == (4, 2, 2)


def test_tally_sentence_and_enforce():
    tally = RecordTally(read=10, accepted=6, refused_by_vendor=2, refused_locally=1, unconfirmed=0)
    assert tally.mismatch() == (
        "record count mismatch: 10 records read from the file, but 6 accepted + 2 refused by the vendor + 1 "
        "refused locally + 0 unconfirmed = 9; the import cannot be trusted: check the vendor's data and the "
        "rejects file, then report this fault")
    done = Progress(job={}, done=True, state=FinalState.SUCCEEDED, message="all sent")
    enforce(done, tally)
    assert (done.state, done.error_type) == (FinalState.FAILED, "RecordCountMismatch")
    assert done.message.endswith("(the connector said: all sent)")
    fine = Progress(job={}, done=True, state=FinalState.SUCCEEDED, message="all sent")
    enforce(fine, RecordTally(read=9, accepted=6, refused_by_vendor=2, refused_locally=1))
    assert (fine.state, fine.error_type, fine.message) == (FinalState.SUCCEEDED, None, "all sent")
    # a negative figure never balances a sum
    assert RecordTally(read=2, accepted=3, refused_by_vendor=-1, refused_locally=0).mismatch() is not None


def test_cirrus_tally_counts_unconfirmed_apart():
    job = {"next_record": 8, "counts": {"records": 7, "sent": 7, "accepted": 4, "rejected": 3, "batches": 2,
                                        "unconfirmed": 2}}
    assert CirrusConnector.record_tally(job) == RecordTally(read=7, accepted=4, refused_by_vendor=1,
                                                            refused_locally=0, unconfirmed=2)
    job["counts"]["accepted"] = 5  # one record counted twice
    assert CirrusConnector.record_tally(job).mismatch().startswith(
        "record count mismatch: 7 records read from the file, but 5 accepted + 1 refused by the vendor")
