"""ImsTokenProvider: client_credentials form, caching until 5 minutes before expiry, errors."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
import requests
import responses
from vendor_import.connectors.adobe_ims import ImsTokenProvider, normalise_scopes
from vendor_import.errors import VendorAuthError, VendorProtocolError, VendorUnavailableError
from vendor_import.scrub import scrub

TOKEN_URL = "https://ims.example.test/ims/token/v3"
SECRET = "ims-unit-secret-5e1d"


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def provider(clock=None, scopes="openid, AdobeID ,campaign_sdk"):
    return ImsTokenProvider(requests.Session(), token_url=TOKEN_URL, client_id="cid",
                            client_secret=SECRET, scopes=scopes, clock=clock or Clock())


def token_reply(token="tok-1", expires_in=86399, status=200):
    return responses.Response(responses.POST, TOKEN_URL, status=status,
                              json={"access_token": token, "token_type": "bearer", "expires_in": expires_in})


@responses.activate
def test_client_credentials_form():
    responses.add(token_reply())
    assert provider().token() == "tok-1"
    call = responses.calls[0].request
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = {k: v[0] for k, v in parse_qs(call.body).items()}
    assert form == {"grant_type": "client_credentials", "client_id": "cid", "client_secret": SECRET,
                    "scope": "openid,AdobeID,campaign_sdk"}


@responses.activate
def test_cached_until_five_minutes_before_expiry():
    clock = Clock()
    responses.add(token_reply("tok-1", expires_in=3600))
    responses.add(token_reply("tok-2", expires_in=3600))
    ims = provider(clock)
    assert ims.token() == "tok-1"
    clock.now += 3600 - 301
    assert ims.token() == "tok-1"
    clock.now += 2  # now inside the 5-minute margin
    assert ims.token() == "tok-2"
    assert ims.fetch_count == 2


@responses.activate
def test_invalidate_fetches_a_new_token():
    responses.add(token_reply("tok-1"))
    responses.add(token_reply("tok-2"))
    ims = provider()
    assert ims.token() == "tok-1"
    ims.invalidate()
    assert ims.token() == "tok-2"


@responses.activate
def test_expires_in_milliseconds_is_understood():
    clock = Clock()
    responses.add(token_reply("tok-1", expires_in=86_399_000))  # the old JWT exchange's unit
    responses.add(token_reply("tok-2"))
    ims = provider(clock)
    ims.token()
    clock.now += 86_399 - 400
    assert ims.token() == "tok-1"
    clock.now += 200
    assert ims.token() == "tok-2"


@responses.activate
def test_short_lived_token_is_not_reused():
    responses.add(token_reply("tok-1", expires_in=60))
    responses.add(token_reply("tok-2", expires_in=60))
    ims = provider()
    assert ims.token() == "tok-1"
    assert ims.token() == "tok-2"


@responses.activate
@pytest.mark.parametrize("status", [400, 401])
def test_refused_credentials(status):
    responses.add(responses.POST, TOKEN_URL, status=status,
                  json={"error": "invalid_client", "error_description": "invalid client_secret parameter"})
    with pytest.raises(VendorAuthError) as exc:
        provider().token()
    assert "invalid_client: invalid client_secret parameter" in exc.value.message
    assert "ims.client_secret" in exc.value.message and SECRET not in exc.value.message


@responses.activate
def test_server_error_is_transient():
    responses.add(responses.POST, TOKEN_URL, status=503, body="down")
    with pytest.raises(VendorUnavailableError):
        provider().token()


@responses.activate
def test_answer_without_token():
    responses.add(responses.POST, TOKEN_URL, json={"token_type": "bearer"})
    with pytest.raises(VendorProtocolError, match="without an access_token"):
        provider().token()


@responses.activate
def test_secret_and_token_are_scrubbed():
    responses.add(token_reply("tok-secret-value-123"))
    provider().token()
    assert scrub(f"x {SECRET} y tok-secret-value-123") == "x *** y ***"


def test_normalise_scopes():
    assert normalise_scopes("a, b,,c ") == "a,b,c"
    assert normalise_scopes(["a", " b"]) == "a,b"
    assert normalise_scopes(None) == ""


def test_from_settings_defaults_the_token_url():
    ims = ImsTokenProvider.from_settings(requests.Session(), {"client_id": "c", "client_secret": "s3cr",
                                                               "scopes": "openid"})
    assert ims.token_url == "https://ims-na1.adobelogin.com/ims/token/v3"
