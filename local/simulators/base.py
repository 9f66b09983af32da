"""What every simulator shares: a threaded HTTP server on 127.0.0.1, a request log, and
fault injection (status codes, delays, dropped connections, malformed bodies).

A simulator subclass implements ``handle(req) -> Reply`` and ``settings()`` (a vendor
settings document pointing at itself, with the simulator's known credentials).
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str  # without the query string, still percent-encoded
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    raw_path: str = ""

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def header(self, name: str, default: str = "") -> str:
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return default


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict | list | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        body = self.body
        if isinstance(body, (dict, list)) or (body is not None and not isinstance(body, (bytes, str))):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        if isinstance(body, str):
            body = body.encode("utf-8")
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        return body or b"", headers


@dataclass
class Fault:
    """One injected fault: an HTTP status (with optional Retry-After), a delay, a dropped
    connection or a malformed body. ``match`` limits it to paths containing that text."""

    status: int | None = None
    delay: float = 0.0
    drop: bool = False
    malformed: bool = False
    retry_after: int | None = None
    match: str = ""


class Simulator:
    vendor = ""

    def __init__(self, *, latency: float = 0.0, seed: int | None = None):
        self.latency = latency
        self.requests: list[Request] = []
        self._faults: list[Fault] = []
        self._outage: list = []  # [matching requests still answered, Fault] (``fail_from``)
        self.record_bodies = True  # benchmarks turn it off to keep memory flat
        self.random_fault_rate = 0.0
        self.random_faults_injected = 0
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset_concurrency()
        self.down = False  # an outage: every request answers 503 while True (the vendor guard's breaker)
        self.refused_while_down = 0

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._server is not None, "simulator not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, port: int = 0) -> Simulator:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall per request

            def log_message(self, *args):  # quiet
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                req = Request(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                              dict(self.headers.items()), body, raw_path=self.path)
                sim._dispatch(self, req)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"sim-{self.vendor}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- concurrent jobs (what the vendor guard limits) ------------------------------------------
    def reset_concurrency(self) -> None:
        self.active_jobs: set[str] = set()
        self.max_concurrent_jobs = 0
        self.job_starts: list[str] = []  # file names, in the order the vendor started their jobs

    def job_started(self, job_id: str, name: str = "") -> None:
        with self._lock:
            self.active_jobs.add(job_id)
            self.job_starts.append(name or job_id)
            self.max_concurrent_jobs = max(self.max_concurrent_jobs, len(self.active_jobs))

    def job_ended(self, job_id: str) -> None:
        with self._lock:
            self.active_jobs.discard(job_id)

    # -- faults ------------------------------------------------------------------------------------
    def inject(self, *faults: Fault) -> None:
        """Queue faults: each applies to the next matching request, once."""
        with self._lock:
            self._faults.extend(faults)

    def fail_from(self, answered: int, fault: Fault, refusals: int | None = None) -> None:
        """An outage that starts mid-import: the next ``answered`` requests matching ``fault.match``
        are served, every later one gets ``fault`` (until ``end_outage``, or until ``refusals``
        requests got it: the vendor comes back by itself)."""
        with self._lock:
            self._outage = [answered, fault, refusals]

    def end_outage(self) -> None:
        with self._lock:
            self._outage = []

    def _take_fault(self, req: Request) -> Fault | None:
        with self._lock:
            if self._outage and self._outage[1].match in req.path:
                if self._outage[0] <= 0:
                    fault = self._outage[1]
                    if self._outage[2] is not None:
                        self._outage[2] -= 1
                        if self._outage[2] <= 0:
                            self._outage = []
                    return fault
                self._outage[0] -= 1
            for i, f in enumerate(self._faults):
                if f.match in req.path:
                    return self._faults.pop(i)
            if self.random_fault_rate and self._rng.random() < self.random_fault_rate:
                self.random_faults_injected += 1
                kind = self._rng.choice(["500", "503", "429", "drop", "malformed", "slow"])
                if kind == "drop":
                    return Fault(drop=True)
                if kind == "malformed":
                    return Fault(malformed=True)
                if kind == "slow":
                    return Fault(delay=0.2)
                return Fault(status=int(kind), retry_after=1 if kind == "429" else None)
        return None

    def requests_to(self, text: str, method: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if text in r.path and (method is None or r.method == method)]

    # -- dispatch ----------------------------------------------------------------------------------
    def _dispatch(self, handler: BaseHTTPRequestHandler, req: Request) -> None:
        with self._lock:
            self.requests.append(req if self.record_bodies else Request(
                req.method, req.path, req.query, req.headers, b"", req.raw_path))
        if self.latency:
            time.sleep(self.latency)
        fault = self._take_fault(req)
        if self.down and not fault:
            with self._lock:
                self.refused_while_down += 1
            fault = Fault(status=503)
        if fault and fault.delay:
            time.sleep(fault.delay)
        if fault and fault.drop:
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            handler.close_connection = True
            return
        if fault and fault.status:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
            reply = Reply(fault.status, {"error": f"injected fault {fault.status}"}, headers)
        elif fault and fault.malformed:
            reply = Reply(200, b"{not json <xml", {"Content-Type": "application/json"})
        else:
            try:
                reply = self.handle(req)
            except Exception as exc:  # noqa: BLE001 - a simulator bug answers 500, visibly
                reply = Reply(500, {"error": f"simulator error: {exc!r}"})
        body, headers = reply.encoded()
        handler.send_response(reply.status)
        for k, v in headers.items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if req.method != "HEAD":
            handler.wfile.write(body)

    # -- to override -------------------------------------------------------------------------------
    def handle(self, req: Request) -> Reply:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """A vendor settings document that points at this simulator."""
        raise NotImplementedError


@dataclass
class DemoCase:
    """One import the demo runs for a vendor: a sample file, the S3 key it is uploaded under,
    and the final state it must end in."""

    title: str
    file: str  # path relative to the repository root (events/files/<vendor>/...)
    key: str  # S3 key, starting with inbox/<vendor>/
    expect: str  # SUCCEEDED, SUCCEEDED_WITH_REJECTS, FAILED, TIMED_OUT or VALIDATED
    metadata: dict[str, str] = field(default_factory=dict)  # S3 user metadata for the upload
