"""Cirrus Shield imports through the whole local pipeline (issue 3): S3 upload -> queue -> submit
function -> state machine (the real ASL) -> cirrus function <-> Cirrus Shield simulator over HTTP
-> finalize -> DynamoDB, S3, SNS.

The pipeline is the e2e package's one deployment (tests/e2e/conftest.py ``pipe``): two local
pipelines cannot live in one process at once (same stack names in the same moto), so every
vendor module adds its own settings to the shared one. Each test uses its own S3 keys; the
simulator's log and faults are cleared before each test.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from lxml import etree

from local.simulators.base import Fault
from local.simulators.cirrus import INVALID_LOOKUP, PASSWORD, CirrusSimulator

pytestmark = pytest.mark.e2e

VENDOR = "cirrus"  # for the vendor_sim fixture (conftest.py)

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "events" / "files" / "cirrus"
REJECTED_IN_SAMPLE = {3: "Acme Marseille", 8: "Acme Nice", 11: "Acme Grenoble"}


# -- fixtures -------------------------------------------------------------------------------------------

@pytest.fixture
def cirrus(pipe, vendor_sim, request):
    cirrus_sim = vendor_sim
    """A clean simulator log and the simulator's settings before each test."""
    def reset():
        with cirrus_sim._lock:
            cirrus_sim.requests.clear()
            cirrus_sim._faults.clear()
            cirrus_sim.end_outage()
            cirrus_sim.received.clear()
            cirrus_sim.store.clear()
            cirrus_sim.data_actions = 0

    reset()
    yield Cirrus(pipe, cirrus_sim, request.node.name)
    reset()


class Cirrus:
    def __init__(self, pipe, sim: CirrusSimulator, test_name: str):
        self.pipe = pipe
        self.sim = sim
        self.name = re.sub(r"[^A-Za-z0-9_-]+", "-", test_name)[:60]
        self.function = pipe.deployment.functions["CirrusFunction"]
        self._first_invocation = len(pipe.lambdas.invocations)

    def key(self, suffix: str = ".xml", segments: str = "") -> str:
        return f"inbox/cirrus/{segments}{self.name}{suffix}"

    def data_actions(self) -> list:
        return self.sim.requests_to("/RestApi/DataAction/", "POST")

    def polls(self) -> list[dict]:
        return [i for i in self.pipe.lambdas.invocations[self._first_invocation:]
                if i["function"] == self.function and i["action"] == "poll"]

    def one_outcome(self, result, *, state: str) -> tuple[dict, dict]:
        """The final state, and exactly one status record, status JSON and SNS message for the
        job, all saying the same thing."""
        assert result.state == state, result.record
        record = result.record
        assert record["job_id"] == result.job_id and record["vendor"] == "cirrus"
        assert record["source"]["key"] == result.key and record.get("notified_at")
        document = json.loads(self.pipe.s3.get_object(
            Bucket=self.pipe.bucket, Key=f"status/cirrus/{result.job_id}.json")["Body"].read())
        messages = [m for m in self.pipe.drain_messages() if m["body"]["job_id"] == result.job_id]
        assert len(messages) == 1, messages
        (message,) = messages
        assert document == message["body"] == {k: v for k, v in record.items() if k != "notified_at"}
        assert message["subject"] == f"[cirrus] {state}: {result.key.rsplit('/', 1)[-1]}"
        assert message["attributes"] == {"vendor": "cirrus", "target": "default", "state": state, "dry_run": "false",
                                         **({"error_type": record["error"]["type"]} if record["error"] else {})}
        assert PASSWORD not in json.dumps(message) and not any(t in json.dumps(message) for t in self.sim.tokens)
        return record, message


def rejects(result) -> tuple[list[list[str]], etree._Element]:
    """(CSV rows without the header, parsed rejects XML) of an import."""
    by_suffix = {p.name.rsplit(".", 1)[-1]: p for p in result.rejects_paths}
    assert set(by_suffix) == {"csv", "xml"}, result.rejects_paths
    rows = list(csv.reader(io.StringIO(by_suffix["csv"].read_text())))
    assert rows[0] == ["record", "code", "reason"]
    return rows[1:], etree.fromstring(by_suffix["xml"].read_bytes())


def accounts_xml(count: int, *, prefix: str = "Acct") -> bytes:
    records = "".join(f"<Account><Name>{prefix} {n:05d}</Name><Phone>+33 1 00 {n:05d}</Phone>"
                      f"<LastAuditDate>2024-01-02 03:04:05+01</LastAuditDate></Account>\n"
                      for n in range(1, count + 1))
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<Data>\n{records}</Data>\n'.encode()


