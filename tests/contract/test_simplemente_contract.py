"""SimplementeConnector against the simplement-e simulator over HTTP (seed 000).

The simulator downloads the upload itself, as the vendor does: a tiny local HTTP server stands in
for S3 and serves the file at a "presigned" URL (an expired one answers 403 like S3)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from vendor_import.connectors import build_connector, load_settings
from vendor_import.connectors.base import StepContext
from vendor_import.errors import (
    InputError,
    VendorAuthError,
    VendorImportError,
    VendorProtocolError,
    VendorRejectedError,
    VendorUnavailableError,
)
from vendor_import.model import FinalState
from vendor_import.source import BytesSource, FileSource

from local.simulators.base import Fault
from local.simulators.simplemente import APP_ID, DEMO_CASES, SECRET, SimplementeSimulator

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "events" / "files" / "simplemente"
SIGNATURE = "5ec0de5ec0de5ec0de5ec0de5ec0de5ec0de5ec0de5ec0de5ec0de5ec0de5ec0"
TOKEN = base64.b64encode(f"{APP_ID}:{SECRET}".encode()).decode()

HEADER = '"Code";"Libelle";"Prix"'


def raw(*lines: str, end: str = "\r\n") -> bytes:
    return "".join(line + end for line in lines).encode("utf-8")


CLEAN = raw(HEADER, '"A1";"Chaise";12.5', '"A2";"Table";189')


# -- a stand-in for S3 presigned URLs ---------------------------------------------------------------
class FakeS3:
    """Serves registered bytes at presigned-looking URLs; expired ones answer 403 like S3."""

    def __init__(self):
        self.objects: dict[str, tuple[bytes, bool]] = {}
        self.gets: list[str] = []
        store = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                store.gets.append(self.path)
                path = self.path.split("?", 1)[0]
                data, expired = store.objects.get(path, (None, False))
                if data is None or expired:
                    body = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>"
                            b"<Message>Request has expired</Message></Error>")
                    self.send_response(403)
                else:
                    body = data
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def presigned(self, data: bytes, *, expired: bool = False) -> str:
        path = f"/bucket/inbox/simplemente/upload-{len(self.objects)}.csv"
        self.objects[path] = (data, expired)
        host, port = self.server.server_address[:2]
        return (f"http://{host}:{port}{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600"
                f"&X-Amz-Signature={SIGNATURE}")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def s3():
    store = FakeS3()
    yield store
    store.close()


@pytest.fixture(scope="module")
def shared_sim():
    with SimplementeSimulator() as simulator:  # one server: stopping one takes up to 0.5 s
        yield simulator


@pytest.fixture
def sim(shared_sim):
    """The shared simulator, reset to its defaults with an empty request log."""
    shared_sim.wait_fetched()
    with shared_sim._lock:
        shared_sim.requests.clear()
        shared_sim.imports.clear()
        shared_sim._faults.clear()
    shared_sim.strict_auth = shared_sim.report_is_completed = False
    shared_sim.known_fluxes = None
    return shared_sim


def make_connector(sim, **overrides):
    doc = sim.settings()
    doc.update(overrides)
    return build_connector("simplemente", load_settings("simplemente", doc))


class KeySource(BytesSource):
    """An upload that knows its S3 key (as S3Source does)."""

    def __init__(self, data: bytes, key: str):
        super().__init__(data, name=key.rsplit("/", 1)[-1])
        self.key = key


def context(s3, data=CLEAN, *, options=None, expired=False, presigns=None, source=None):
    url = s3.presigned(data, expired=expired)

    def presign(seconds: int) -> str:
        if presigns is not None:
            presigns.append(seconds)
        return url

    return StepContext(source=source or BytesSource(data, name="articles.csv"),
                       options={"flux": "articles"} if options is None else options, presign=presign)


def run(connector, ctx, sim, max_polls=20):
    """validate, submit, then poll until done; returns (submit progress, last progress, all)."""
    connector.validate(ctx)
    first = connector.submit(ctx)
    sim.wait_fetched()
    steps = [first]
    progress = first
    for _ in range(max_polls):
        if progress.done:
            break
        progress = connector.poll(json.loads(json.dumps(progress.job)), ctx)  # as the payload would
        steps.append(progress)
    assert progress.done, "the import did not finish"
    return first, progress, steps


# -- the branches -----------------------------------------------------------------------------------
def test_clean_import_succeeds(sim, s3):
    presigns = []
    ctx = context(s3, presigns=presigns)
    first, final, steps = run(make_connector(sim), ctx, sim)
    assert final.state is FinalState.SUCCEEDED
    assert "Import terminé : 2 lignes importées" in final.message
    assert final.vendor_ref == first.vendor_ref == first.job["guid"]
    assert final.counts == {"records": 2, "sent": 2, "error_messages": 0, "messages": 3}
    assert final.rejects == [] and final.raw_rejects is None
    assert presigns == [3600]  # presign_expiry_seconds default
    put = sim.requests_to("/app/mediations/standard/articles", "PUT")
    assert len(put) == 1
    assert put[0].json() == {"Url": ctx.presign(0)}
    assert put[0].header("Content-Type") == "text/json"  # as the tutorial sends it
    assert len(s3.gets) == 1  # the vendor fetched the file once
    # first polls show no message (normal), then information messages, then the end
    assert [p.done for p in steps] == [False, False, False, False, True]
    assert "no message yet" in steps[1].message
    assert len(json.dumps(final.job)) < 8192
    assert "X-Amz" not in json.dumps(final.job)  # the presigned URL is not kept in the state


def test_with_errors_lists_rejects(sim, s3):
    data = (FILES / "articles-with-errors.csv").read_bytes()
    _, final, _ = run(make_connector(sim), context(s3, data), sim)
    assert final.state is FinalState.SUCCEEDED_WITH_REJECTS
    assert final.counts["error_messages"] == 2 and final.counts["records"] == 5 and "rejected" not in final.counts
    assert [r.code for r in final.rejects] == ["Kind=1", "Kind=1"]
    assert [r.reason for r in final.rejects] == [
        "Ligne 3 : valeur invalide, l'enregistrement est ignoré",
        "Ligne 5 : valeur invalide, l'enregistrement est ignoré"]
    assert all(r.record.startswith("20") for r in final.rejects)  # the message date
    assert "terminé avec erreurs" in final.message and "2 error messages" in final.message
    assert final.raw_rejects_format.name == "vendor-messages.csv"
    assert final.raw_rejects_format.header == '"Date";"Kind";"Message"\r\n'
    lines = final.raw_rejects.decode().split("\r\n")
    assert len(lines) == 3 and lines[0].endswith(';1;"Ligne 3 : valeur invalide, l\'enregistrement est ignoré"')


def test_rejects_file_with_all_messages(sim, s3):
    data = (FILES / "articles-with-errors.csv").read_bytes()
    _, final, _ = run(make_connector(sim, rejects_file_messages="all"), context(s3, data), sim)
    kinds = [line.split(";")[1] for line in final.raw_rejects.decode().split("\r\n") if line]
    assert kinds == ["0", "0", "1", "1", "0"]


def test_vendor_failure_is_failed(sim, s3):
    data = (FILES / "articles-fail-flow.csv").read_bytes()
    _, final, _ = run(make_connector(sim), context(s3, data), sim)
    assert final.state is FinalState.FAILED
    assert "failed: Échec de l'import du flux articles" in final.message
    assert [r.code for r in final.rejects] == ["Kind=1", "Kind=1"]


def test_silent_service_fails_with_advice(sim, s3):
    connector = make_connector(sim, silence_seconds=30, silence_min_polls=3)
    now = [5000.0]
    connector.clock = lambda: now[0]
    ctx = context(s3, raw(HEADER, '"A1";"SILENT";1'))
    progress = connector.submit(ctx)
    sim.wait_fetched()
    for _ in range(4):  # many empty polls, but not yet 30 s: still waiting
        progress = connector.poll(progress.job, ctx)
        assert not progress.done
    now[0] += 31
    progress = connector.poll(progress.job, ctx)
    assert progress.done and progress.state is FinalState.FAILED
    assert "check that the processing service is running" in progress.message
    assert "31 s and 5 polls" in progress.message


def test_empty_first_polls_do_not_end_the_import_early(sim, s3):
    connector = make_connector(sim, silence_seconds=30, silence_min_polls=3)
    now = [5000.0]
    connector.clock = lambda: now[0]
    ctx = context(s3)
    progress = connector.submit(ctx)
    sim.wait_fetched()
    progress = connector.poll(progress.job, ctx)  # empty
    now[0] += 60
    progress = connector.poll(progress.job, ctx)  # the first message arrives in time
    assert not progress.done and progress.counts["messages"] == 1


RULE_CASES = {
    "separator": raw(HEADER, '"A1";"Chaise"'),
    "quoting": raw(HEADER, '"A1";Chaise;12.5'),
    "utf8": raw(HEADER) + b'"A1";"caf\xe9";1\r\n',
    "bom": b"\xef\xbb\xbf" + CLEAN,
    "crlf": raw(HEADER, '"A1";"Chaise";12.5', end="\n"),
    "header": raw('"A1";"Chaise";12.5', '"A2";"Table";189'),
    "empty": b"",
}


@pytest.mark.parametrize("rule", list(RULE_CASES))
def test_bad_raw_format_sends_nothing(sim, s3, rule):
    connector = make_connector(sim)
    presigns = []
    ctx = context(s3, RULE_CASES[rule], presigns=presigns)
    with pytest.raises(InputError) as info:
        connector.validate(ctx)
    assert info.value.detail["rule"] == rule
    assert f"(rule {rule})" in str(info.value) or rule == "empty"
    with pytest.raises(InputError):
        connector.submit(ctx)  # submit checks too, whoever calls it
    assert sim.requests == [] and presigns == [] and s3.gets == []


def test_bad_format_sample_sends_nothing(sim, s3):
    ctx = StepContext(source=FileSource(str(FILES / "articles-bad-format.csv")),
                      options={"flux": "articles"}, presign=lambda s: "unused")
    with pytest.raises(InputError, match=r"^line 1: expected CRLF line end"):
        make_connector(sim).submit(ctx)
    assert sim.requests == []


def test_rules_off_lets_the_file_through(sim, s3):
    data = RULE_CASES["crlf"]
    _, final, _ = run(make_connector(sim, rules_off=["crlf"]), context(s3, data), sim)
    assert final.state is FinalState.SUCCEEDED


def test_url_expired_before_fetch_fails(sim, s3):
    _, final, _ = run(make_connector(sim), context(s3, expired=True), sim)
    assert final.state is FinalState.FAILED
    assert "presigned URL may have expired" in final.message
    assert "presign_expiry_seconds is 3600" in final.message
    assert final.rejects[0].reason.startswith("Impossible de télécharger le fichier")
    assert "HTTP 403" in final.rejects[0].reason
    assert SIGNATURE not in final.rejects[0].reason + final.message + final.raw_rejects.decode()


@pytest.mark.parametrize("scheme, header", [("Basic", f"Basic {TOKEN}"), ("basic:", f"basic:{TOKEN}")])
def test_auth_header_forms(sim, s3, scheme, header):
    _, final, _ = run(make_connector(sim, auth_scheme=scheme), context(s3), sim)
    assert final.state is FinalState.SUCCEEDED
    assert {r.header("Authorization") for r in sim.requests} == {header}


def test_server_refusing_the_tutorial_form_is_an_auth_error(sim, s3):
    sim.strict_auth = True
    with pytest.raises(VendorAuthError, match="auth_scheme"):
        make_connector(sim, auth_scheme="basic:").submit(context(s3))


@pytest.mark.parametrize("route, path", [("status/{guid}", "/app/mediations/status/{guid}"),
                                         ("{guid}/status", "/app/mediations/{guid}/status")])
def test_both_status_routes(sim, s3, route, path):
    first, final, _ = run(make_connector(sim, status_route=route), context(s3), sim)
    assert final.state is FinalState.SUCCEEDED
    polls = sim.requests_to("/status", "GET")
    assert polls and {r.path for r in polls} == {path.format(guid=first.vendor_ref)}


def test_reference_route_with_is_completed_set(sim, s3):
    sim.report_is_completed = True
    data = (FILES / "articles-with-errors.csv").read_bytes()
    _, final, steps = run(make_connector(sim, status_route="{guid}/status"), context(s3, data), sim)
    assert final.state is FinalState.SUCCEEDED_WITH_REJECTS
    assert len(final.rejects) == 2
    assert [p.done for p in steps] == [False, False, False, False, False, True]


def test_unknown_import_on_the_status_route_hints_the_other_route(sim, s3):
    connector = make_connector(sim)
    job = {"guid": "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "flux": "articles", "submitted_at": 0,
           "polls": 0, "records": 1}
    with pytest.raises(VendorRejectedError, match=r"try the other status_route"):
        connector.poll(job, context(s3))


def test_guid_parsing_of_a_malformed_answer(sim, s3):
    sim.inject(Fault(malformed=True, match="/standard/"))
    with pytest.raises(VendorProtocolError, match="expected the import GUID"):
        make_connector(sim).submit(context(s3))


def test_guid_is_normalised(sim, s3):
    first = make_connector(sim).submit(context(s3))
    assert first.vendor_ref == first.job["guid"] and first.vendor_ref in sim.imports


def test_401_raises_vendor_auth_error(sim, s3):
    connector = make_connector(sim, secret="wrong-secret-value")
    with pytest.raises(VendorAuthError, match="HTTP 401.*app_id and secret") as info:
        connector.submit(context(s3))
    assert "wrong-secret-value" not in str(info.value)


def test_unknown_flux_is_rejected_with_a_hint(sim, s3):
    sim.known_fluxes = {"articles"}
    with pytest.raises(VendorRejectedError, match="no flux 'clients'"):
        make_connector(sim).submit(context(s3, options={"flux": "clients"}))


def test_flux_from_a_plain_key_segment_and_encoded(sim, s3):
    source = KeySource(CLEAN, "inbox/simplemente/stock magasin/stocks.csv")
    make_connector(sim).submit(context(s3, options={}, source=source))
    assert sim.requests_to("/app/mediations/standard/stock%20magasin", "PUT")
    assert [i.flux for i in sim.imports.values()] == ["stock magasin"]


def test_default_flux_setting(sim, s3):
    make_connector(sim, default_flux="clients").submit(context(s3, options={}))
    assert sim.requests_to("/app/mediations/standard/clients", "PUT")


def test_content_type_setting(sim, s3):
    make_connector(sim, content_type="application/json").submit(context(s3))
    assert sim.requests_to("/standard/", "PUT")[0].header("Content-Type") == "application/json"


def test_poll_5xx_is_transient_and_the_poll_can_be_rerun(sim, s3):
    connector = make_connector(sim)
    ctx = context(s3)
    progress = connector.submit(ctx)
    sim.wait_fetched()
    sim.inject(Fault(status=500, match="/status/"))
    with pytest.raises(VendorUnavailableError):
        connector.poll(progress.job, ctx)
    again = connector.poll(progress.job, ctx)  # the state machine retries with the same job
    assert again.job["polls"] == 1
    assert len(sim.requests_to("/standard/", "PUT")) == 1  # nothing submitted twice


def test_validate_makes_no_vendor_call(sim, s3):
    make_connector(sim).validate(context(s3))
    assert sim.requests == [] and s3.gets == []


def test_no_secret_in_messages(sim, s3):
    """Every text an import produces (errors, messages, job, rejects) is free of secrets."""
    texts = []
    for overrides, data, expired in [({}, (FILES / "articles-with-errors.csv").read_bytes(), False),
                                     ({"auth_scheme": "basic:"}, CLEAN, True)]:
        _, final, steps = run(make_connector(sim, **overrides), context(s3, data, expired=expired), sim)
        for p in steps:
            texts += [p.message, json.dumps(p.job), json.dumps(p.to_dict(), default=str)]
    for overrides in ({"secret": "another-wrong-secret"}, {"auth_scheme": "basic:", "app_id": "nobody"}):
        with pytest.raises(VendorImportError) as info:
            make_connector(sim, **overrides).submit(context(s3))
        texts.append(str(info.value))
    sim.inject(Fault(status=503, match="/standard/"))
    with pytest.raises(VendorUnavailableError) as info:
        make_connector(sim).submit(context(s3))
    texts.append(str(info.value))
    blob = "\n".join(texts)
    for secret in (SECRET, TOKEN, SIGNATURE, "another-wrong-secret"):
        assert secret not in blob


@pytest.mark.parametrize("case", DEMO_CASES, ids=lambda c: c.title)
def test_demo_cases(sim, s3, case):
    data = (ROOT / case.file).read_bytes()
    options = {"flux": "articles"}  # from flux= key segments or S3 metadata
    connector = make_connector(sim)
    if case.expect == "FAILED" and b"FAIL-FLOW" not in data:
        with pytest.raises(InputError):
            connector.validate(context(s3, data, options=options))
        return
    _, final, _ = run(connector, context(s3, data, options=options), sim)
    assert final.state.value == case.expect
