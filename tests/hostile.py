"""Small hostile HTTP servers on 127.0.0.1 for the transport tests: a redirecting server that
records what it received, a trickling server, a huge-answer server, a self-signed TLS server."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    httpd: ThreadingHTTPServer
    scheme: str = "http"
    seen: list[Seen] = field(default_factory=list)
    handshakes: int = 0

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve(respond, *, tls: ssl.SSLContext | None = None) -> Server:
    """Serve ``respond(handler, seen) -> None`` on a free port: every request is recorded first."""
    server: Server

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            seen = Seen(self.command, self.path, dict(self.headers), body)
            server.seen.append(seen)
            respond(self, seen)

        do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = _any

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server = Server(httpd, "https" if tls else "http")
    if tls is not None:
        raw_accept = httpd.get_request

        def get_request():
            sock, addr = raw_accept()
            server.handshakes += 1
            return tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

        httpd.get_request = get_request
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return server


def answer(handler, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
    handler.send_response(code)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def redirect_to(target: str, code: int = 307):
    def respond(handler, seen):
        answer(handler, code, b"", {"Location": target})
    return respond


def trickle(byte_every: float = 0.5, total: int = 200, *, in_headers: bool = False):
    """Answer 200 then one body byte every ``byte_every`` seconds (or trickle the headers)."""
    def respond(handler, seen):
        try:
            if in_headers:
                for ch in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * total:
                    handler.wfile.write(bytes([ch]))
                    handler.wfile.flush()
                    time.sleep(byte_every)
                return
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(total))
            handler.end_headers()
            handler.wfile.flush()
            for _ in range(total):
                handler.wfile.write(b" ")
                handler.wfile.flush()
                time.sleep(byte_every)
        except OSError:
            pass  # the client hung up: what the test wants
    return respond


def huge(size: int, *, declare_length: bool = True, content_type: str = "application/json"):
    """Answer ``size`` bytes of JSON-ish filler, with or without a Content-Length."""
    def respond(handler, seen):
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        if declare_length:
            handler.send_header("Content-Length", str(size))
        else:
            handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < size:
                part = chunk[: min(len(chunk), size - sent)]
                if declare_length:
                    handler.wfile.write(part)
                else:
                    handler.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                sent += len(part)
            if not declare_length:
                handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        handler.close_connection = True
    return respond


def self_signed_tls() -> tuple[ssl.SSLContext, str]:
    """A server context with a certificate for 127.0.0.1 signed by a fresh private CA, and the
    CA's PEM text (what an on-premise user puts in ca_bundle_pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Internal Test CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    import tempfile

    with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f.name)
    return ctx, ca_cert.public_bytes(serialization.Encoding.PEM).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
