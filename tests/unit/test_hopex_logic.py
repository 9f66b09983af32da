"""HOPEX connector: pure logic (status reading, rejects parsing, names, URLs, settings)."""

from __future__ import annotations

import codecs
import io
import json
from pathlib import Path

import pytest
from vendor_import.connectors import build_connector, load_settings, validate_options
from vendor_import.connectors.base import StepContext
from vendor_import.connectors.hopex import (
    MAX_FILE_BYTES,
    SizedReader,
    check_file,
    decode_text,
    job_id_from,
    read_status,
    reject_rows,
    rejects_name,
    repository_url,
)
from vendor_import.errors import InputError, SettingsError, VendorProtocolError
from vendor_import.source import BytesSource

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "events" / "settings" / "hopex.example.json"


def settings(**overrides):
    doc = json.loads(EXAMPLE.read_text())
    doc.update(overrides)
    return load_settings("hopex", doc)


# -- job status -------------------------------------------------------------------------------------

def test_running_status():
    verdict = read_status({"job_status": "RUNNING", "job_info": None})
    assert verdict.running and not verdict.failure


def test_done_without_rejects():
    verdict = read_status({"job_status": "TERMINATED", "job_info": {"reason": "DONE", "rejects": False}})
    assert not verdict.running and not verdict.failure and not verdict.rejects


def test_done_with_rejects_keeps_the_file_name():
    verdict = read_status({"job_status": "TERMINATED", "job_info": {
        "reason": "DONE", "rejects": True, "rejects_file_name": "x_rejects.mgr"}})
    assert verdict.rejects and verdict.rejects_file_name == "x_rejects.mgr"


def test_rejects_flag_given_as_text():
    assert read_status({"job_status": "TERMINATED", "job_info": {"reason": "DONE", "rejects": "true"}}).rejects
    assert not read_status({"job_status": "TERMINATED",
                            "job_info": {"reason": "DONE", "rejects": "false"}}).rejects


@pytest.mark.parametrize("status, expected", [
    ({"job_status": "TERMINATED", "job_info": {"reason": "ERROR", "errmsg": "Does not work!!!"}},
     "reason 'ERROR'"),
    ({"job_status": "TERMINATED", "job_info": None}, "reason None"),
    ({"job_status": "ABORTED", "job_info": {"why": "admin"}}, "job_status 'ABORTED'"),
])
def test_undocumented_status_or_reason_is_a_failure_quoting_job_info(status, expected):
    verdict = read_status(status)
    assert expected in verdict.failure
    assert json.dumps(status["job_info"])[:20] in verdict.failure


@pytest.mark.parametrize("status", [None, [], "RUNNING", {"job_info": None}, {"job_status": 3}])
def test_status_without_job_status_is_a_protocol_error(status):
    with pytest.raises(VendorProtocolError):
        read_status(status)


def test_long_job_info_is_cut():
    verdict = read_status({"job_status": "TERMINATED", "job_info": {"reason": "ERROR", "errmsg": "x" * 5000}})
    assert len(verdict.failure) < 700


# -- rejects ----------------------------------------------------------------------------------------

def test_one_reject_row_per_non_empty_line_numbered_in_the_rejects_file():
    rows = reject_rows(b"line 3: unknown metaclass\r\n\r\n   \nline 9: bad link\rlast")
    assert [(r.record, r.reason) for r in rows] == [
        ("1", "line 3: unknown metaclass"), ("4", "line 9: bad link"), ("5", "last")]


def test_empty_rejects_file_has_no_rows():
    assert reject_rows(b"") == []


@pytest.mark.parametrize("encoded", [
    codecs.BOM_UTF8 + "Désignation refusée".encode(),
    "Désignation refusée".encode("utf-16"),
    "Désignation refusée".encode("cp1252"),
    "Désignation refusée".encode(),
])
def test_rejects_text_in_any_hopex_encoding(encoded):
    assert decode_text(encoded) == "Désignation refusée"