def field_text(element, name: str) -> str:
    child = element.find(name)
    return (child.text or "").strip() if child is not None else ""


# -- outcomes --------------------------------------------------------------------------------------------

def test_clean_file_succeeds_with_every_record_accepted(cirrus):
    key = cirrus.key()
    result = cirrus.pipe.import_file(FILES / "accounts-clean.xml", key)
    record, _ = cirrus.one_outcome(result, state="SUCCEEDED")
    assert record["counts"] == {"records": 12, "sent": 12, "accepted": 12, "rejected": 0, "batches": 3}
    assert record["message"] == ("Cirrus Shield accepted all 12 Account records (upsert on Account "
                                 "matching Name, useExternalId=true).")
    assert record["rejects"] == {"csv_uri": None, "raw_uri": None, "rows": 0}
    assert record["error"] is None and result.rejects_paths == []
    assert len(cirrus.data_actions()) == 3  # batch_size 5
    assert len(cirrus.sim.received) == 12
    # the form encoding keeps a datetime's +
    assert cirrus.sim.received_values("LastAuditDate")[0] == "2017-06-12 15:40:00+02"
    assert json.loads(result.status_path.read_text()) == record


def test_some_records_refused_end_succeeded_with_rejects(cirrus):
    result = cirrus.pipe.import_file(FILES / "accounts-with-rejects.xml", cirrus.key())
    record, message = cirrus.one_outcome(result, state="SUCCEEDED_WITH_REJECTS")
    assert record["counts"] == {"records": 12, "sent": 12, "accepted": 9, "rejected": 3, "batches": 3}
    assert "accepted 9 of 12 Account records and refused 3" in record["message"]
    assert record["rejects"]["rows"] == 3
    assert record["rejects"]["raw_uri"].endswith(f"/{result.job_id}/{cirrus.name}.rejects.xml")
    assert record["rejects"]["csv_uri"].endswith(f"/{result.job_id}/{cirrus.name}.xml.rejects.csv")
    rows, xml = rejects(result)
    assert rows == [[f"{n} Name={name}", "REFUSED", INVALID_LOOKUP] for n, name in REJECTED_IN_SAMPLE.items()]
    # the rejects XML holds exactly the refused records, as uploaded, each with its ErrorMessage
    assert xml.tag == "Data" and [r.tag for r in xml] == ["Account"] * 3
    assert [field_text(r, "Name") for r in xml] == list(REJECTED_IN_SAMPLE.values())
    assert [field_text(r, "ErrorMessage") for r in xml] == [INVALID_LOOKUP] * 3
    assert field_text(xml[0], "LastAuditDate") == "2017-06-12 15:40:02+02"
    assert all(r.find("Success") is None for r in xml)


def test_every_record_refused_is_failed_with_the_rejects_file(cirrus):
    # options from S3 metadata, as a user would give them with aws s3 cp --metadata
    result = cirrus.pipe.import_file(FILES / "accounts-all-fail.xml", cirrus.key(),
                                     metadata={"action": "upsert", "matching_field": "Name"})
    record, _ = cirrus.one_outcome(result, state="FAILED")
    assert record["counts"] == {"records": 4, "sent": 4, "accepted": 0, "rejected": 4, "batches": 1}
    assert record["message"].startswith("Cirrus Shield refused all 4 Account records (first: record 1 "
                                        "Name=Acme Paris: ")
    assert "drop it back in the inbox" in record["message"]
    assert record["error"]["type"] == "VendorRefusedAll"
    assert rejects(result)[0][0][2] in record["error"]["message"]  # Cirrus's own ErrorMessage
    rows, xml = rejects(result)
    assert [r[0] for r in rows] == ["1 Name=Acme Paris", "2 Name=Acme Lyon", "3 Name=Acme Marseille",
                                    "4 Name=Acme Toulouse"]
    assert {r[2] for r in rows} == {INVALID_LOOKUP} and len(xml) == 4


