"""Pure logic of the simplement-e connector: GUID and status parsing, the end decided from message
texts, flux precedence, auth header forms, silence detection, settings checks."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from vendor_import.connectors import load_settings, validate_options
from vendor_import.connectors.base import StepContext
from vendor_import.connectors.simplemente import (
    MediationStatus,
    Message,
    SimplementeConnector,
    authorization_header,
    decide,
    flux_from_key,
    messages_csv,
    parse_guid,
    parse_status,
)
from vendor_import.errors import InputError, SettingsError, VendorProtocolError, VendorRejectedError
from vendor_import.model import FinalState
from vendor_import.scrub import scrub
from vendor_import.source import BytesSource

ROOT = Path(__file__).resolve().parents[2]
GUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def settings(**overrides):
    doc = {"vendor": "simplemente", "base_url": "https://api.example.test", "app_id": "app",
           "secret": "unit-secret-91"}
    doc.update(overrides)
    return load_settings("simplemente", doc)


def connector(**overrides):
    return SimplementeConnector(settings(**overrides))


def status(*texts, completed=None, errors=(), etat=""):
    messages = [Message(date=f"d{i}", text=t, error=i in errors) for i, t in enumerate(texts)]
    return MediationStatus(is_completed=completed, messages=messages, etat=etat)


# -- GUID --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [
    f'"{GUID}"', f'"{GUID.upper()}"', f' "{GUID}"\r\n', GUID, f'"{{{GUID}}}"', f'"{GUID.replace("-", "")}"',
])
def test_guid_forms(body):
    assert parse_guid(body.encode(), "submit") == GUID


@pytest.mark.parametrize("body", [b'"not-a-guid"', b"{}", b"", b"<html>error</html>", b"42", b'["x"]'])
def test_not_a_guid_is_a_protocol_error(body):
    with pytest.raises(VendorProtocolError, match="expected the import GUID"):
        parse_guid(body, "submit")


def test_empty_guid_means_not_started():
    with pytest.raises(VendorRejectedError, match="empty GUID"):
        parse_guid(b'"00000000-0000-0000-0000-000000000000"', "submit")


# -- status ------------------------------------------------------------------------------------------
def test_status_tutorial_shape():
    doc = {"IsCompleted": None, "Messages": [
        {"Date": "2024-03-01T08:00:00+01:00", "Message": "Début", "Kind": 0},
        {"Date": "2024-03-01T08:00:01+01:00", "Message": "Ligne 3 : valeur invalide", "Kind": 1}]}
    st = parse_status(doc, "poll")
    assert st.is_completed is None
    assert [(m.text, m.error) for m in st.messages] == [("Début", False), ("Ligne 3 : valeur invalide", True)]
    assert [m.date for m in st.errors] == ["2024-03-01T08:00:01+01:00"]


def test_status_camel_case_string_kinds_and_nulls():
    doc = {"isCompleted": True, "messages": [{"date": None, "message": None, "kind": "Error"},
                                             {"message": "info", "kind": "Information"}],
           "etat": "Termine", "etatDetails": None}
    st = parse_status(doc, "poll")
    assert st.is_completed is True and st.etat == "Termine" and st.etat_details == ""
    assert [(m.date, m.text, m.error) for m in st.messages] == [("", "", True), ("", "info", False)]


def test_status_empty_messages_are_normal():
    assert parse_status({"IsCompleted": None, "Messages": []}, "poll").messages == []
    assert parse_status({"IsCompleted": None, "Messages": None}, "poll").messages == []
    assert parse_status({}, "poll").is_completed is None


@pytest.mark.parametrize("doc", [[], "x", {"IsCompleted": "yes"}, {"Messages": {}}, {"Messages": ["x"]}])
def test_status_malformed(doc):
    with pytest.raises(VendorProtocolError):
        parse_status(doc, "poll")


def test_status_texts_are_normalised_and_scrubbed():
    decomposed = "Import termine\u0301"
    url = "https://b.s3.amazonaws.com/k?X-Amz-Signature=abcdef0123456789"
    st = parse_status({"Messages": [{"Message": decomposed, "Kind": 0},
                                    {"Message": f"Impossible de télécharger le fichier {url}", "Kind": 1}]},
                      "poll")
    assert st.messages[0].text == "Import terminé"
    assert "abcdef0123456789" not in st.messages[1].text


def test_presigned_urls_lose_their_query_in_vendor_texts():
    sigv2 = "https://s3.amazonaws.com/b/k.csv?AWSAccessKeyId=AKIA&Signature=c2lnbmF0dXJl&Expires=17"
    st = parse_status({"Messages": [{"Message": f"Impossible de télécharger le fichier '{sigv2}' (403)",
                                     "Kind": 1}], "Etat": f"Erreur {sigv2}"}, "poll")
    assert st.messages[0].text == "Impossible de télécharger le fichier 'https://s3.amazonaws.com/b/k.csv?***' (403)"
    assert "c2lnbmF0dXJl" not in st.etat


# -- the end, read from texts ------------------------------------------------------------------------
PATTERNS = connector().patterns


@pytest.mark.parametrize("texts, errors, expected", [
    ((), (), None),
    (("Début du traitement du flux articles", "Lecture du fichier : 5 lignes"), (), None),
    (("Début", "Import terminé : 5 lignes importées"), (), FinalState.SUCCEEDED),
    (("Début", "Traitement terminé"), (), FinalState.SUCCEEDED),
    (("Started", "Import finished"), (), FinalState.SUCCEEDED),
    (("Processing completed",), (), FinalState.SUCCEEDED),
    (("Début", "Ligne 3 : invalide", "Import terminé"), (1,), FinalState.SUCCEEDED_WITH_REJECTS),
    (("Début", "Import terminé avec erreurs : 3 importées, 2 en erreur"), (), FinalState.SUCCEEDED_WITH_REJECTS),
    (("Import completed with 2 errors",), (), FinalState.SUCCEEDED_WITH_REJECTS),
    (("Début", "Ligne 3 : échec de conversion"), (1,), None),  # a line's error does not end the import
    (("Début", "Échec de l'import du flux articles"), (1,), FinalState.FAILED),
    (("Début", "L'import a échoué"), (), FinalState.FAILED),
    (("Import failed: database locked",), (0,), FinalState.FAILED),
    (("Impossible de télécharger le fichier : HTTP 403",), (0,), FinalState.FAILED),
    (("IMPORT TERMINÉ",), (), FinalState.SUCCEEDED),
])
def test_end_from_message_texts_when_is_completed_is_null(texts, errors, expected):
    assert decide(status(*texts, errors=errors), PATTERNS).state is expected


@pytest.mark.parametrize("completed, texts, errors, expected", [
    (False, ("Import terminé",), (), None),  # the flag, when set, wins over texts
    (True, (), (), FinalState.SUCCEEDED),
    (True, ("anything",), (), FinalState.SUCCEEDED),
    (True, ("Ligne 2 : invalide",), (0,), FinalState.SUCCEEDED_WITH_REJECTS),
    (True, ("Échec de l'import",), (0,), FinalState.FAILED),
])
def test_end_when_is_completed_is_set(completed, texts, errors, expected):
    assert decide(status(*texts, completed=completed, errors=errors), PATTERNS).state is expected


def test_etat_is_read_too():
    st = MediationStatus(is_completed=True, messages=[], etat="Import en échec")
    assert decide(st, PATTERNS).state is FinalState.FAILED


def test_patterns_are_configurable():
    custom = connector(finished_patterns=["^OK$"], failed_patterns=["^KO$"],
                       finished_with_errors_patterns=["^OK-ish$"]).patterns
    assert decide(status("ok"), custom).state is FinalState.SUCCEEDED
    assert decide(status("ko"), custom).state is FinalState.FAILED
    assert decide(status("OK-ish"), custom).state is FinalState.SUCCEEDED_WITH_REJECTS
    assert decide(status("Import terminé"), custom).state is None


# -- flux --------------------------------------------------------------------------------------------
class KeySource(BytesSource):
    def __init__(self, key):
        super().__init__(b"", name=key.rsplit("/", 1)[-1])
        self.key = key


@pytest.mark.parametrize("key, expected", [
    ("inbox/simplemente/articles/file.csv", "articles"),
    ("inbox/simplemente/flux=stocks/articles/file.csv", "articles"),
    ("inbox/simplemente/flux=stocks/file.csv", None),
    ("inbox/simplemente/file.csv", None),
    ("inbox/simplemente/clients/2024/file.csv", "clients"),
    ("other/prefix/file.csv", "other"),
])
def test_flux_from_key(key, expected):
    assert flux_from_key(key) == expected


def test_flux_precedence_option_then_folder_then_default():
    c = connector(default_flux="defaut")
    ctx = StepContext(source=KeySource("inbox/simplemente/dossier/f.csv"), options={"flux": "option"})
    assert c._flux(ctx) == "option"
    ctx.options = {}
    assert c._flux(ctx) == "dossier"
    ctx.source = KeySource("inbox/simplemente/flux=x/f.csv")  # the runner turns flux=x into the option
    assert c._flux(ctx) == "defaut"


def test_no_flux_tells_the_three_ways():
    with pytest.raises(InputError, match="flux=<name>.*default_flux"):
        connector()._flux(StepContext(source=BytesSource(b"")))


@pytest.mark.parametrize("flux", ["a/b", "..", "a?b", "tab\there", "  "])
def test_bad_flux_names(flux):
    with pytest.raises(InputError):
        connector()._flux(StepContext(source=BytesSource(b""), options={"flux": flux}))


def test_flux_option_is_declared():
    assert validate_options("simplemente", {"flux": "articles"}) == {"flux": "articles"}


# -- auth --------------------------------------------------------------------------------------------
def test_auth_header_forms():
    b64 = base64.b64encode(b"app:s3cr\xc3\xa9t").decode()
    assert authorization_header("app", "s3crét") == f"Basic {b64}"
    assert authorization_header("app", "s3crét", "basic:") == f"basic:{b64}"
    assert b64 not in scrub(f"Authorization: basic:{b64}")  # registered: both forms are scrubbed


# -- silence -----------------------------------------------------------------------------------------
def test_silence_needs_both_time_and_polls():
    now = [1000.0]
    c = SimplementeConnector(settings(silence_seconds=30, silence_min_polls=3), clock=lambda: now[0])
    job = {"guid": GUID, "flux": "articles", "submitted_at": 1000.0, "polls": 5}
    empty = MediationStatus(is_completed=None)
    now[0] = 1029.0
    assert c._silence(job, empty) is None  # many polls, not long enough
    now[0] = 1031.0
    assert "check that the processing service is running" in c._silence(job, empty)
    assert c._silence({**job, "polls": 2}, empty) is None  # long enough, too few polls
    assert c._silence(job, status("Début")) is None  # a message: the service is alive


# -- rejects file ------------------------------------------------------------------------------------
def test_messages_csv_is_raw_shaped():
    rows = messages_csv([Message("2024-03-01T08:00:00Z", 'Ligne 3 : "x"; invalide', True),
                         Message("", "info", False)])
    assert rows == b'"2024-03-01T08:00:00Z";1;"Ligne 3 : ""x""; invalide"\r\n"";0;"info"\r\n'


def test_rejects_file_is_refused_as_an_upload():
    data = b'"Date";"Kind";"Message"\r\n"2024-03-01T08:00:00Z";1;"Ligne 3 : invalide"\r\n'
    ctx = StepContext(source=BytesSource(data), options={"flux": "articles"})
    with pytest.raises(InputError, match="rejects file"):
        connector().validate(ctx)


# -- settings ----------------------------------------------------------------------------------------
def test_example_settings_validate():
    doc = json.loads((ROOT / "events" / "settings" / "simplemente.example.json").read_text())
    loaded = load_settings("simplemente", doc)
    assert loaded["auth_scheme"] == "Basic" and loaded["presign_expiry_seconds"] == 3600
    SimplementeConnector(loaded)


def test_defaults():
    s = settings()
    assert (s["auth_scheme"], s["content_type"], s["status_route"], s["silence_seconds"],
            s["silence_min_polls"], s["presign_expiry_seconds"]) == (
        "Basic", "text/json", "status/{guid}", 30, 3, 3600)  # the tutorial's Content-Type


@pytest.mark.parametrize("overrides, words", [
    ({"rules_off": ["commas"]}, "rules_off[0]"),
    ({"failed_patterns": ["(unclosed"]}, "failed_patterns[0] is not a valid regular expression"),
    ({"finished_patterns": [3]}, "finished_patterns[0] must be a string"),
])
def test_bad_settings(overrides, words):
    with pytest.raises(SettingsError, match=words.replace("[", r"\[").replace("]", r"\]")):
        connector(**overrides)


@pytest.mark.parametrize("overrides", [{"auth_scheme": "Bearer"}, {"status_route": "x/{guid}"},
                                       {"base_url": "http://api.example.test"}])
def test_bad_settings_at_load(overrides):
    with pytest.raises(SettingsError):
        settings(**overrides)


# -- advice only where its evidence is (issue 13, part 6) --------------------------------------------
ADVICE = "the vendor could not download the file"


def final_message(st: MediationStatus) -> str:
    from vendor_import.connectors.simplemente import _final_message

    conn = connector()
    outcome = decide(st, conn.patterns)
    assert outcome.state is FinalState.FAILED
    return _final_message(outcome, st, GUID, "articles", conn.settings)


@pytest.mark.parametrize("st", [
    # the case: the file WAS fetched, the flow failed later
    status("Fichier récupéré : 5 lignes", "Échec de l'import du flux articles", errors=(1,)),
    status("Téléchargement du fichier terminé", "Lecture du fichier : 5 lignes",
           "Erreur fatale : la médiation a été interrompue", "Échec de l'import du flux articles", errors=(2, 3)),
    status("File downloaded (5 lines)", "Import failed: duplicate key", errors=(1,)),
    # a 403 or an expiry in an information message is not the vendor's failure to fetch
    status("Récupération du fichier (HTTP 403 puis nouvel essai)", "Fichier récupéré", "Échec de l'import",
           errors=(2,)),
])
def test_no_download_advice_when_the_file_was_fetched(st):
    message = final_message(st)
    assert ADVICE not in message and "presigned" not in message


@pytest.mark.parametrize("st", [
    status("Impossible de télécharger le fichier https://s3.example/b/k?*** : HTTP 403",
           "Échec de l'import du flux articles", errors=(0, 1)),
    status("Could not download the file: 403 Forbidden", "Import failed", errors=(0, 1)),
    status("Échec du téléchargement du fichier : Request has expired", "Échec de l'import", errors=(0, 1)),
    status("Failed to fetch the file (AccessDenied)", "Import failed", errors=(0, 1)),
])
def test_download_advice_when_the_vendor_says_it_could_not_fetch_the_file(st):
    message = final_message(st)
    assert f"; {ADVICE}: the presigned URL may have expired before the fetch (presign_expiry_seconds is 3600)" \
           in message


def test_rejected_counts_rows_never_messages():
    from vendor_import.connectors.simplemente import _counts

    st = status("Ligne 3 : valeur invalide", "Ligne 5 : valeur invalide", "Import terminé avec erreurs",
                errors=(0, 1))
    counts = _counts({"records": 5}, st)
    assert counts == {"records": 5, "sent": 5, "error_messages": 2, "messages": 3}
    assert "rejected" not in counts
    assert SimplementeConnector.rejects_are_records is False
