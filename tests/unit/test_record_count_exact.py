"""The records-read invariant (logic/record_count.py) at its edges: the exact sentence, a negative
count, an unfinished import and a missing tally. Expected texts written by hand."""

from __future__ import annotations

from vendor_import.logic.record_count import ERROR_TYPE, RecordTally, enforce
from vendor_import.model import FinalState, Progress


def done(message: str = "") -> Progress:
    return Progress(job={}, done=True, state=FinalState.SUCCEEDED, message=message)


def test_a_tally_that_adds_up_is_no_mismatch():
    assert RecordTally(10, 6, 2, 1, 1).mismatch() is None
    assert RecordTally(0, 0, 0, 0).mismatch() is None
    assert RecordTally(10, 6, 2, 1, 1).accounted == 10


def test_the_mismatch_sentence_gives_every_number_with_thousands_separators():
    assert RecordTally(12_345, 10_000, 2_000, 300, 4).mismatch() == (
        "record count mismatch: 12,345 records read from the file, but 10,000 accepted + 2,000 refused by the "
        "vendor + 300 refused locally + 4 unconfirmed = 12,304; the import cannot be trusted: check the "
        "vendor's data and the rejects file, then report this fault")


def test_a_negative_count_is_a_mismatch_even_when_the_sum_is_right():
    for tally in (RecordTally(3, 4, -1, 0), RecordTally(3, -1, 4, 0), RecordTally(3, 4, 0, -1),
                  RecordTally(3, 4, 0, 0, -1), RecordTally(-1, -1, 0, 0)):
        assert tally.mismatch() is not None, tally


def test_a_broken_tally_fails_the_finished_import_keeping_the_vendors_words():
    progress = enforce(done("AEP accepted 5 records"), RecordTally(6, 5, 0, 0))
    assert (progress.state, progress.error_type) == (FinalState.FAILED, ERROR_TYPE)
    assert ERROR_TYPE == "RecordCountMismatch"
    assert progress.message == (
        "record count mismatch: 6 records read from the file, but 5 accepted + 0 refused by the vendor + 0 "
        "refused locally + 0 unconfirmed = 5; the import cannot be trusted: check the vendor's data and the "
        "rejects file, then report this fault (the connector said: AEP accepted 5 records)")


def test_without_a_vendor_message_the_sentence_alone():
    progress = enforce(done(), RecordTally(1, 0, 0, 0))
    assert progress.message.startswith("record count mismatch: 1 records read")
    assert progress.message.endswith("then report this fault")


def test_an_unfinished_import_or_no_tally_is_left_alone():
    running = Progress(job={}, done=False, message="sending")
    assert enforce(running, RecordTally(6, 5, 0, 0)) is running
    assert (running.state, running.error_type, running.message) == (None, None, "sending")
    finished = done("ok")
    assert enforce(finished, None) is finished
    assert (finished.state, finished.error_type, finished.message) == (FinalState.SUCCEEDED, None, "ok")
    fine = done("ok")
    assert enforce(fine, RecordTally(2, 1, 1, 0)) is fine
    assert (fine.state, fine.message) == (FinalState.SUCCEEDED, "ok")