def test_reupload_of_the_fixed_rejects_file_imports_only_those_records(cirrus):
    first = cirrus.pipe.import_file(FILES / "accounts-with-rejects.xml", cirrus.key())
    cirrus.one_outcome(first, state="SUCCEEDED_WITH_REJECTS")
    (raw,) = [p for p in first.rejects_paths if p.suffix == ".xml"]
    fixed = raw.read_bytes().replace(b"INVALID", b"VALID")
    with cirrus.sim._lock:
        cirrus.sim.received.clear()
        cirrus.sim.requests.clear()

    second = cirrus.pipe.import_file(fixed, cirrus.key(".rejects.xml"))
    record, _ = cirrus.one_outcome(second, state="SUCCEEDED")
    assert record["counts"] == {"records": 3, "sent": 3, "accepted": 3, "rejected": 0, "batches": 1}
    assert cirrus.sim.received_values("Name") == list(REJECTED_IN_SAMPLE.values())
    assert cirrus.sim.received_values("ParentAccount") == ["VALID Holding", "VALID-PARENT-007", "Unknown VALID"]
    # the rejects file's own fields never reach Cirrus Shield
    assert all("ErrorMessage" not in r["fields"] and "Success" not in r["fields"] for r in cirrus.sim.received)
    assert len(cirrus.data_actions()) == 1
    # the records refused the first time are now in the store, next to the 9 accepted then
    assert len(cirrus.sim.store["Account"]) == 12


# -- options -----------------------------------------------------------------------------------------------

def test_options_from_key_segments_reach_the_data_action_url(cirrus):
    key = cirrus.key(segments="object=Contact/action=insert/matching_field=Phone/use_external_id=false/")
    result = cirrus.pipe.import_file(FILES / "accounts-clean.xml", key)
    record, _ = cirrus.one_outcome(result, state="SUCCEEDED")
    assert "insert on Contact matching Phone, useExternalId=false" in record["message"]
    posts = cirrus.data_actions()
    assert len(posts) == 3
    for req in posts:
        assert unquote(req.path) == "/RestApi/DataAction/Contact"
        query = parse_qs(urlsplit(req.raw_path).query)
        assert query["action"] == ["insert"] and query["matchingFieldName"] == ["Phone"]
        assert query["useExternalId"] == ["false"] and query["authToken"][0] in cirrus.sim.tokens
    assert {r["object"] for r in cirrus.sim.received} == {"Contact"}


def test_options_from_s3_metadata_win_over_key_segments(cirrus):
    key = cirrus.key(segments="action=insert/")
    result = cirrus.pipe.import_file(FILES / "accounts-clean.xml", key,
                                     metadata={"action": "update", "matching-field": "Phone"})
    # update with nothing stored under those phones: Cirrus Shield refuses each record
    record, _ = cirrus.one_outcome(result, state="FAILED")
    queries = [parse_qs(urlsplit(r.raw_path).query) for r in cirrus.data_actions()]
    assert {(q["action"][0], q["matchingFieldName"][0], q["useExternalId"][0]) for q in queries} == {
        ("update", "Phone", "true")}
    rows, _ = rejects(result)
    assert rows[0] == ["1 Phone=+33 1 23 45 67 00", "REFUSED", "No Account record has Phone = +33 1 23 45 67 00"]


def test_options_default_to_the_settings_objects_entry(cirrus):
    cirrus.pipe.set_settings("cirrus", {**cirrus.sim.settings(),
                                        "objects": {"Account": {"action": "insert", "matching_field": "Phone",
                                                                "use_external_id": False}}})
    result = cirrus.pipe.import_file(FILES / "accounts-clean.xml", cirrus.key())
    cirrus.one_outcome(result, state="SUCCEEDED")
    query = parse_qs(urlsplit(cirrus.data_actions()[0].raw_path).query)
    assert (query["action"], query["matchingFieldName"], query["useExternalId"]) == (["insert"], ["Phone"],
                                                                                   ["false"])


# -- a file sent over several steps ---------------------------------------------------------------------------

def test_large_file_is_sent_over_several_poll_steps_each_record_once(cirrus):
    # a poll sends batches while more than max(safety_margin_seconds, timeout_seconds) of its
    # Lambda run is left: a margin of the whole run (900 s) leaves room for one batch per poll
    cirrus.pipe.set_settings("cirrus", {**cirrus.sim.settings(), "batch_size": 500,
                                        "safety_margin_seconds": 900})
    total = 3000
    result = cirrus.pipe.import_file(accounts_xml(total), cirrus.key())
    record, _ = cirrus.one_outcome(result, state="SUCCEEDED")
    assert record["counts"] == {"records": total, "sent": total, "accepted": total, "rejected": 0, "batches": 6}
    polls = cirrus.polls()
    assert len(polls) == 7 and not any(p["errored"] for p in polls)  # 6 sending polls, then the end
    assert record["polls"] == 7
    assert len(cirrus.data_actions()) == 6
    seen = Counter(cirrus.sim.received_values("Name"))
    assert len(seen) == total and set(seen.values()) == {1}
    assert set(cirrus.sim.received_values("LastAuditDate")) == {"2024-01-02 03:04:05+01"}


