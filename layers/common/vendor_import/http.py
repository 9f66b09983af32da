"""One HTTP session per connector: timeouts on every call, urllib3 retries, named errors.

Connectors call ``request(...)``: it applies the settings' timeout, turns connection errors
and timeouts into VendorUnavailableError and never lets a URL with credentials through
unscrubbed. ``raise_for_status`` maps HTTP codes to the named errors.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .errors import (
    VendorAuthError,
    VendorProtocolError,
    VendorRejectedError,
    VendorThrottledError,
    VendorUnavailableError,
)
from .scrub import ScrubFilter, scrub

USER_AGENT = "s3-vendor-import/0.1"


# urllib3 and requests log full URLs (query strings with tokens, presigned signatures) at DEBUG:
# a filter on every logger that emits them (logger filters do not apply to child loggers' records).
_TRANSPORT_LOGGERS = ("urllib3", "urllib3.connectionpool", "urllib3.connection", "urllib3.poolmanager",
                      "urllib3.response", "urllib3.util.retry", "urllib3.http2.connection",
                      "urllib3.contrib.pyopenssl", "requests")
for _name in _TRANSPORT_LOGGERS:
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, ScrubFilter) for f in _logger.filters):
        _logger.addFilter(ScrubFilter())


# -- the retry budget of the HTTP layer (README "Retry budget") ------------------------------------
# One vendor call in one step invocation: the first request plus at most HTTP_RETRIES more, for
# idempotent calls (GET, HEAD) answered 429/502/503/504 and for connections that failed before
# anything was sent. A POST/PUT answered 5xx may have reached the vendor: never replayed here.
HTTP_RETRIES = 2
# Retry-After is honoured up to this many seconds inside a step (a Lambda run cannot wait
# longer); a longer pause is the state machine's retry interval.
RETRY_AFTER_MAX_SECONDS = 30.0

_counts = {"requests": 0, "retries": 0}
_counts_lock = threading.Lock()


def request_counts() -> tuple[int, int]:
    """(HTTP requests sent, of which retries) by this process so far: the vendor step reads it
    before and after each invocation to persist what the invocation really sent."""
    with _counts_lock:
        return _counts["requests"], _counts["retries"]


def count_request(retry: bool = False) -> None:
    """Count one request sent to a vendor (``retry``: it repeats an earlier one)."""
    with _counts_lock:
        _counts["requests"] += 1
        _counts["retries"] += int(retry)


def note_retry() -> None:
    """A connector's own retry loop is about to send a request again (the request itself is
    counted when it is sent)."""
    with _counts_lock:
        _counts["retries"] += 1


class BudgetRetry(Retry):
    """urllib3 Retry that counts every retry it sends and caps Retry-After."""

    def increment(self, *args: Any, **kwargs: Any) -> Retry:
        new = super().increment(*args, **kwargs)  # raises MaxRetryError past the budget
        count_request(retry=True)
        return new

    def get_retry_after(self, response: Any) -> float | None:
        value = super().get_retry_after(response)
        return None if value is None else min(max(0.0, value), RETRY_AFTER_MAX_SECONDS)


class _CountingAdapter(HTTPAdapter):
    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        count_request()  # the first request of the call; BudgetRetry counts the others
        return super().send(request, *args, **kwargs)


def new_session(settings: dict[str, Any], *, pool_size: int = 10) -> requests.Session:
    """A kept-alive session. Only connection failures and idempotent calls are retried here
    (POSTs that may have reached the vendor are never replayed by urllib3)."""
    session = requests.Session()
    retry = BudgetRetry(
        total=HTTP_RETRIES,
        connect=HTTP_RETRIES,
        read=0,
        status=HTTP_RETRIES,
        status_forcelist=(429, 502, 503, 504),
        allowed_methods=frozenset({"GET", "HEAD"}),
        backoff_factor=0.5,
        backoff_max=5,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    adapter = _CountingAdapter(max_retries=retry, pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.verify = bool(settings.get("verify_tls", True))
    session.timeout_seconds = float(settings.get("timeout_seconds", 30))  # type: ignore[attr-defined]
    return session


def request(session: requests.Session, method: str, url: str, *, what: str,
            **kwargs: Any) -> requests.Response:
    """Send a request with the session's timeout; transport failures become named errors."""
    kwargs.setdefault("timeout", getattr(session, "timeout_seconds", 30))
    try:
        return session.request(method, url, **kwargs)
    except requests.exceptions.Timeout:
        raise VendorUnavailableError(
            f"{what}: the vendor did not answer within {kwargs['timeout']} s"
        ) from None
    except requests.exceptions.SSLError as exc:
        raise VendorUnavailableError(f"{what}: TLS error talking to the vendor: {scrub(exc)}") from None
    except requests.exceptions.ConnectionError as exc:
        # urllib3 retries wrap a read timeout on a GET into a ConnectionError: say what it was
        if "Read timed out" in str(exc) or isinstance(getattr(exc.args[0] if exc.args else None, "reason", None),
                                                        urllib3.exceptions.ReadTimeoutError):
            raise VendorUnavailableError(
                f"{what}: the vendor did not answer within {kwargs['timeout']} s") from None
        raise VendorUnavailableError(f"{what}: cannot reach the vendor: {scrub(exc)}") from None
    except requests.exceptions.RequestException as exc:
        raise VendorProtocolError(f"{what}: {scrub(exc)}") from None


def body_snippet(resp: requests.Response, limit: int = 300) -> str:
    text = resp.text if resp.content else ""
    text = " ".join(text.split())
    return scrub(text[:limit] + ("..." if len(text) > limit else ""))


def raise_for_status(resp: requests.Response, what: str) -> None:
    """Map an HTTP error code to the named error; return quietly on 2xx."""
    code = resp.status_code
    if code < 400:
        return
    snippet = body_snippet(resp)
    if code in (401, 403):
        raise VendorAuthError(f"{what}: the vendor refused the credentials (HTTP {code}) {snippet}")
    if code == 429:
        raise VendorThrottledError(f"{what}: the vendor is throttling requests (HTTP 429)")
    if code >= 500:
        raise VendorUnavailableError(f"{what}: the vendor failed (HTTP {code}) {snippet}")
    raise VendorRejectedError(f"{what}: the vendor refused the request (HTTP {code}) {snippet}")


def json_body(resp: requests.Response, what: str) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise VendorProtocolError(
            f"{what}: expected JSON from the vendor, got: {body_snippet(resp, 120)}"
        ) from None
