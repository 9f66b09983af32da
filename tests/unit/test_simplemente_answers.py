"""simplement-e answers read as they are (a scripted local server): NFD names, messages listed
twice, error messages written after the end message."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest
from vendor_import.connectors import build_connector, load_settings
from vendor_import.connectors.base import StepContext
from vendor_import.model import FinalState
from vendor_import.source import BytesSource

from tests import hostile

ROOT = Path(__file__).resolve().parents[2]
GUID = "0f8fad5b-d9cb-469f-a165-70867728950e"
RAW = b'"a";"b"\r\n"1";"2"\r\n'


class Script:
    """PUT answers the GUID; each GET answers the next status of ``statuses`` (the last repeats)."""

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.server = hostile.serve(self.respond)

    def respond(self, h, seen):
        if seen.method == "PUT":
            hostile.answer(h, 200, json.dumps(GUID).encode(), {"Content-Type": "application/json"})
            return
        body = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        hostile.answer(h, 200, json.dumps(body).encode(), {"Content-Type": "application/json"})


@pytest.fixture
def script():
    made = []

    def make(statuses=({"IsCompleted": None, "Messages": []},)):
        s = Script(statuses)
        made.append(s)
        return s

    yield make
    for s in made:
        s.server.close()


def connector(url):
    doc = json.loads((ROOT / "events" / "settings" / "simplemente.example.json").read_text())
    doc.update(base_url=url, allow_http=True, timeout_seconds=5, secret="unit-secret-123")
    return build_connector("simplemente", load_settings("simplemente", doc))


class KeyedSource(BytesSource):
    def __init__(self, data, key):
        super().__init__(data, name=key.rsplit("/", 1)[-1])
        self.key = key


def ctx(key="inbox/simplemente/Catalogue/x.csv", options=None):
    return StepContext(source=KeyedSource(RAW, key), options=options or {},
                       presign=lambda seconds: "https://b.s3.amazonaws.com/x?X-Amz-Signature=abc")


def msg(text, kind=0, date="2024-05-01T10:00:00"):
    return {"Date": date, "Message": text, "Kind": kind}


def poll_until_done(conn, context, job, limit=5):
    for _ in range(limit):
        progress = conn.poll(job, context)
        if progress.done:
            return progress
        job = progress.job
    raise AssertionError("never done")


def test_a_flux_folder_written_in_nfd_is_sent_in_nfc(script):
    s = script()
    nfd = unicodedata.normalize("NFD", "Catalogue été 2024")
    assert nfd != "Catalogue été 2024"
    conn = connector(s.server.url)
    progress = conn.submit(ctx(key=f"inbox/simplemente/{nfd}/x.csv"))
    assert progress.job["flux"] == "Catalogue été 2024"
    assert unquote(s.server.seen[0].path) == "/app/mediations/standard/Catalogue été 2024"


def test_a_flux_option_from_metadata_in_nfd_is_sent_in_nfc(script):
    s = script()
    conn = connector(s.server.url)
    progress = conn.submit(ctx(options={"flux": unicodedata.normalize("NFD", "Été")}))
    assert progress.job["flux"] == "Été"


def test_a_message_listed_twice_is_one_reject(script):
    error = msg("Ligne 3 : référence inconnue", kind=1)
    s = script([{"IsCompleted": None, "Messages": [msg("Import démarré"), error, error,
                                                    msg("Import terminé avec 1 erreur")]}])
    conn = connector(s.server.url)
    job = conn.submit(ctx()).job
    progress = poll_until_done(conn, ctx(), job)
    assert progress.state is FinalState.SUCCEEDED_WITH_REJECTS
    assert [r.reason for r in progress.rejects] == ["Ligne 3 : référence inconnue"]
    assert progress.counts["error_messages"] == 1 and progress.counts["messages"] == 3


def test_errors_written_after_the_end_message_are_read(script):
    end = msg("Import terminé avec 2 erreurs", date="2024-05-01T10:00:05")
    first = msg("Ligne 3 : référence inconnue", kind=1, date="2024-05-01T10:00:01")
    late = msg("Ligne 9 : prix négatif", kind=1, date="2024-05-01T10:00:06")
    s = script([{"IsCompleted": None, "Messages": [first, end]},
                {"IsCompleted": None, "Messages": [first, end, late]}])
    conn = connector(s.server.url)
    job = conn.submit(ctx()).job
    waiting = conn.poll(job, ctx())
    assert not waiting.done
    assert waiting.message == (f"import {GUID} of flux 'Catalogue' ended with errors (Import terminé avec 2 "
                               "erreurs); 1 error message listed so far of 2: reading the status once more "
                               "for the rest")
    done = conn.poll(waiting.job, ctx())
    assert done.done and done.state is FinalState.SUCCEEDED_WITH_REJECTS
    assert [r.reason for r in done.rejects] == ["Ligne 3 : référence inconnue", "Ligne 9 : prix négatif"]


def test_an_end_whose_errors_are_all_there_is_read_at_once(script):
    s = script([{"IsCompleted": None, "Messages": [msg("Ligne 3 : x", kind=1), msg("Import terminé avec 1 erreur")]}])
    conn = connector(s.server.url)
    progress = conn.poll(conn.submit(ctx()).job, ctx())
    assert progress.done and progress.counts["error_messages"] == 1


def test_announced_errors_that_never_come_are_said_after_one_more_poll(script):
    s = script([{"IsCompleted": None, "Messages": [msg("Ligne 3 : x", kind=1), msg("Import terminé avec 3 erreurs")]}])
    conn = connector(s.server.url)
    job = conn.submit(ctx()).job
    first = conn.poll(job, ctx())
    assert not first.done
    done = conn.poll(first.job, ctx())
    assert done.done and done.counts["error_messages"] == 1
    assert done.message.endswith("(the end message announces 3 errors; simplement-e listed 1)")
