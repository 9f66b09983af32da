"""The transport against hostile local servers: redirects, trickling and huge answers, TLS."""

from __future__ import annotations

import io
import time

import pytest
from vendor_import import http
from vendor_import.errors import (
    RedirectRefused,
    ResponseTooLarge,
    SettingsError,
    VendorUnavailableError,
)

from tests import hostile


@pytest.fixture
def servers():
    started = []

    def start(respond, **kw):
        server = hostile.serve(respond, **kw)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def session(**settings):
    return http.new_session({"timeout_seconds": 2, **settings})


def test_a_post_redirected_to_another_host_never_reaches_it(servers):
    other = servers(lambda h, seen: hostile.answer(h, 200, b'{"access_token": "stolen"}'))
    first = servers(hostile.redirect_to(other.url + "/token", 307))
    with pytest.raises(RedirectRefused) as err:
        http.request(session(), "POST", first.url + "/token", what="token call",
                     data={"password": "hunter22", "client_secret": "s3cr3t"})
    assert other.seen == []
    assert len(first.seen) == 1 and b"hunter22" in first.seen[0].body
    assert "another host, http://127.0.0.1" in str(err.value)
    assert type(err.value).__name__ == "RedirectRefused"


def test_a_get_redirected_to_another_host_is_refused_too(servers):
    other = servers(lambda h, seen: hostile.answer(h, 200, b"{}"))
    # "localhost" is another host name than 127.0.0.1, though the same machine
    first = servers(hostile.redirect_to(other.url.replace("127.0.0.1", "localhost") + "/x", 302))
    with pytest.raises(RedirectRefused, match="another host, http://localhost"):
        http.request(session(), "GET", first.url + "/status", what="status",
                     headers={"Authorization": "Bearer tok123456"})
    assert other.seen == []


def test_a_get_redirected_on_the_same_host_is_followed(servers):
    def respond(h, seen):
        if seen.path == "/old":
            hostile.answer(h, 301, b"", {"Location": "/new"})
        else:
            hostile.answer(h, 200, b'{"ok": true}')
    server = servers(respond)
    resp = http.request(session(), "GET", server.url + "/old", what="status")
    assert resp.json() == {"ok": True}
    assert [s.path for s in server.seen] == ["/old", "/new"]


def test_a_post_answered_302_to_a_sign_in_page_says_so(servers):
    idp = servers(lambda h, seen: hostile.answer(h, 200, b"<html>Sign in</html>"))
    api = servers(hostile.redirect_to(idp.url + "/adfs/ls/?SAMLRequest=abc", 302))
    with pytest.raises(RedirectRefused) as err:
        http.request(session(), "POST", api.url + "/import", what="HOPEX import", data=b"x")
    assert "redirected to a sign-in page at http://127.0.0.1" in str(err.value)
    assert idp.seen == []


def test_the_timeout_bounds_a_trickling_answer(servers):
    server = servers(hostile.trickle(0.5, 200))
    started = time.monotonic()
    with pytest.raises(VendorUnavailableError, match="did not answer within 2 s"):
        http.request(session(), "GET", server.url + "/status", what="status")
    assert time.monotonic() - started < 4  # 2 s bound; the trickle would last 100 s


def test_the_timeout_bounds_trickling_headers(servers):
    server = servers(hostile.trickle(0.5, 200, in_headers=True))
    started = time.monotonic()
    with pytest.raises(VendorUnavailableError, match="did not answer within 2 s"):
        http.request(session(), "POST", server.url + "/submit", what="submit", data=b"{}")
    assert time.monotonic() - started < 4


def test_an_answer_over_the_bound_is_refused_while_read(servers):
    server = servers(hostile.huge(3 * 1024 * 1024, declare_length=False))
    with pytest.raises(ResponseTooLarge) as err:
        http.request(session(max_answer_bytes={"api": 1024 * 1024}), "GET", server.url, what="status")
    assert str(err.value) == ("status: the vendor's answer is larger than 1,048,576 bytes "
                              "(setting max_answer_bytes.api)")


def test_a_declared_length_over_the_bound_is_refused_before_reading(servers):
    server = servers(hostile.huge(20 * 1024 * 1024))
    with pytest.raises(ResponseTooLarge, match="16,777,216 bytes"):
        http.request(session(), "GET", server.url, what="status")


def test_an_answer_within_the_bound_is_read_whole(servers):
    server = servers(hostile.huge(100_000, declare_length=False))
    resp = http.request(session(), "GET", server.url, what="status")
    assert len(resp.content) == 100_000


def test_download_streams_to_a_file_with_its_own_bound(servers):
    server = servers(hostile.huge(300_000, declare_length=False))
    sink = io.BytesIO()
    http.download_to(session(), server.url, sink, what="rejects")
    assert sink.tell() == 300_000
    with pytest.raises(ResponseTooLarge, match=r"max_answer_bytes\.rejects"):
        http.download_to(session(max_answer_bytes={"rejects": 200_000}), server.url, io.BytesIO(), what="rejects")


@pytest.fixture(scope="module")
def tls():
    return hostile.self_signed_tls()


def test_an_untrusted_certificate_fails_at_once_naming_the_setting(servers, tls):
    ctx, _pem = tls
    server = servers(lambda h, seen: hostile.answer(h, 200, b"{}"), tls=ctx)
    with pytest.raises(SettingsError) as err:
        http.request(session(), "GET", server.url + "/status", what="status")
    assert "ca_bundle_pem" in str(err.value) and "not retried" in str(err.value)
    assert not err.value.transient
    assert server.handshakes == 1  # not retried by urllib3 either


def test_the_ca_bundle_setting_trusts_an_internal_ca(servers, tls):
    ctx, pem = tls
    server = servers(lambda h, seen: hostile.answer(h, 200, b'{"ok": 1}'), tls=ctx)
    resp = http.request(session(ca_bundle_pem=pem), "GET", server.url + "/status", what="status")
    assert resp.json() == {"ok": 1}


def test_a_ca_bundle_that_is_not_pem_is_a_settings_error():
    with pytest.raises(SettingsError, match="ca_bundle_pem must hold PEM certificates"):
        session(ca_bundle_pem="not a certificate")
