"""One HTTP session per connector: timeouts on every call, urllib3 retries, named errors.

Connectors call ``request(...)``: it applies the settings' timeout, turns connection errors
and timeouts into VendorUnavailableError and never lets a URL with credentials through
unscrubbed. ``raise_for_status`` maps HTTP codes to the named errors.
"""

from __future__ import annotations

import copy
import heapq
import logging
import re
import socket
import ssl
import tempfile
import threading
import time
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .errors import (
    RedirectRefused,
    ResponseTooLarge,
    SettingsError,
    VendorAuthError,
    VendorProtocolError,
    VendorRejectedError,
    VendorThrottledError,
    VendorUnavailableError,
)
from .scrub import ScrubFilter, scrub
from .settings import ANSWER_FIELDS

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
    adapter = _GuardedAdapter(max_retries=retry, pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.verify = tls_verify(settings)
    session.timeout_seconds = float(settings.get("timeout_seconds", 30))  # type: ignore[attr-defined]
    session.max_answer_bytes = answer_limits(settings)  # type: ignore[attr-defined]
    return session


def request(session: requests.Session, method: str, url: str, *, what: str, kind: str = "api",
            **kwargs: Any) -> requests.Response:
    """Send one call and read its whole answer; transport failures become named errors.

    * ``timeout_seconds`` bounds the whole call (connect, send, headers, body, same-host redirects),
      not only the gap between two bytes: a watchdog shuts the socket down at the deadline.
    * The answer is read with a bound: ``max_answer_bytes[kind]`` (``api`` or ``rejects``), else
      ResponseTooLarge.
    * Redirects are never followed to another host (every call carries a secret: a header, a form
      body or a presigned URL): RedirectRefused names the target host. A POST/PUT/PATCH/DELETE is
      never redirected at all (a 302 to a sign-in page says so).
    """
    timeout = float(kwargs.pop("timeout", getattr(session, "timeout_seconds", 30)))
    limit = int(kwargs.pop("max_bytes", None) or _limit_for(session, kind))
    kwargs.pop("allow_redirects", None)
    kwargs.pop("stream", None)
    call = _Call(timeout)
    try:
        with call:
            resp = _send_following(session, call, method, url, what, kwargs)
            _read_bounded(resp, limit, what, kind)
            return resp
    except (RedirectRefused, ResponseTooLarge):
        raise
    except requests.exceptions.Timeout:
        raise VendorUnavailableError(f"{what}: the vendor did not answer within {timeout:g} s") from None
    except requests.exceptions.SSLError as exc:
        raise _tls_error(what, exc) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.HTTPError, OSError) as exc:
        # the watchdog shut the socket: whatever the transport says then, it was the deadline
        if call.expired or "Read timed out" in str(exc) or isinstance(
                getattr(exc.args[0] if exc.args else None, "reason", None), urllib3.exceptions.ReadTimeoutError):
            raise VendorUnavailableError(f"{what}: the vendor did not answer within {timeout:g} s") from None
        raise VendorUnavailableError(f"{what}: cannot reach the vendor: {scrub(exc)}") from None
    except requests.exceptions.RequestException as exc:
        raise VendorProtocolError(f"{what}: {scrub(exc)}") from None



def direct_post(session: requests.Session, pool: Any, url: str, path: str, body: bytes,
                headers: dict[str, str], *, what: str, kind: str = "api") -> requests.Response:
    """POST through a urllib3 pool the caller holds (a hot path that skips requests' per-call
    work), under the same rules as ``request``: the whole call bounded by ``timeout_seconds``, the
    answer read with the ``max_answer_bytes[kind]`` bound, no redirect followed (RedirectRefused
    names the target), an untrusted certificate a SettingsError. Returns a ``requests.Response``."""
    timeout = float(getattr(session, "timeout_seconds", 30))
    limit = _limit_for(session, kind)
    call = _Call(timeout)
    count_request()
    try:
        with call:
            raw = pool.urlopen("POST", path, body=body, headers=headers, retries=False, redirect=False,
                               timeout=urllib3.Timeout(connect=call.remaining(), read=call.remaining()),
                               preload_content=False, assert_same_host=False)
            try:
                declared = raw.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > limit:
                    raise _too_large(what, kind, limit)
                data = raw.read(limit + 1)
                if len(data) > limit:
                    raise _too_large(what, kind, limit)
            finally:
                raw.release_conn()
    except ResponseTooLarge:
        raise
    except urllib3.exceptions.SSLError as exc:
        raise _tls_error(what, exc) from None
    except (urllib3.exceptions.TimeoutError, urllib3.exceptions.HTTPError, OSError) as exc:
        if call.expired or isinstance(exc, urllib3.exceptions.TimeoutError) and not isinstance(
                exc, urllib3.exceptions.NewConnectionError):
            raise VendorUnavailableError(f"{what}: the vendor did not answer within {timeout:g} s") from None
        raise VendorUnavailableError(f"{what}: cannot reach the vendor: {scrub(exc)}") from None
    location = raw.headers.get("Location")
    if 300 <= raw.status < 400 and location:
        _check_redirect("POST", url, urljoin(url, location), raw.status, what)  # always refuses a POST
    resp = requests.Response()
    resp.status_code = raw.status
    resp._content = data  # noqa: SLF001 - a Response built as requests' adapter builds it
    resp.headers = requests.structures.CaseInsensitiveDict(raw.headers)
    resp.encoding = requests.utils.get_encoding_from_headers(resp.headers)
    resp.url = url
    return resp

