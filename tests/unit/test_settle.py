"""Settling a record import that failed for good part-way (``Connector.settle``): from the saved
cursor, every record no step reported goes to the rejects (lost answers UNCONFIRMED, the rest
NOT_SENT), the batches completed ahead of the cursor are skipped, nothing is sent, and the
records read add up. Offsets and expected rows are written from the files below by hand."""

from __future__ import annotations

import re

from vendor_import.connectors import build_connector, load_settings
from vendor_import.connectors.base import StepContext
from vendor_import.logic.record_count import RecordTally
from vendor_import.source import BytesSource

REASON = "not sent: the import stopped before this record (VendorUnavailableError: down)"


class Staged:
    """What the connector staged: rejects parts by part id (rows, raw bytes) and checkpoints."""

    def __init__(self):
        self.parts: dict[str, tuple[list, bytes]] = {}
        self.checkpoints: list[dict] = []

    def context(self, data: bytes, name: str) -> StepContext:
        source = BytesSource(data, name=name)
        return StepContext(source=source, checkpoint=lambda job: self.checkpoints.append(job),
                           emit_rejects=lambda part, rows, raw=None, fmt=None: self.parts.__setitem__(
                               part, (list(rows), raw or b"")))

    def rows(self) -> list[tuple[str, str]]:
        return [(r.record, r.code) for part in sorted(self.parts) for r in self.parts[part][0]]

    def raw(self) -> bytes:
        return b"".join(self.parts[part][1] for part in sorted(self.parts))


def no_requests(*args, **kwargs):
    raise AssertionError("settling sends nothing")


# -- AEP ------------------------------------------------------------------------------------------------
# ten NDJSON lines of 13 bytes ({"id": "Rn"}\n) but the tenth (14): record n starts at 13 (n - 1);
# record 8 is an array, which the local checks refuse
AEP_LINES = [b'{"id": "R%d"}\n' % n for n in range(1, 11)]
AEP_LINES[7] = b'[1, 2, 3, 4]\n'
AEP_DATA = b"".join(AEP_LINES)


def aep_job() -> dict:
    # records 1-2 committed (cursor at record 3), 5-6 completed ahead of the failed batch 3-4
    return {"phase": "send", "format": "ndjson", "delimiter": ",", "offset": 26, "number": 2, "line": 3,
            "done": [[52, 78, 6, 7]], "steps": 2, "started_ms": 0,
            "counts": {"records": 4, "sent": 4, "accepted": 4, "rejected": 0, "requests": 4, "retries": 0}}


def test_aep_lists_the_records_after_the_cursor_not_completed_ahead_and_they_add_up():
    conn = build_connector("aep", load_settings("aep", {"vendor": "aep", "base_url": "https://dcs.adobedc.net",
                                                        "inlet_id": "inlet1", "flow_id": "flow1"}))
    conn.session.post = conn.session.request = no_requests
    staged = Staged()
    progress = conn.settle(aep_job(), staged.context(AEP_DATA, "p.ndjson"), REASON)
    assert progress.done is True
    assert staged.rows() == [("record 3 (line 3)", "NOT_SENT"), ("record 4 (line 4)", "NOT_SENT"),
                             ("record 7 (line 7)", "NOT_SENT"), ("record 8 (line 8)", "not_object"),
                             ("record 9 (line 9)", "NOT_SENT"), ("record 10 (line 10)", "NOT_SENT")]
    assert staged.raw() == b"".join(AEP_LINES[n - 1] for n in (3, 4, 7, 8, 9, 10))
    assert all(r.reason == REASON for part in staged.parts.values() for r in part[0] if r.code == "NOT_SENT")
    job = progress.job
    assert job["counts"] == {"records": 5, "sent": 4, "accepted": 4, "rejected": 1, "requests": 4, "retries": 0,
                             "not_sent": 5}
    assert progress.counts == job["counts"] and staged.checkpoints[-1] == job
    assert conn.record_tally(job) == RecordTally(read=10, accepted=4, refused_by_vendor=0, refused_locally=1,
                                                 not_sent=5)
    assert conn.record_tally(job).mismatch() is None
    assert progress.message == ("5 records not sent (NOT_SENT in the rejects file: upload it again once the "
                                "cause is fixed)")


