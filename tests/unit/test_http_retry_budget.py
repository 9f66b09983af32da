"""The HTTP layer's part of the retry budget (README "Retry budget"): counted, Retry-After capped,
against a small local server that answers 503 to everything."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from urllib3.response import HTTPResponse
from vendor_import import http


class Down(BaseHTTPRequestHandler):
    hits: list[str] = []

    def _answer(self):
        Down.hits.append(self.command)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(503)
        self.send_header("Retry-After", "0")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_HEAD = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def down():
    Down.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Down)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_get_is_sent_three_times_a_post_once_and_every_request_is_counted(down):
    session = http.new_session({"timeout_seconds": 5})
    before = http.request_counts()
    assert http.request(session, "GET", f"{down}/status", what="status").status_code == 503
    assert Down.hits == ["GET", "GET", "GET"]  # 1 + HTTP_RETRIES
    assert http.request(session, "POST", f"{down}/import", what="import", data=b"x").status_code == 503
    assert Down.hits[3:] == ["POST"]  # may have reached the vendor: never replayed here
    requests, retries = (now - then for now, then in zip(http.request_counts(), before, strict=True))
    assert (requests, retries) == (4, 2)


def test_retry_after_is_honoured_up_to_the_cap():
    retry = http.BudgetRetry(total=2)
    assert retry.get_retry_after(HTTPResponse(status=503, headers={"Retry-After": "7"})) == 7.0
    assert retry.get_retry_after(HTTPResponse(status=503, headers={"Retry-After": "86400"})) \
        == http.RETRY_AFTER_MAX_SECONDS == 30.0
    assert retry.get_retry_after(HTTPResponse(status=503, headers={})) is None
