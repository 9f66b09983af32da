"""simplement-e RAW flow imports through the whole local pipeline (issue 5): S3 upload -> queue ->
submit function -> state machine (the real ASL) -> simplemente function <-> simulator over HTTP
-> finalize -> DynamoDB, S3, SNS.

The vendor fetches the file itself: the simulator downloads the presigned URL with a real HTTP
GET from the runner's S3 endpoint (S3_PRESIGN_ENDPOINT, a moto server on 127.0.0.1).

The pipeline is the e2e package's one deployment (tests/e2e/conftest.py ``pipe``): two local
pipelines cannot live in one process at once, so this module adds the simplemente settings to it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from local.simulators.simplemente import SECRET, SimplementeSimulator, http_fetch

pytestmark = pytest.mark.e2e

VENDOR = "simplemente"  # for the vendor_sim fixture (conftest.py)

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "events" / "files" / "simplemente"
CLEAN = FILES / "articles-clean.csv"


# -- fixtures -------------------------------------------------------------------------------------------

@pytest.fixture
def simplemente(pipe, vendor_sim, request):
    simplemente_sim = vendor_sim  # shared by the e2e package (conftest.py), its settings already in place

    def reset():
        simplemente_sim.wait_fetched()
        with simplemente_sim._lock:
            simplemente_sim.requests.clear()
            simplemente_sim._faults.clear()
            simplemente_sim.imports.clear()
            simplemente_sim._fetchers.clear()
        simplemente_sim.fetch = http_fetch

    reset()
    yield Simplemente(pipe, simplemente_sim, request.node.name)
    reset()


class Simplemente:
    def __init__(self, pipe, sim: SimplementeSimulator, test_name: str):
        self.pipe = pipe
        self.sim = sim
        self.name = re.sub(r"[^A-Za-z0-9_-]+", "-", test_name)[:60]

    def key(self, segments: str = "flux=articles/") -> str:
        return f"inbox/simplemente/{segments}{self.name}.csv"

    def settings(self, **changes) -> None:
        self.pipe.set_settings("simplemente", {**self.sim.settings(), **changes})

    def puts(self) -> list:
        return self.sim.requests_to("/app/mediations/standard/", "PUT")

    def one_outcome(self, result, *, state: str) -> dict:
        """The final state, and exactly one status record, status JSON and SNS message."""
        assert result.state == state, result.record
        record = result.record
        assert record["job_id"] == result.job_id and record["vendor"] == "simplemente"
        assert record["source"]["key"] == result.key and record.get("notified_at")
        document = json.loads(self.pipe.s3.get_object(
            Bucket=self.pipe.bucket, Key=f"status/simplemente/{result.job_id}.json")["Body"].read())
        messages = [m for m in self.pipe.drain_messages() if m["body"]["job_id"] == result.job_id]
        assert len(messages) == 1, messages
        (message,) = messages
        assert document == message["body"] == {k: v for k, v in record.items() if k != "notified_at"}
        assert message["subject"] == f"[simplemente] {state}: {result.key.rsplit('/', 1)[-1]}"
        assert message["attributes"] == {"vendor": "simplemente", "target": "default", "state": state,
                                         "dry_run": "false",
                                         **({"error_type": record["error"]["type"]} if record["error"] else {})}
        # neither the secret nor the presigned URL's signature (a read grant on the upload)
        text = json.dumps(message) + "".join(p.read_text() for p in result.rejects_paths)
        assert SECRET not in text and "X-Amz-Signature" not in text and "X-Amz-Credential" not in text
        return record


def rejects(result) -> tuple[list[list[str]], list[list[str]]]:
    """(normalised CSV rows, vendor-messages.csv rows), headers checked and dropped."""
    by_name = {p.name: p for p in result.rejects_paths}
    assert sorted(by_name) == sorted([f"{result.key.rsplit('/', 1)[-1]}.rejects.csv", "vendor-messages.csv"])
    raw = list(csv.reader(io.StringIO(by_name.pop("vendor-messages.csv").read_text(), newline=""), delimiter=";"))
    rows = list(csv.reader(io.StringIO(by_name.popitem()[1].read_text(), newline="")))
    assert rows[0] == ["record", "code", "reason"] and raw[0] == ["Date", "Kind", "Message"]
    return rows[1:], raw[1:]


def fetched_later(delay_seconds: float):
    """A vendor whose download starts ``delay_seconds`` after the submission (a busy queue). The
    local S3 endpoint (moto) does not enforce presigned URL expiry, so this answers what S3
    answers for an expired one, 403; an unexpired URL is fetched over HTTP as usual."""
    def fetch(url: str) -> tuple[int, bytes]:
        query = parse_qs(urlsplit(url).query)
        signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        expires = signed + timedelta(seconds=int(query["X-Amz-Expires"][0]))
        if datetime.now(UTC) + timedelta(seconds=delay_seconds) > expires:
            return 403, b""
        return http_fetch(url)

    return fetch


# -- outcomes --------------------------------------------------------------------------------------------

def test_clean_file_is_fetched_by_the_vendor_over_http_and_succeeds(simplemente):
    result = simplemente.pipe.import_file(CLEAN, simplemente.key())
    record = simplemente.one_outcome(result, state="SUCCEEDED")
    (imp,) = simplemente.sim.imports.values()
    assert record["vendor_ref"] == imp.guid and imp.flux == "articles"
    assert record["counts"] == {"records": 5, "sent": 5, "error_messages": 0, "messages": 3}
    assert record["cost"]["vendor_requests"] == len(simplemente.sim.requests)  # all it received
    assert record["cost"]["retries"] == 0
    assert record["message"] == (f"simplement-e import {imp.guid} of flux 'articles' finished: Import terminé : "
                                 "5 lignes importées")
    assert record["rejects"] == {"csv_uri": None, "raw_uri": None, "rows": 0}
    # one PUT with {"Url": presigned URL of this very upload version on the runner's S3 endpoint}
    (put,) = simplemente.puts()
    url = put.json()["Url"]
    assert url == imp.url and url.startswith(os.environ["S3_PRESIGN_ENDPOINT"] + "/" + simplemente.pipe.bucket)
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and unquote(parts.path) == f"/{simplemente.pipe.bucket}/{result.key}"
    query = parse_qs(parts.query)
    assert query["versionId"] == [record["source"]["version_id"]] and query["X-Amz-Expires"] == ["3600"]
    # the simulator read the real file: its line count comes from the download
    assert http_fetch(url) == (200, CLEAN.read_bytes())
    assert imp.fetched and imp.groups[1][0]["Message"] == "Lecture du fichier : 5 lignes"


def test_error_messages_of_kind_1_become_the_rejects(simplemente):
    result = simplemente.pipe.import_file(FILES / "articles-with-errors.csv", simplemente.key())
    record = simplemente.one_outcome(result, state="SUCCEEDED_WITH_REJECTS")
    assert record["counts"] == {"records": 5, "sent": 5, "error_messages": 2, "messages": 5}
    assert record["cost"]["vendor_requests"] == len(simplemente.sim.requests)  # all it received
    assert record["cost"]["retries"] == 0
    assert record["rejects"]["rows"] == 2
    assert "finished with 2 error messages: Import terminé avec erreurs : 3 lignes importées, 2 lignes en " \
           "erreur" in record["message"]
    rows, raw = rejects(result)
    reasons = ["Ligne 3 : valeur invalide, l'enregistrement est ignoré",
               "Ligne 5 : valeur invalide, l'enregistrement est ignoré"]
    assert [(r[1], r[2]) for r in rows] == [("Kind=1", reason) for reason in reasons]
    assert [(r[1], r[2]) for r in raw] == [("1", reason) for reason in reasons]
    assert [r[0] for r in rows] == [r[0] for r in raw] and all(r[0] for r in rows)  # the message dates


def test_flow_failed_by_the_vendor_is_failed_with_its_messages(simplemente):
    # flux from S3 metadata, no flux in the key
    result = simplemente.pipe.import_file(FILES / "articles-fail-flow.csv", simplemente.key(segments=""),
                                          metadata={"flux": "articles"})
    record = simplemente.one_outcome(result, state="FAILED")
    (imp,) = simplemente.sim.imports.values()
    assert record["message"] == f"simplement-e import {imp.guid} of flux 'articles' failed: Échec de l'import " \
                                "du flux articles"
    assert record["error"] == {"type": "VendorJobFailed", "message": record["message"]}
    rows, _ = rejects(result)
    assert [r[2] for r in rows] == ["Erreur fatale lors du traitement du flux articles : la médiation a été "
                                    "interrompue", "Échec de l'import du flux articles"]
    assert [p.path for p in simplemente.puts()] == ["/app/mediations/standard/articles"]


def test_silent_processing_service_is_failed_with_advice(simplemente):
    simplemente.settings(silence_seconds=0, silence_min_polls=3)
    silent = CLEAN.read_bytes().replace(b"Chaise pliante", b"SILENT")
    result = simplemente.pipe.import_file(silent, simplemente.key())
    record = simplemente.one_outcome(result, state="FAILED")
    (imp,) = simplemente.sim.imports.values()
    assert imp.fetched and imp.groups == []  # the file was downloaded; nothing ever processed it
    assert record["message"].startswith(f"simplement-e gave no message about import {imp.guid} of flux "
                                        "'articles' ")
    assert record["message"].endswith("3 polls after the submission: check that the processing service is "
                                      "running on the simplement-e server, then upload the file again")
    assert record["counts"] == {"records": 5, "sent": 5, "error_messages": 0, "messages": 0}
    # silence has no words of its own: the error says it was silence and for how long
    assert record["error"] == {"type": "VendorSilent", "message": record["message"]}
    assert record["cost"]["vendor_requests"] == len(simplemente.sim.requests)  # all it received
    assert record["cost"]["retries"] == 0
    assert len(simplemente.sim.requests_to(f"/app/mediations/status/{imp.guid}", "GET")) == 3


def test_presigned_url_expired_before_the_vendor_fetched_it_is_failed_with_advice(simplemente):
    simplemente.settings(presign_expiry_seconds=60)
    simplemente.sim.fetch = fetched_later(61)
    result = simplemente.pipe.import_file(CLEAN, simplemente.key())
    record = simplemente.one_outcome(result, state="FAILED")
    (put,) = simplemente.puts()
    url = put.json()["Url"]
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["60"]
    # the vendor's message quotes the URL: its signed query is cut everywhere it is kept
    assert url.startswith(os.environ["S3_PRESIGN_ENDPOINT"])
    quoted = f"Impossible de télécharger le fichier {url.split('?')[0]}?*** : HTTP 403"
    assert record["message"] == (
        f"simplement-e import {record['vendor_ref']} of flux 'articles' failed: {quoted}; the vendor could not "
        "download the file: the presigned URL may have expired before the fetch (presign_expiry_seconds is 60) "
        "or the vendor cannot reach S3")
    assert record["error"]["type"] == "VendorJobFailed" and quoted in record["error"]["message"]
    rows, raw = rejects(result)
    assert [r[2] for r in rows] == [quoted] and [r[2] for r in raw] == [quoted]


def test_the_same_late_fetch_succeeds_with_the_default_url_lifetime(simplemente):
    simplemente.sim.fetch = fetched_later(61)
    result = simplemente.pipe.import_file(CLEAN, simplemente.key())
    simplemente.one_outcome(result, state="SUCCEEDED")


# -- refused before anything is sent ------------------------------------------------------------------------

def test_file_not_in_raw_format_is_failed_and_nothing_is_put(simplemente):
    result = simplemente.pipe.import_file(FILES / "articles-bad-format.csv", simplemente.key())
    record = simplemente.one_outcome(result, state="FAILED")
    assert record["error"]["type"] == "InputError"
    assert record["message"] == ("line 1: expected CRLF line end, found LF only (after column 1): save the file "
                                 "with Windows (CRLF) line ends (rule crlf)")
    assert simplemente.sim.requests == [] and simplemente.sim.imports == {}


def test_comma_separated_file_is_failed_naming_the_rule(simplemente):
    commas = CLEAN.read_bytes().replace(b";", b",")
    result = simplemente.pipe.import_file(commas, simplemente.key())
    record = simplemente.one_outcome(result, state="FAILED")
    assert record["error"]["type"] == "InputError" and "(rule " in record["message"]
    assert simplemente.sim.requests == []


def test_no_flux_anywhere_is_failed_saying_where_to_give_one(simplemente):
    result = simplemente.pipe.import_file(CLEAN, simplemente.key(segments=""))
    record = simplemente.one_outcome(result, state="FAILED")
    assert record["message"].startswith("no flux (flow name) for this import: put the file under "
                                        "inbox/simplemente/flux=<name>/")
    assert simplemente.sim.requests == []


def test_flux_from_a_plain_folder_of_the_key(simplemente):
    result = simplemente.pipe.import_file(CLEAN, simplemente.key(segments="clients/"))
    simplemente.one_outcome(result, state="SUCCEEDED")
    assert [p.path for p in simplemente.puts()] == ["/app/mediations/standard/clients"]


def test_wrong_secret_is_failed_with_an_auth_error(simplemente):
    wrong = "wrong-simplemente-secret-e2e"
    simplemente.settings(secret=wrong)
    result = simplemente.pipe.import_file(CLEAN, simplemente.key())
    record = simplemente.one_outcome(result, state="FAILED")
    assert record["error"]["type"] == "VendorAuthError"
    assert "simplement-e refused the credentials (HTTP 401)" in record["message"]
    assert simplemente.sim.imports == {} and wrong not in json.dumps(record)