def test_aep_settles_again_to_the_same_parts():
    conn = build_connector("aep", load_settings("aep", {"vendor": "aep", "base_url": "https://dcs.adobedc.net",
                                                        "inlet_id": "inlet1", "flow_id": "flow1"}))
    first, second = Staged(), Staged()
    conn.settle(aep_job(), first.context(AEP_DATA, "p.ndjson"), REASON)
    conn.settle(aep_job(), second.context(AEP_DATA, "p.ndjson"), REASON)  # a retried settle: same part ids
    assert sorted(first.parts) == sorted(second.parts) and first.raw() == second.raw()


def test_aep_verifying_phase_has_nothing_left_to_settle():
    conn = build_connector("aep", load_settings("aep", {"vendor": "aep", "base_url": "https://dcs.adobedc.net",
                                                        "inlet_id": "inlet1", "flow_id": "flow1"}))
    staged = Staged()
    job = {**aep_job(), "phase": "verify"}
    progress = conn.settle(job, staged.context(AEP_DATA, "p.ndjson"), REASON)
    assert staged.parts == {} and progress.message == "" and "not_sent" not in progress.job["counts"]


# -- Cirrus Shield --------------------------------------------------------------------------------------

def accounts(count: int) -> bytes:
    body = "".join(f"<Account><Name>A{n:02d}</Name></Account>\n" for n in range(1, count + 1))
    return f"<Data>\n{body}</Data>\n".encode()


CIRRUS_DATA = accounts(20)


def at(n: int) -> int:
    """Offset where account n starts (each record is 36 bytes with its newline, after '<Data>\\n')."""
    return 7 + 36 * (n - 1)


def test_cirrus_reports_the_batch_in_flight_unconfirmed_and_the_rest_not_sent():
    assert CIRRUS_DATA[at(6):at(7)] == b"<Account><Name>A06</Name></Account>\n"  # the layout used below
    conn = build_connector("cirrus", load_settings("cirrus", {
        "vendor": "cirrus", "base_url": "https://cirrus.example.com", "username": "u", "password": "p"}))
    conn._post_batch = no_requests
    # 1-5 committed; 6-10 posted, answer lost; 11-15 answered ahead; 16-20 never sent
    job = {"object": "Account", "action": "upsert", "matching_field": "Name", "use_external_id": False,
           "record_tag": "Account", "offset": at(6), "next_record": 6,
           "inflight": [{"first": 6, "count": 5, "start": at(6), "end": at(11) - 1}],
           "done": [[at(11), at(16) - 1, 11, 15]],
           "counts": {"records": 10, "sent": 10, "accepted": 10, "rejected": 0, "batches": 2}}
    staged = Staged()
    progress = conn.settle(job, staged.context(CIRRUS_DATA, "a.xml"), REASON)
    assert progress.done is True
    assert staged.rows() == ([(f"{n} Name=A{n:02d}", "UNCONFIRMED") for n in range(6, 11)]
                             + [(f"{n} Name=A{n:02d}", "NOT_SENT") for n in range(16, 21)])
    counts = progress.job["counts"]
    assert (counts["accepted"], counts["unconfirmed"], counts["not_sent"], counts["rejected"]) == (10, 5, 5, 5)
    assert conn.record_tally(progress.job) == RecordTally(read=20, accepted=10, refused_by_vendor=0,
                                                          refused_locally=0, unconfirmed=5, not_sent=5)
    assert progress.job["inflight"] == [] and progress.job["done"] == []
    assert staged.checkpoints[-1] == progress.job
    assert progress.message == ("5 Account records not sent (NOT_SENT in the rejects file: upload it again "
                                "once the cause is fixed)")
    # the re-uploadable XML holds the same records, in file order
    assert re.findall(r"<Name>(A\d+)</Name>", staged.raw().decode()) == [
        f"A{n:02d}" for n in (*range(6, 11), *range(16, 21))]


def test_the_rejects_csv_rows_carry_the_reason():
    conn = build_connector("cirrus", load_settings("cirrus", {
        "vendor": "cirrus", "base_url": "https://cirrus.example.com", "username": "u", "password": "p"}))
    job = {"object": "Account", "action": "upsert", "matching_field": "Name", "use_external_id": False,
           "record_tag": "Account", "offset": at(19), "next_record": 19, "inflight": [], "done": [],
           "counts": {"records": 18, "sent": 18, "accepted": 18, "rejected": 0, "batches": 4}}
    staged = Staged()
    conn.settle(job, staged.context(CIRRUS_DATA, "a.xml"), REASON)
    (rows, _raw), = staged.parts.values()
    assert [(r.record, r.reason, r.code) for r in rows] == [("19 Name=A19", REASON, "NOT_SENT"),
                                                             ("20 Name=A20", REASON, "NOT_SENT")]