# -- input refused before any vendor call ----------------------------------------------------------------------

def test_a_file_that_is_not_xml_is_failed_without_a_vendor_call(cirrus):
    result = cirrus.pipe.import_file(b"Name;Phone\r\nAcme;+33 1 23 45 67 00\r\n", cirrus.key(".csv"))
    record, _ = cirrus.one_outcome(result, state="FAILED")
    assert record["error"]["type"] == "InputError"
    assert "the file is not XML: expected <Data> with one element per record" in record["message"]
    assert cirrus.sim.requests == []


XML_BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE Data [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Data><Account><Name>&lol9;</Name></Account></Data>
"""


def test_an_xml_bomb_is_failed_without_expanding_it_or_calling_the_vendor(cirrus):
    result = cirrus.pipe.import_file(XML_BOMB, cirrus.key())
    record, _ = cirrus.one_outcome(result, state="FAILED")
    assert record["error"]["type"] == "InputError"
    assert "the file has a <!DOCTYPE> declaration: DTDs and entity declarations are refused" in record["message"]
    assert cirrus.sim.requests == []
    assert len(json.dumps(record)) < 10_000  # nothing was expanded into the status


def test_wrong_password_fails_with_an_auth_error_before_any_record_is_sent(cirrus):
    wrong = "not-the-cirrus-password-e2e"
    cirrus.pipe.set_settings("cirrus", {**cirrus.sim.settings(), "password": wrong})
    result = cirrus.pipe.import_file(FILES / "accounts-clean.xml", cirrus.key())
    record, message = cirrus.one_outcome(result, state="FAILED")
    assert record["error"]["type"] == "VendorAuthError"
    assert "Cirrus Shield sign-in" in record["message"]
    assert cirrus.data_actions() == [] and len(cirrus.sim.requests_to("/RestApi/AuthToken")) == 1
    assert wrong not in json.dumps([record, message])


# -- a failure part-way through the file: nothing lost ----------------------------------------------------

def names_in(rejects_xml) -> list[str]:
    return [field_text(account, "Name") for account in rejects_xml]


def test_cirrus_down_part_way_leaves_every_unsent_record_in_the_rejects_file_to_upload_again(cirrus, no_wait):
    cirrus.sim.fail_from(3, Fault(status=503, match="/RestApi/DataAction/"))  # 3 batches of 5, then down
    result = cirrus.pipe.import_file(accounts_xml(30), cirrus.key())
    record, _ = cirrus.one_outcome(result, state="FAILED")
    assert record["error"]["type"] == "VendorUnavailableError"
    assert record["counts"] == {"records": 15, "sent": 15, "accepted": 15, "rejected": 0, "batches": 3,
                                "not_sent": 15}
    assert record["message"].endswith(
        "; 15 Account records not sent (NOT_SENT in the rejects file: upload it again once the cause is fixed)")
    rows, xml = rejects(result)
    assert [r[0] for r in rows] == [f"{n} Name=Acct {n:05d}" for n in range(16, 31)]
    assert {r[1] for r in rows} == {"NOT_SENT"}
    assert all(r[2].startswith("not sent: the import stopped before this record (VendorUnavailableError: ")
               for r in rows)
    assert names_in(xml) == [f"Acct {n:05d}" for n in range(16, 31)]
    assert sorted(cirrus.sim.store["Account"]) == [f"Acct {n:05d}" for n in range(1, 16)]

    # Cirrus is back: the rejects file (its ErrorMessage fields are never sent) sends exactly the rest
    cirrus.sim.end_outage()
    rejects_xml = next(p for p in result.rejects_paths if p.name.endswith(".xml")).read_bytes()
    again = cirrus.pipe.import_file(rejects_xml, cirrus.key(".rejects.xml"))
    assert cirrus.one_outcome(again, state="SUCCEEDED")[0]["counts"]["accepted"] == 15
    assert sorted(cirrus.sim.store["Account"]) == [f"Acct {n:05d}" for n in range(1, 31)]
    assert len(cirrus.sim.received) == 30  # each record sent once in all


def test_an_outage_that_pauses_cirrus_part_way_resumes_from_the_batches_already_sent(cirrus, no_wait):
    # 3 batches of 5 land, then Cirrus Shield answers 503 until 8 requests were refused: the poll that
    # sent those 3 batches fails into the circuit breaker (1 failure opens it), which pauses the target;
    # the probe after the cool-down finds Cirrus back and the import goes on after record 15: each
    # record sent once, none resent from the cursor the paused poll had started from
    cirrus.pipe.set_settings("cirrus", {**cirrus.sim.settings(), "breaker_failures": 1,
                                        "breaker_cooldown_seconds": 30})
    before = len(cirrus.pipe.drain_messages())
    cirrus.sim.fail_from(3, Fault(status=503, match="/RestApi/DataAction/"), refusals=8)
    try:
        result = cirrus.pipe.import_file(accounts_xml(30), cirrus.key())
        states = [m["attributes"].get("state") for m in cirrus.pipe.drain_messages()[before:]]
    finally:  # the PAUSED / RESUMED messages name no import: later tests read every message as an import's
        cirrus.pipe.messages[:] = [m for m in cirrus.pipe.drain_messages() if "job_id" in m["body"]]
    record, _ = cirrus.one_outcome(result, state="SUCCEEDED")
    assert record["counts"]["accepted"] == 30 and record["counts"]["sent"] == 30
    assert [s for s in states if s in ("PAUSED", "RESUMED")] == ["PAUSED", "RESUMED"]
    assert sorted(cirrus.sim.store["Account"]) == [f"Acct {n:05d}" for n in range(1, 31)]
    assert Counter(cirrus.sim.received_values("Name")) == Counter({f"Acct {n:05d}": 1 for n in range(1, 31)})


def test_an_outage_that_outlasts_the_pause_deadline_lists_every_record_not_sent(cirrus, no_wait):
    # 3 batches of 5 land, then Cirrus Shield answers 503 for good: the poll that sent them fails into
    # the breaker (1 failure opens it), the probes after each cool-down fail too, and once the import
    # has waited pause_deadline_seconds paused it ends FAILED (VendorOutage) at a poll, without the
    # Catch: the 15 records after its cursor must still be in the rejects file, NOT_SENT
    cirrus.pipe.set_settings("cirrus", {**cirrus.sim.settings(), "breaker_failures": 1,
                                        "breaker_cooldown_seconds": 30, "pause_deadline_seconds": 60})
    cirrus.sim.fail_from(3, Fault(status=503, match="/RestApi/DataAction/"))
    try:
        result = cirrus.pipe.import_file(accounts_xml(30), cirrus.key())
    finally:  # the PAUSED messages name no import: later tests read every message as an import's
        cirrus.pipe.messages[:] = [m for m in cirrus.pipe.drain_messages() if "job_id" in m["body"]]
    record, _ = cirrus.one_outcome(result, state="FAILED")
    assert record["error"]["type"] == "VendorOutage"
    counts = record["counts"]
    assert (counts["records"], counts["accepted"], counts["not_sent"]) == (15, 15, 15)
    assert record["message"].endswith(
        "(pause_deadline_seconds = 60); 15 Account records not sent (NOT_SENT in the rejects file: upload it "
        "again once the cause is fixed)")
    rows, xml = rejects(result)
    assert [(r[0], r[1]) for r in rows] == [(f"{n} Name=Acct {n:05d}", "NOT_SENT") for n in range(16, 31)]
    assert all(r[2].startswith("not sent: the import stopped before this record (VendorOutage: ") for r in rows)
    assert names_in(xml) == [f"Acct {n:05d}" for n in range(16, 31)]
    assert sorted(cirrus.sim.store["Account"]) == [f"Acct {n:05d}" for n in range(1, 16)]


def test_answers_lost_until_the_retries_run_out_leave_no_record_unreported(cirrus, no_wait):
    # every answer from the 4th batch on is lost: each retry reports the batch in flight UNCONFIRMED and
    # sends the next; after the 5 retries of VendorOutcomeUnknownError (6 runs), the import fails with a
    # batch still in flight (records 41-45) and the rest never sent (46-60)
    cirrus.sim.fail_from(3, Fault(drop=True, match="/RestApi/DataAction/"))
    result = cirrus.pipe.import_file(accounts_xml(60), cirrus.key())
    record, _ = cirrus.one_outcome(result, state="FAILED")
    assert record["error"]["type"] == "VendorOutcomeUnknownError"
    counts = record["counts"]
    assert (counts["accepted"], counts["unconfirmed"], counts["not_sent"]) == (15, 30, 15)
    rows, xml = rejects(result)
    assert [(r[0], r[1]) for r in rows] == (
        [(f"{n} Name=Acct {n:05d}", "UNCONFIRMED") for n in range(16, 46)]
        + [(f"{n} Name=Acct {n:05d}", "NOT_SENT") for n in range(46, 61)])
    assert names_in(xml) == [f"Acct {n:05d}" for n in range(16, 61)]
    assert len(cirrus.data_actions()) == 3 + 6  # nothing sent twice, nothing sent while settling
