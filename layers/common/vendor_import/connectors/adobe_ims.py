"""Adobe IMS OAuth server-to-server token client (shared by the Campaign and AEP connectors).

``ImsTokenProvider(session, token_url=..., client_id=..., client_secret=..., scopes=...)``:

* ``token()`` returns an access token, fetched with the client_credentials grant (a form POST
  to the IMS v3 token endpoint) and cached until 5 minutes before ``expires_in``;
* ``invalidate()`` forgets it, so the next ``token()`` fetches a new one (call it once on a
  401 from the API, then retry the call once).

IMS v3 answers ``{"access_token": "...", "token_type": "bearer", "expires_in": 86399}`` with
``expires_in`` in seconds (the retired JWT exchange answered milliseconds: very large values
are read as milliseconds). Scopes are a comma-separated string or a list; IMS wants them
comma-separated in one ``scope`` form field.

The client secret and the tokens are registered with ``scrub`` so no message ever shows them.
The token lives in the provider, one per connector: the vendor step keeps one connector per
(vendor, target), so each target of a settings document has its own token (never a shared one).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import requests

from ..errors import VendorAuthError, VendorProtocolError
from ..http import body_snippet, json_body, raise_for_status, request
from ..scrub import register_secret, scrub

DEFAULT_TOKEN_URL = "https://ims-na1.adobelogin.com/ims/token/v3"
# refresh this long before IMS says the token expires
REFRESH_MARGIN_SECONDS = 300
# IMS v3 tokens live 24 h; anything above this many "seconds" is the old milliseconds form
_MAX_PLAUSIBLE_SECONDS = 30 * 24 * 3600


def normalise_scopes(scopes: str | Iterable[str] | None) -> str:
    """'openid, AdobeID' or ['openid', 'AdobeID'] -> 'openid,AdobeID' (IMS's form)."""
    if scopes is None:
        return ""
    parts = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    return ",".join(p.strip() for p in parts if p and p.strip())


class ImsTokenProvider:
    """Fetches and caches one IMS access token for one technical account (thread-safe)."""

    def __init__(self, session: requests.Session, *, token_url: str = DEFAULT_TOKEN_URL,
                 client_id: str, client_secret: str, scopes: str | Iterable[str] | None,
                 clock: Callable[[], float] = time.time):
        self._session = session
        self.token_url = token_url or DEFAULT_TOKEN_URL
        self.client_id = client_id
        self._client_secret = client_secret
        self.scopes = normalise_scopes(scopes)
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        # how many tokens were fetched (tests and logs: "one token call across the job")
        self.fetch_count = 0
        register_secret(client_secret)

    @classmethod
    def from_settings(cls, session: requests.Session, ims: Mapping[str, Any],
                      **kwargs: Any) -> ImsTokenProvider:
        """Build from a settings ``ims`` object {token_url, client_id, client_secret, scopes}."""
        return cls(session, token_url=ims.get("token_url") or DEFAULT_TOKEN_URL,
                   client_id=ims["client_id"], client_secret=ims["client_secret"],
                   scopes=ims.get("scopes"), **kwargs)

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None
            self._refresh_at = 0.0

    # -- internals -------------------------------------------------------------------------
    def _fetch(self) -> None:
        what = "Adobe IMS token request"
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._client_secret,
        }
        if self.scopes:
            form["scope"] = self.scopes
        resp = request(self._session, "POST", self.token_url, what=what, data=form,
                       headers={"Accept": "application/json"})
        self.fetch_count += 1
        if resp.status_code in (400, 401, 403):
            # IMS says invalid_client / invalid_scope / unauthorized_client with a 400 or 401
            raise VendorAuthError(
                f"{what}: Adobe IMS refused the client credentials (HTTP {resp.status_code}) "
                f"{_ims_error(resp)}. Check ims.client_id, ims.client_secret and ims.scopes "
                "against the OAuth Server-to-Server credential in the Adobe Developer Console."
            )
        raise_for_status(resp, what)
        body = json_body(resp, what)
        access_token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(access_token, str) or not access_token:
            raise VendorProtocolError(f"{what}: Adobe IMS answered without an access_token")
        register_secret(access_token)
        lifetime = _lifetime_seconds(body.get("expires_in"))
        self._token = access_token
        # a token shorter-lived than the margin is used at most once, never cached stale
        self._refresh_at = self._clock() + max(lifetime - REFRESH_MARGIN_SECONDS, 0)


def _lifetime_seconds(expires_in: Any) -> float:
    try:
        value = float(expires_in)
    except (TypeError, ValueError):
        return 3600.0  # not said: assume an hour, refreshed 5 minutes early
    if value > _MAX_PLAUSIBLE_SECONDS:
        value /= 1000.0
    return max(value, 0.0)


def _ims_error(resp: requests.Response) -> str:
    """IMS errors look like {"error": "invalid_client", "error_description": "..."}."""
    try:
        body = resp.json()
    except ValueError:
        return body_snippet(resp, 160)
    if isinstance(body, dict) and body.get("error"):
        desc = body.get("error_description")
        return scrub(f"{body['error']}" + (f": {desc}" if desc else ""))[:300]
    return body_snippet(resp, 160)