@pytest.mark.parametrize("rejects_file_name, expected", [
    ("import_rejects.mgr", "in.mgl.rejects.mgr"),
    ("C:\\Temp\\HOPEX\\job.rej", "in.mgl.rejects.rej"),
    ("/tmp/x.y/rejects", "in.mgl.rejects"),
    (None, "in.mgl.rejects"),
    (".hidden", "in.mgl.rejects"),
    ("weird.e$x", "in.mgl.rejects"),
])
def test_raw_rejects_name(rejects_file_name, expected):
    assert rejects_name("in.mgl", rejects_file_name) == expected


# -- ids and URLs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("body, location, expected", [
    ({"job_id": "abc"}, None, "abc"),
    ({"job_id": 42}, "/import/job/other", "42"),
    (None, "/import/job/j%28b%29", "j(b)"),
    ({}, "https://h/restapi/v1/environments/e/import/job/xyz?x=1", "xyz"),
    (None, None, None),
    ({"job_id": ""}, "/elsewhere", None),
])
def test_job_id_from_body_or_location(body, location, expected):
    assert job_id_from(body, location) == expected


def test_repository_url_percent_encodes_every_id():
    url = repository_url(settings(api_path="HOPEXAPI/restapi/v1/", environment_id="a(b", repository_id="c)d",
                                  profile_id="e/f g"))
    assert url == ("https://hopex.example.com/HOPEXAPI/restapi/v1/environments/a%28b/repositories/c%29d"
                   "/profiles/e%2Ff%20g")


# -- local checks -------------------------------------------------------------------------------

def test_file_of_exactly_30_mb_passes_one_more_byte_does_not():
    class Sized:
        name = "big.mgr"

        def __init__(self, size):
            self.size = size

    check_file(Sized(MAX_FILE_BYTES))
    with pytest.raises(InputError, match="split it"):
        check_file(Sized(MAX_FILE_BYTES + 1))


def test_sized_reader_streams_at_most_the_announced_size():
    reader = SizedReader(io.BytesIO(b"abcdefgh"), 5, "f.mgl")
    assert reader.len == 5
    assert reader.read(3) == b"abc" and reader.len == 2
    assert reader.read() == b"de" and reader.len == 0
    assert reader.read() == b""


def test_sized_reader_refuses_a_stream_shorter_than_announced():
    reader = SizedReader(io.BytesIO(b"ab"), 5, "f.mgl")
    reader.read(2)
    with pytest.raises(InputError, match="ended 3 bytes before"):
        reader.read(3)


# -- settings and options -----------------------------------------------------------------------

def test_example_settings_validate_with_defaults():
    loaded = settings()
    assert loaded["auth"]["type"] == "uas"
    assert loaded["validate"] == "Standard" and loaded["validate_as"] == "form"
    assert loaded["sync_import_max_bytes"] == 0 and loaded["api_path"] == "/restapi/v1"


def test_uas_defaults():
    loaded = settings(auth={"type": "uas", "username": "u", "password": "p4ssword"})
    assert loaded["auth"]["client_id"] == "HopexAPI"
    assert loaded["auth"]["client_secret"] == "secret"
    assert loaded["auth"]["scope"] == "hopex openid read write"
    connector = build_connector("hopex", loaded)
    assert connector._uas_url == "https://hopex.example.com/UAS/connect/token"
    assert connector._environment == "rCE(taFnUXDC"


def test_auth_environment_overrides_the_top_level_one():
    loaded = settings(auth={"type": "basic", "username": "u", "password": "p4ssword", "environment_id": "X"})
    assert build_connector("hopex", loaded)._auth_headers()["HopexEnvironment"] == "X"


def test_plain_http_uas_url_needs_allow_http():
    doc = {"type": "uas", "username": "u", "password": "p4ssword", "uas_url": "http://uas.local/connect/token"}
    with pytest.raises(SettingsError, match="auth.uas_url"):
        build_connector("hopex", settings(auth=doc))
    build_connector("hopex", settings(auth=doc, allow_http=True))