# -- whole-call deadline ------------------------------------------------------------------------------
_current = threading.local()


class _Call:
    """The deadline of one ``request``: the pool hands it each connection it lends, and the
    watchdog shuts that connection's socket down when the deadline passes (requests' own timeout
    is per socket operation, so an answer trickling one byte at a time would never end)."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.expired = False
        self.finished = False
        self._conns: list[Any] = []
        self._lock = threading.Lock()

    def __enter__(self) -> _Call:
        self._outer = getattr(_current, "call", None)
        _current.call = self
        _WATCHDOG.watch(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self.finished = True
            self._conns.clear()
        _current.call = self._outer

    def remaining(self) -> float:
        return max(self.deadline - time.monotonic(), 0.001)

    def attach(self, conn: Any) -> None:
        with self._lock:
            self._conns.append(conn)
            expired = self.expired
        if expired:
            _shut(conn)

    def expire(self) -> None:
        with self._lock:
            if self.finished:
                return
            self.expired = True
            conns = list(self._conns)
        for conn in conns:
            _shut(conn)


class _Watchdog:
    """One daemon thread for every call's deadline (a timer thread per call costs ~200 us).

    It is woken only for a deadline earlier than its next wake-up; otherwise it wakes by itself at
    least every IDLE_WAKE seconds, so a call with a longer timeout costs no thread switch (waking it
    for each call was ~20-40 us of CPU per call: bench/cirrus_throughput.py)."""

    IDLE_WAKE = 1.0

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Call]] = []
        self._cond = threading.Condition()
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._waiting_until = 0.0  # when the thread wakes next by itself (monotonic seconds)

    def watch(self, call: _Call) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (call.deadline, self._seq, call))
            if self._thread is None or not self._thread.is_alive():
                self._waiting_until = 0.0
                self._thread = threading.Thread(target=self._run, name="http-deadlines", daemon=True)
                self._thread.start()
            elif call.deadline < self._waiting_until:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].finished:
                    heapq.heappop(self._heap)  # ended in time: nothing to do
                now = time.monotonic()
                # at least once a second: the calls that ended meanwhile leave the heap
                wait = min(self._heap[0][0] - now, self.IDLE_WAKE) if self._heap else self.IDLE_WAKE
                if wait > 0:
                    self._waiting_until = now + wait
                    self._cond.wait(wait)
                    continue
                call = heapq.heappop(self._heap)[2]
            call.expire()


_WATCHDOG = _Watchdog()


def _shut(conn: Any) -> None:
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed: nothing left to stop


class _WatchedPool:
    """Connection pool mixin: every connection lent during a ``request`` is attached to its call."""

    def _get_conn(self, timeout: float | None = None):  # type: ignore[no-untyped-def]
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        call = getattr(_current, "call", None)
        if call is not None:
            call.attach(conn)
        return conn


class _WatchedHTTPPool(_WatchedPool, urllib3.HTTPConnectionPool):
    pass


class _WatchedHTTPSPool(_WatchedPool, urllib3.HTTPSConnectionPool):
    pass


class _CertAwareRetry(BudgetRetry):
    """urllib3's Retry, except that a certificate the client does not trust fails at once: it
    will not be trusted on the next attempt either."""

    def increment(self, method=None, url=None, response=None, error=None, _pool=None,  # type: ignore[no-untyped-def]
                  _stacktrace=None):
        if error is not None and _is_cert_error(str(error)):
            raise urllib3.exceptions.MaxRetryError(_pool, url, error) from error
        return super().increment(method, url, response, error, _pool, _stacktrace)


class _GuardedAdapter(_CountingAdapter):
    """The session's adapter: whole-call deadlines (watched pools), certificate errors not retried."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        retry = copy.copy(self.max_retries)
        retry.__class__ = _CertAwareRetry  # same settings (new() keeps the class)
        self.max_retries = retry

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


