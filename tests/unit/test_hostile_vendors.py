"""Every vendor's secret-bearing calls against a server that redirects them to another host: the
other host receives nothing, the import fails RedirectRefused naming the target host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vendor_import.connectors import build_connector, load_settings
from vendor_import.connectors.base import StepContext
from vendor_import.errors import RedirectRefused, VendorUnavailableError
from vendor_import.source import BytesSource

from tests import hostile

ROOT = Path(__file__).resolve().parents[2]
SECRET = "pa55-w0rd-that-must-stay-home"
PRESIGNED = "https://bucket.s3.amazonaws.com/inbox/x.csv?X-Amz-Signature=deadbeefcafe"


@pytest.fixture
def hosts():
    """(thief, api): thief records what it gets; api redirects every call (307) to the thief,
    except the paths in ``api.serve`` (e.g. a token endpoint that answers)."""
    thief = hostile.serve(lambda h, seen: hostile.answer(h, 200, b'{"access_token": "x", "expires_in": 3600}'))
    routes: dict[str, bytes] = {}

    def respond(h, seen):
        for prefix, body in routes.items():
            if seen.path.startswith(prefix):
                hostile.answer(h, 200, body, {"Content-Type": "application/json"})
                return
        target = thief.url.replace("127.0.0.1", "localhost") + seen.path
        hostile.answer(h, 307, b"", {"Location": target})

    api = hostile.serve(respond)
    api.routes = routes  # type: ignore[attr-defined]
    yield thief, api
    thief.close()
    api.close()


def settings_for(vendor: str, api_url: str, **overrides):
    doc = json.loads((ROOT / "events" / "settings" / f"{vendor}.example.json").read_text())
    doc.update({"base_url": api_url, "allow_http": True, "timeout_seconds": 5, **overrides})
    return load_settings(vendor, doc)


def hopex(api_url, extra=None, **auth):
    settings = settings_for("hopex", api_url, **(extra or {}))
    settings["auth"] = {**settings["auth"], **auth}
    return build_connector("hopex", settings)


def campaign(api_url, **ims):
    settings = settings_for("campaign", api_url)
    settings["ims"] = {**settings["ims"], "token_url": api_url + "/ims/token/v3", **ims}
    return build_connector("campaign", settings)


MGL = StepContext(source=BytesSource(b"data", name="x.mgl"))
TRIGGER = StepContext(source=BytesSource(b'{"mapping_id": "M1"}', name="trigger.json"))
HOPEX_JOB = {"job_id": "J1", "mode": "import", "validate": "Standard", "polls": 0}


def assert_refused(call, thief):
    with pytest.raises(RedirectRefused) as err:
        call()
    assert "another host, http://localhost" in str(err.value)
    assert thief.seen == []
    return err.value


def test_hopex_uas_token_call(hosts):
    thief, api = hosts
    conn = hopex(api.url, uas_url=api.url + "/UAS/connect/token", password=SECRET)
    assert "HOPEX UAS token request" in str(assert_refused(lambda: conn.submit(MGL), thief))


def test_hopex_import_call_with_basic_auth(hosts):
    thief, api = hosts
    conn = hopex(api.url, type="basic", password=SECRET)
    assert "HOPEX import" in str(assert_refused(lambda: conn.submit(MGL), thief))


def test_hopex_status_call(hosts):
    thief, api = hosts
    api.routes["/UAS/"] = b'{"access_token": "uas-token-123456", "expires_in": 3600}'
    conn = hopex(api.url, uas_url=api.url + "/UAS/connect/token")
    assert "HOPEX status" in str(assert_refused(lambda: conn.poll(dict(HOPEX_JOB), MGL), thief))


def test_simplemente_submit_with_the_presigned_url(hosts):
    thief, api = hosts
    conn = build_connector("simplemente", settings_for("simplemente", api.url, secret=SECRET))
    ctx = StepContext(source=BytesSource(b"\"a\";\"b\"\r\n\"1\";\"2\"\r\n", name="x.csv"), options={"flux": "F"},
                      presign=lambda seconds: PRESIGNED)
    assert_refused(lambda: conn.submit(ctx), thief)


def test_simplemente_status_call(hosts):
    thief, api = hosts
    conn = build_connector("simplemente", settings_for("simplemente", api.url, secret=SECRET))
    ctx = StepContext(source=BytesSource(b"\"a\";\"b\"\r\n\"1\";\"2\"\r\n", name="x.csv"), options={"flux": "F"})
    job = {"guid": "0f8fad5b-d9cb-469f-a165-70867728950e", "polls": 0, "flux": "F"}
    assert_refused(lambda: conn.poll(job, ctx), thief)


def test_ims_token_call_for_campaign(hosts):
    thief, api = hosts
    conn = campaign(api.url, client_secret=SECRET)
    assert "Adobe IMS token request" in str(assert_refused(lambda: conn.submit(TRIGGER), thief))


def test_campaign_api_call_with_the_bearer_token(hosts):
    thief, api = hosts
    api.routes["/ims/"] = b'{"access_token": "ims-token-123456", "expires_in": 86399}'
    assert_refused(lambda: campaign(api.url).submit(TRIGGER), thief)


def refused_while_sending(conn, ctx, thief):
    """Submit then poll a record vendor (the poll sends): the first secret-bearing call is refused."""
    with pytest.raises(RedirectRefused) as err:
        conn.poll(conn.submit(ctx).job, ctx)
    assert "another host, http://localhost" in str(err.value)
    assert thief.seen == []
    return err.value


NDJSON = StepContext(source=BytesSource(b'{"a": 1}\n', name="x.ndjson"))
ACCOUNTS = StepContext(source=BytesSource(b'<?xml version="1.0"?><Data><Account><Name>A</Name></Account></Data>',
                                          name="accounts.xml"))


def test_ims_token_call_for_aep(hosts):
    thief, api = hosts
    settings = settings_for("aep", api.url, authenticated=True)
    settings["ims"] = {**settings["ims"], "token_url": api.url + "/ims/token/v3", "client_secret": SECRET}
    error = refused_while_sending(build_connector("aep", settings), NDJSON, thief)
    assert "Adobe IMS token request" in str(error)


def test_aep_inlet_call(hosts):
    thief, api = hosts
    refused_while_sending(build_connector("aep", settings_for("aep", api.url)), NDJSON, thief)


def test_cirrus_auth_call(hosts):
    thief, api = hosts
    conn = build_connector("cirrus", settings_for("cirrus", api.url, password=SECRET))
    assert "Cirrus Shield sign-in" in str(refused_while_sending(conn, ACCOUNTS, thief))


def test_cirrus_data_call_with_the_token_in_its_url(hosts):
    thief, api = hosts
    api.routes["/RestApi/AuthToken"] = b'"cirrus-token-123456"'
    refused_while_sending(build_connector("cirrus", settings_for("cirrus", api.url, password=SECRET)), ACCOUNTS, thief)
    assert [s.path.split("?")[0] for s in api.seen] == ["/RestApi/AuthToken", "/RestApi/DataAction/Account"]


# -- HOPEX: a large rejects file is streamed to S3 in parts, never held whole ---------------------------

def _rejects_lines(n, encoding="utf-8"):
    for i in range(1, n + 1):
        yield f"Ligne {i} : métaclasse inconnue « Org-Unit-{i:07d} » dans la commande .Create\r\n".encode(encoding)


def _serve_hopex_with_rejects(n_lines, encoding="utf-8"):
    def respond(h, seen):
        if seen.path.endswith("/rejects"):
            h.send_response(200)
            h.send_header("Content-Type", "text/plain")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            batch = []
            for line in _rejects_lines(n_lines, encoding):
                batch.append(line)
                if len(batch) == 1000:
                    block = b"".join(batch)
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                    batch = []
            if batch:
                block = b"".join(batch)
                h.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
            h.wfile.write(b"0\r\n\r\n")
            return
        status = {"job_status": "TERMINATED",
                  "job_info": {"reason": "DONE", "rejects": True, "rejects_file_name": "big_rejects.txt"}}
        hostile.answer(h, 200, json.dumps(status).encode(), {"Content-Type": "application/json"})
    return hostile.serve(respond)


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252"])
def test_hopex_large_rejects_file_is_staged_in_parts_with_bounded_memory(encoding):
    import hashlib
    import tracemalloc

    n_lines = 250_000  # about 21 MB
    server = _serve_hopex_with_rejects(n_lines, encoding)
    try:
        conn = hopex(server.url, {"timeout_seconds": 120}, type="basic")
        seen = {"rows": 0, "first": None, "last": None, "parts": [], "raw": hashlib.sha256(), "fmt": None}

        def emit(part_id, rows, raw=None, fmt=None):
            seen["parts"].append(part_id)
            seen["rows"] += len(rows)
            if rows:
                seen["first"] = seen["first"] or rows[0]
                seen["last"] = rows[-1]
            if raw:
                seen["raw"].update(raw)
            seen["fmt"] = fmt

        ctx = StepContext(source=BytesSource(b"data", name="model.mgl"), emit_rejects=emit)
        job = {"job_id": "J9", "mode": "import", "validate": "Standard", "polls": 0}
        tracemalloc.start()
        progress = conn.poll(job, ctx)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        server.close()
    expected = hashlib.sha256()
    for line in _rejects_lines(n_lines, encoding):
        expected.update(line)
    assert progress.done and progress.counts["rejected"] == 250_000 and progress.rejects == []
    assert seen["rows"] == 250_000
    assert (seen["first"].record, seen["first"].reason) == (
        "1", "Ligne 1 : métaclasse inconnue « Org-Unit-0000001 » dans la commande .Create")
    assert seen["last"].record == "250000"
    assert seen["raw"].hexdigest() == expected.hexdigest()  # the raw file byte for byte
    assert seen["fmt"].name == "model.mgl.rejects.txt"
    assert seen["parts"] == sorted(seen["parts"]) and len(seen["parts"]) >= 5
    # the file is 21 MB: held whole, decoded and split (reject_rows on the content) it takes 101 MB;
    # streamed, about 8 MB
    # (the 4 MB in-memory spool, copied once when it rolls over to disk, and one 1 MB part)
    assert peak < 12 * 1024 * 1024


# -- AEP flow runs: counts read as AEP wrote them ---------------------------------------------------------

def test_aep_run_counts_are_read_as_written_and_a_missing_one_is_not_zero():
    runs = {"items": [
        {"updatedAt": 2_000, "metrics": {"recordSummary": {"outputRecordCount": "1,234", "failedRecordCount": 2}}},
        {"updatedAt": 2_000, "metrics": {"recordSummary": {"outputRecordCount": None}}},
        {"updatedAt": 500, "metrics": {"recordSummary": {"outputRecordCount": 99, "failedRecordCount": 0}}},
    ]}

    def respond(h, seen):
        body = {"access_token": "ims-token-123456", "expires_in": 86399} if seen.path.startswith("/ims") else runs
        hostile.answer(h, 200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    server = hostile.serve(respond)
    try:
        settings = settings_for("aep", server.url, platform_base_url=server.url, verify_flow_runs=True,
                                verify_timeout_seconds=1)
        settings["ims"] = {**settings["ims"], "token_url": server.url + "/ims/token/v3"}
        conn = build_connector("aep", settings)
        job = {"started_ms": 1_000, "send_ended_ms": 0, "counts": {
            "records": 1236, "sent": 1236, "accepted": 1236, "rejected": 0, "requests": 3}}
        progress = conn._verify(job, StepContext(source=BytesSource(b"{}", name="x.ndjson")))
    finally:
        server.close()
    assert progress.done
    assert (progress.counts["ingested"], progress.counts["failed_ingestion"], progress.counts["uncounted_runs"]) \
        == (1234, 2, 1)
    assert "the dataflow runs show 1,234 records ingested and 2 failed (1 run gave no record count: " \
           "those records are not counted)" in progress.message


def test_hopex_import_redirected_to_an_sso_sign_in_page_says_so():
    idp = hostile.serve(lambda h, seen: hostile.answer(h, 200, b"<html><form>Sign in</form></html>"))
    api = hostile.serve(hostile.redirect_to(idp.url + "/adfs/ls/?wa=wsignin1.0", 302))
    try:
        with pytest.raises(RedirectRefused) as err:
            hopex(api.url, type="basic", password=SECRET).submit(MGL)
    finally:
        idp.close()
        api.close()
    port = idp.url.rsplit(":", 1)[1]
    assert str(err.value).startswith(
        f"HOPEX import of x.mgl: the call was redirected to a sign-in page at http://127.0.0.1:{port} "
        "(HTTP 302)")
    assert idp.seen == []


def test_hopex_status_trickling_stops_at_timeout_seconds():
    import time

    server = hostile.serve(hostile.trickle(0.5, 200))
    try:
        conn = hopex(server.url, {"timeout_seconds": 2}, type="basic")
        started = time.monotonic()
        with pytest.raises(VendorUnavailableError, match="did not answer within 2 s"):
            conn.poll(dict(HOPEX_JOB), MGL)
        assert time.monotonic() - started < 4
    finally:
        server.close()


def test_aep_provisioning_calls(hosts):
    from vendor_import.connectors.aep_provision import Provisioner, load_provision_settings

    thief, api = hosts
    api.routes["/ims/"] = b'{"access_token": "ims-token-123456", "expires_in": 86399}'
    doc = json.loads((ROOT / "events" / "settings" / "aep-provision.example.json").read_text())
    doc.update({"platform_base_url": api.url, "allow_http": True, "timeout_seconds": 5})
    doc["ims"] = {**doc["ims"], "token_url": api.url + "/ims/token/v3", "client_secret": SECRET}
    provisioner = Provisioner(load_provision_settings(doc), log=lambda line: None)
    assert_refused(provisioner.run, thief)