@pytest.mark.parametrize("doc, field", [
    ({"validate": "Sometimes"}, "validate"),
    ({"validate_as": "json"}, "validate_as"),
    ({"auth": {"type": "oauth", "username": "u", "password": "p4ssword"}}, "auth.type"),
    ({"auth": {"type": "basic", "username": "u"}}, "auth.password"),
    ({"auth": {"type": "basic", "username": "u", "password": "p4ssword", "basic_scheme": "Digest"}},
     "auth.basic_scheme"),
    ({"sync_import_max_bytes": -1}, "sync_import_max_bytes"),
])
def test_bad_settings_name_the_field(doc, field):
    with pytest.raises(SettingsError, match=field.replace(".", r"\.")):
        settings(**doc)


def test_validate_option_is_checked_and_case_insensitive_in_the_connector():
    assert validate_options("hopex", {"validate": "AtEnd"}) == {"validate": "AtEnd"}
    with pytest.raises(InputError, match="option validate"):
        validate_options("hopex", {"validate": "Later"})
    connector = build_connector("hopex", settings())
    assert connector._validate_value({"validate": "atendonsuccess"}) == "AtEndOnSuccess"
    assert connector._validate_value({}) == "Standard"
    with pytest.raises(InputError, match="validate=AtEnd"):
        connector.validate(StepContext(source=BytesSource(b".Validate\n"), options={"validate": "Later"}))


# -- answers the simulator does not give ---------------------------------------------------------

class StubSession:
    """Answers each request with the next prepared (status, body, headers)."""

    timeout_seconds = 5

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def request(self, method, url, **kwargs):
        import requests

        if kwargs.get("data") is not None and hasattr(kwargs["data"], "read"):
            kwargs["data"].read()  # consume the streamed body like a real transport
        self.calls.append((method, url))
        status, body, headers = self.answers.pop(0)
        resp = requests.Response()
        resp.status_code = status
        resp._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        resp.headers.update(headers)
        return resp


def basic_connector(session, **overrides):
    auth = {"type": "basic", "username": "u", "password": "p4ssword"}
    return build_connector("hopex", settings(auth=auth, **overrides), session=session)


def test_syncimport_running_without_a_job_id_is_a_protocol_error():
    session = StubSession((200, {"job_status": "RUNNING", "job_info": None}, {}))
    connector = basic_connector(session, sync_import_max_bytes=1000)
    with pytest.raises(VendorProtocolError, match="without a job_id"):
        connector.submit(StepContext(source=BytesSource(b".Validate\n", name="a.mgl")))


def test_syncimport_rejects_without_a_job_id_end_with_rejects_and_a_message():
    done = {"job_status": "TERMINATED", "job_info": {"reason": "DONE", "rejects": True,
                                                     "rejects_file_name": "a_rej.mgl"}}
    session = StubSession((200, done, {}))
    progress = basic_connector(session, sync_import_max_bytes=1000).submit(
        StepContext(source=BytesSource(b".Validate\n", name="a.mgl")))
    assert progress.state.value == "SUCCEEDED_WITH_REJECTS"
    assert "a_rej.mgl" in progress.message and len(session.calls) == 1


def test_rejects_sent_as_a_json_string_are_unwrapped():
    terminated = {"job_status": "TERMINATED", "job_info": {"reason": "DONE", "rejects": True}}
    session = StubSession((202, terminated, {}),
                          (200, "bad line 1\nbad line 2\n", {"Content-Type": "application/json"}))
    progress = basic_connector(session).poll(
        {"job_id": "j1", "mode": "import", "validate": "AtEndOnSuccess", "polls": 3},
        StepContext(source=BytesSource(b"x", name="a.mgl")))
    assert [r.reason for r in progress.rejects] == ["bad line 1", "bad line 2"]
    assert progress.raw_rejects == b"bad line 1\nbad line 2\n"
    assert progress.raw_rejects_format.content_type.startswith("text/plain")
    assert "saved nothing" in progress.message
    assert progress.counts == {"polls": 4, "rejected": 2}


def test_http_404_names_the_ids_to_check():
    from vendor_import.errors import VendorRejectedError

    session = StubSession((404, {"error": "not found"}, {}))
    with pytest.raises(VendorRejectedError, match="environment_id, repository_id, profile_id"):
        basic_connector(session).poll({"job_id": "gone", "validate": "Standard"},
                                      StepContext(source=BytesSource(b"x")))