# -- redirects ----------------------------------------------------------------------------------------
MAX_REDIRECTS = 5
# paths of identity providers' sign-in pages (SAML/OIDC/ADFS/Azure AD/Okta/Keycloak...)
_SIGN_IN = re.compile(r"(?i)(log-?in|log-?on|sign-?in|/sso\b|saml|oauth|openid|authorize|/adfs/|/auth\b|/idp/|cas/)")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _send_following(session: requests.Session, call: _Call, method: str, url: str, what: str,
                    kwargs: dict[str, Any]) -> requests.Response:
    """Send; follow a redirect only to the same host (GET/HEAD), refuse the others."""
    current = url
    # given per call: a REQUESTS_CA_BUNDLE in the environment would override the session's (requests #3829)
    kwargs.setdefault("verify", getattr(session, "verify", True))
    for _hop in range(MAX_REDIRECTS + 1):
        resp = session.request(method, current, allow_redirects=False, stream=True,
                               timeout=call.remaining(), **kwargs)
        location = resp.headers.get("Location") if resp.is_redirect else None
        if location is None:
            return resp
        target = urljoin(current, location)
        resp.close()
        _check_redirect(method, current, target, resp.status_code, what)
        current = target
        kwargs = {k: v for k, v in kwargs.items() if k != "params"}  # the Location carries the query
    raise RedirectRefused(f"{what}: the vendor redirected the call more than {MAX_REDIRECTS} times")


def _check_redirect(method: str, current: str, target: str, code: int, what: str) -> None:
    scheme, host, port = _origin(target)
    default_port = {"https": 443, "http": 80}.get(scheme)
    where = (f"{scheme}://{host}" + (f":{port}" if port != default_port else "")) if host else scrub(target)[:200]
    if _SIGN_IN.search(urlsplit(target).path + "?" + urlsplit(target).query):
        raise RedirectRefused(
            f"{what}: the call was redirected to a sign-in page at {where} (HTTP {code}): the vendor "
            "asked for an interactive login; check base_url (the API URL, not the web front end) and "
            "that the API is not behind single sign-on for this account"
        )
    same = _origin(current)[1:] == _origin(target)[1:] or (
        _origin(current)[0] == "http" and scheme == "https" and _origin(current)[1] == host)
    if not same:
        raise RedirectRefused(
            f"{what}: the vendor redirected the call (HTTP {code}) to another host, {where}: a call "
            "that carries credentials is never sent to another host. If the vendor moved, set base_url "
            "(or the token URL) in the settings to the new address"
        )
    if method.upper() not in ("GET", "HEAD"):
        raise RedirectRefused(
            f"{what}: the vendor redirected the {method.upper()} (HTTP {code}) to {where}"
            f"{urlsplit(target).path}: a call that sends data is not replayed elsewhere; set base_url "
            "to the address the vendor redirects to"
        )


# -- answer size --------------------------------------------------------------------------------------
# kinds of call and their default bound (the settings' max_answer_bytes.<kind>)
ANSWER_KINDS = {f.name: int(f.default) for f in ANSWER_FIELDS}
_CHUNK = 64 * 1024


def answer_limits(settings: dict[str, Any]) -> dict[str, int]:
    given = settings.get("max_answer_bytes") or {}
    return {kind: int(given.get(kind) or default) for kind, default in ANSWER_KINDS.items()}


def _limit_for(session: requests.Session, kind: str) -> int:
    limits = getattr(session, "max_answer_bytes", None) or ANSWER_KINDS
    return int(limits.get(kind) or ANSWER_KINDS.get(kind) or ANSWER_KINDS["api"])


def _too_large(what: str, kind: str, limit: int) -> ResponseTooLarge:
    return ResponseTooLarge(
        f"{what}: the vendor's answer is larger than {limit:,} bytes (setting max_answer_bytes.{kind})"
    )


