"""A loopback server that misbehaves on purpose, on top of ``http.server``.

Modes (``server.mode``, changeable at any time):

- ``echo``: a 400 whose body echoes every request header, in the forms a careless server
  or proxy uses (plain, JSON with ``\\/``, ``repr``, percent-encoded upper and lower
  case), as an Emarsys envelope (``replyText``) and a Magento error (``message``);
  a POST to ``…/oauth2/token`` gets a fresh access token first (``tokens``).
- ``echo-raw``: the same echo as a body that is neither (not an API reply at all).
- ``redirect``: a 307 to ``redirect_to``.
- ``endless``: a 200 whose body never ends (stops after ``endless_cap`` bytes or when the
  client hangs up); ``huge-length``: a 200 that announces a 100 GB body, sends 1 KB and
  waits.
- ``silent``: reads the request and never answers; ``stall``: sends the headers and the
  first bytes of the body, then nothing.
- ``ok``: ``{"replyCode": 0, "data": []}``.

``tls`` (an ``ssl.SSLContext``) makes it speak HTTPS. Every accepted connection is
counted (``connections``), also one whose TLS handshake failed; every request is
recorded (``received``: method, path, headers).
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus


def echo_text(headers: dict[str, str]) -> str:
    """Every header in every echoed form, as one text; credentials first, so that even a
    short preview of it holds them."""
    headers = dict(sorted(headers.items(), key=lambda kv: kv[0].lower() not in (
        "authorization", "x-wsse")))
    dump = "; ".join(f"{k}: {v}" for k, v in headers.items())
    quoted = " ".join(f"{k}={quote(v, safe='')} {k}={_lower_hex(quote(v, safe=''))} "
                      f"{k}={quote_plus(v)}" for k, v in headers.items())
    return (f"Bad request. You sent: {dump} | repr {headers!r} | json "
            f"{json.dumps(headers)} | query {quoted}")


def _lower_hex(encoded: str) -> str:
    """Percent-encoding with lower-case hex digits (``%2f``), as some servers write it."""
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded)


class Hostile:
    """The server; a context manager."""

    def __init__(self, mode: str = "echo", host: str = "127.0.0.1", *,
                 tls: ssl.SSLContext | None = None) -> None:
        self.mode = mode
        self.redirect_to = ""
        self.endless_cap = 256 * 1024 * 1024
        self.received: list[tuple[str, str, dict[str, str]]] = []
        self.tokens: list[str] = []
        self.connections = 0
        self.sent_bytes = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = _Server((host, 0), _handler(self), tls)
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        scheme = "https" if self._httpd.tls else "http"
        return f"{scheme}://{host}:{port}"

    @property
    def host_port(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{host}:{port}"

    def __enter__(self) -> Hostile:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def count_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def answer(self, h: BaseHTTPRequestHandler) -> None:
        headers = {k: v for k, v in h.headers.items()}
        length = int(h.headers.get("Content-Length") or 0)
        if length:
            h.rfile.read(length)
        with self._lock:
            self.received.append((h.command, h.path, headers))
        mode = self.mode
        if mode.startswith("echo") and h.command == "POST" and \
                h.path.rstrip("/").endswith("/oauth2/token"):
            token = f"at-{secrets.token_urlsafe(24)}/+x="
            self.tokens.append(token)
            self._send(h, 200, json.dumps({"access_token": token, "token_type": "bearer",
                                           "expires_in": 3600}).encode())
        elif mode == "echo":
            text = echo_text(headers)
            body = json.dumps({"replyCode": 1, "replyText": text, "data": "",
                               "message": text, "headers": headers}).replace("/", "\\/")
            self._send(h, 400, body.encode())
        elif mode == "echo-raw":
            self._send(h, 400, echo_text(headers).replace("/", "\\/").encode(), "text/plain")
        elif mode == "redirect":
            self._send(h, 307, b"", extra={"Location": self.redirect_to})
        elif mode == "endless":
            self._endless(h)
        elif mode == "huge-length":
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(100 * 1024 ** 3))
            h.end_headers()
            h.wfile.write(b"[" * 1024)
            h.wfile.flush()
            self._stop.wait(30)
        elif mode == "stall":
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", "1000")
            h.end_headers()
            h.wfile.write(b'{"replyCode"')
            h.wfile.flush()
            self._stop.wait(30)
        elif mode == "silent":
            self._stop.wait(30)
        else:
            self._send(h, 200, b'{"replyCode": 0, "replyText": "OK", "data": []}')

    def _endless(self, h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Connection", "close")
        h.end_headers()
        chunk = b"[" * (1024 * 1024)
        try:
            while self.sent_bytes < self.endless_cap and not self._stop.is_set():
                h.wfile.write(chunk)
                self.sent_bytes += len(chunk)
        except OSError:
            pass  # the client hung up: what it should do
        h.close_connection = True

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes,
              ctype: str = "application/json", extra: dict[str, str] | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: Any,
                 tls: ssl.SSLContext | None) -> None:
        self.tls = tls
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        owner = getattr(self.RequestHandlerClass, "owner", None)
        if owner is not None:
            owner.count_connection()
        if self.tls is not None:  # a failed handshake is an OSError: the server goes on
            sock.settimeout(5)
            sock = self.tls.wrap_socket(sock, server_side=True)
        return sock, addr


def _handler(owner: Hostile) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except OSError:
                self.close_connection = True

        def _any(self) -> None:
            owner.answer(self)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _any

    Handler.owner = owner  # type: ignore[attr-defined]
    return Handler


def self_signed_context(directory: Path, host: str = "127.0.0.1") -> ssl.SSLContext | None:
    """A server TLS context with a fresh self-signed certificate for ``host`` (made with
    ``cryptography`` if installed, else ``openssl req``); None when neither exists."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if not (_with_cryptography(cert, key, host) or _with_openssl(cert, key, host)):
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def _with_cryptography(cert: Path, key: Path, host: str) -> bool:
    try:
        import ipaddress
        from datetime import datetime, timedelta, timezone

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        return False
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(private.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .sign(private, hashes.SHA256()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return True


def _with_openssl(cert: Path, key: Path, host: str) -> bool:
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        return False
    result = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={host}", "-addext", f"subjectAltName=IP:{host}",
         "-keyout", str(key), "-out", str(cert)], capture_output=True, timeout=60)
    return result.returncode == 0


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until true (for a server thread to catch up)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())