def _read_bounded(resp: requests.Response, limit: int, what: str, kind: str) -> None:
    """Read the body into ``resp`` (so ``.content``/``.json()`` work), at most ``limit`` bytes."""
    if isinstance(resp._content, bytes):  # noqa: SLF001 - already read (a transport that preloads)
        if len(resp._content) > limit:  # noqa: SLF001
            raise _too_large(what, kind, limit)
        return
    declared = resp.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        resp.close()
        raise _too_large(what, kind, limit)
    parts: list[bytes] = []
    total = 0
    for chunk in resp.iter_content(_CHUNK):
        total += len(chunk)
        if total > limit:
            resp.close()
            raise _too_large(what, kind, limit)
        parts.append(chunk)
    resp._content = b"".join(parts)  # noqa: SLF001 - requests' own cache of the body
    resp._content_consumed = True  # noqa: SLF001


def download_to(session: requests.Session, url: str, sink: Any, *, what: str, kind: str = "rejects",
                **kwargs: Any) -> requests.Response:
    """GET ``url`` into the binary file ``sink`` (bounded like ``request``; never held whole in
    memory). Returns the response (headers, status) with an empty body."""
    timeout = float(kwargs.pop("timeout", getattr(session, "timeout_seconds", 30)))
    limit = int(kwargs.pop("max_bytes", None) or _limit_for(session, kind))
    call = _Call(timeout)
    try:
        with call:
            resp = _send_following(session, call, "GET", url, what, kwargs)
            if resp.status_code >= 300:
                _read_bounded(resp, ANSWER_KINDS["api"], what, "api")
                return resp
            total = 0
            preloaded = resp._content if isinstance(resp._content, bytes) else None  # noqa: SLF001
            for chunk in (preloaded,) if preloaded is not None else resp.iter_content(_CHUNK):
                total += len(chunk)
                if total > limit:
                    resp.close()
                    raise _too_large(what, kind, limit)
                sink.write(chunk)
            resp._content = b""  # noqa: SLF001
            resp._content_consumed = True  # noqa: SLF001
            return resp
    except (RedirectRefused, ResponseTooLarge):
        raise
    except requests.exceptions.SSLError as exc:
        raise _tls_error(what, exc) from None
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        if call.expired or isinstance(exc, requests.exceptions.Timeout):
            raise VendorUnavailableError(f"{what}: the vendor did not answer within {timeout:g} s") from None
        raise VendorUnavailableError(f"{what}: cannot reach the vendor: {scrub(exc)}") from None


# -- TLS ----------------------------------------------------------------------------------------------
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----")
_ca_files: dict[str, str] = {}
_ca_lock = threading.Lock()


def tls_verify(settings: dict[str, Any]) -> bool | str:
    """requests' ``verify``: True (public CAs), False (``verify_tls: false``) or the path of a file
    holding the PEM text of ``ca_bundle_pem`` (an on-premise server's internal CA), which is
    trusted in addition to nothing else: the bundle is the whole trust store for this vendor."""
    if not settings.get("verify_tls", True):
        return False
    pem = settings.get("ca_bundle_pem")
    if not pem:
        return True
    certs = _PEM_CERT.findall(pem)
    if not certs:
        raise SettingsError("setting ca_bundle_pem must hold PEM certificates "
                            "(-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)")
    text = "\n".join(certs) + "\n"
    try:
        ssl.create_default_context(cadata=text)
    except (ssl.SSLError, ValueError) as exc:
        raise SettingsError(f"setting ca_bundle_pem holds a certificate that cannot be read: {exc}") from None
    with _ca_lock:
        path = _ca_files.get(text)
        if path is None:
            with tempfile.NamedTemporaryFile("w", suffix=".pem", prefix="vendor-ca-", delete=False) as f:
                f.write(text)
            path = _ca_files[text] = f.name
    return path


def _tls_error(what: str, exc: Exception) -> Exception:
    """A certificate the client does not trust is a settings matter, never retried; other TLS
    failures (handshake cut, reset) stay transient."""
    text = str(exc)
    if _is_cert_error(text):
        return SettingsError(
            f"{what}: the vendor's TLS certificate is not trusted ({_cert_reason(text)}). For an on-premise "
            "server signed by an internal or self-signed CA, put that CA's certificate (PEM text) in the "
            "setting ca_bundle_pem; verify_tls: false turns verification off (not recommended). "
            "This is not retried."
        )
    return VendorUnavailableError(f"{what}: TLS error talking to the vendor: {scrub(exc)}")


def _is_cert_error(text: str) -> bool:
    lowered = text.lower()
    return "certificate verify failed" in lowered or ("hostname" in lowered and "match" in lowered)


def _cert_reason(text: str) -> str:
    match = re.search(r"certificate verify failed: ([^(')\]]+)", text)
    if match:
        return match.group(1).strip()
    return "hostname mismatch" if "match" in text.lower() else "certificate verify failed"


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
