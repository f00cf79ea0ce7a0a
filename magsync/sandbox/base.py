"""What both simulators share: a threaded HTTP/1.1 server on loopback, routing, fault
injection and a request log.

A simulator subclasses ``SandboxServer``, lists its routes and answers ``Request``s with
``Response``s. Faults are injected per request, before routing, so they hit the client
exactly as a flaky network or an overloaded API would. Paths under ``/_sandbox/`` are the
control plane (faults, log, stats) and are never faulted, authenticated or logged, so a
test or a benchmark in another process can drive a server over HTTP too.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from magsync.util import jsoncodec

CONTROL_PREFIX = "/_sandbox/"
_NUMERIC_SEGMENT = re.compile(r"/\d+(?=/|\Z)")


@dataclass
class Request:
    """One request as the simulator received it."""

    method: str
    path: str
    query_string: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # from the route's regex groups

    @property
    def query(self) -> list[tuple[str, str]]:
        """Query pairs, decoded once, in order."""
        return parse_qsl(self.query_string, keep_blank_values=True)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """The body as JSON; raises ``ValueError`` when it is not."""
        if not self.body:
            raise ValueError("empty body")
        return jsoncodec.loads(self.body)


@dataclass
class Response:
    """What the simulator answers."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None
             ) -> Response:
        return cls(status, jsoncodec.dumps(data), "application/json", dict(headers or {}))

    @classmethod
    def raw_json(cls, body: bytes, status: int = 200) -> Response:
        """A body already serialised (pre-built pages keep the server fast)."""
        return cls(status, body, "application/json")


@dataclass
class LoggedRequest:
    """A request the simulator answered, for tests to inspect."""

    seq: int
    at: float
    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def as_dict(self) -> dict[str, Any]:
        body: Any
        try:
            body = self.json()
        except ValueError:
            body = self.body.decode("utf-8", "replace")
        return {"seq": self.seq, "at": self.at, "method": self.method, "path": self.path,
                "query": self.query_string, "status": self.status, "body": body}


class Faults:
    """Faults to inject into the next requests; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latency_ms = 0.0
        self._fail: list[tuple[int, bytes, str]] = []  # (status, body, content type)
        self._drop = 0

    def set_latency(self, ms: float) -> None:
        self.latency_ms = max(0.0, float(ms))

    def fail_next(self, n: int, status: int = 503, body: bytes | None = None,
                  content_type: str = "application/json") -> None:
        """Answer the next ``n`` requests with ``status`` (and ``body``)."""
        payload = body if body is not None else json.dumps(
            {"message": f"Injected failure {status}"}).encode()
        with self._lock:
            self._fail.extend([(status, payload, content_type)] * n)

    def drop_next(self, n: int) -> None:
        """Close the connection of the next ``n`` requests without answering."""
        with self._lock:
            self._drop += n

    def clear(self) -> None:
        with self._lock:
            self._fail.clear()
            self._drop = 0
            self.latency_ms = 0.0

    def take(self) -> tuple[bool, tuple[int, bytes, str] | None]:
        """(drop this request?, injected failure or None) for one request."""
        with self._lock:
            if self._drop > 0:
                self._drop -= 1
                return True, None
            if self._fail:
                return False, self._fail.pop(0)
        return False, None


Handler = Callable[[Request], Response]


class _Dropped(Exception):
    """Raised inside the handler to drop the connection."""


class SandboxServer:
    """A simulator: subclasses fill ``routes()`` and may override ``before_route``."""

    service = "sandbox"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, log_bodies: bool = True
                 ) -> None:
        self.host = host
        self.faults = Faults()
        self.log_bodies = log_bodies
        self._log: list[LoggedRequest] = []
        self._log_lock = threading.Lock()
        self._seq = 0
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            (m, re.compile(p + r"\Z"), h) for m, p, h in self.routes()]
        self._control: list[tuple[str, re.Pattern[str], Handler]] = [
            (m, re.compile(p + r"\Z"), h) for m, p, h in self._base_control_routes()
            + self.control_routes()]
        self._httpd = _Server((host, port), _make_handler(self))
        self._thread: threading.Thread | None = None

    # -- to override -------------------------------------------------------------
    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, path regex with named groups, handler) triples."""
        return []

    def control_routes(self) -> list[tuple[str, str, Handler]]:
        """Extra ``/_sandbox/...`` routes (full path regexes)."""
        return []

    def before_route(self, req: Request) -> Response | None:
        """Authentication, rate limiting: a Response here answers instead of the route."""
        return None

    def after_route(self, req: Request, resp: Response) -> None:
        """Add headers every reply carries (e.g. rate-limit headers)."""

    def not_found(self, req: Request) -> Response:
        return Response.json({"message": "Request does not match any route."}, 404)

    def server_error(self, req: Request, exc: Exception) -> Response:
        return Response.json({"message": f"Internal Error: {exc}"}, 500)

    # -- lifecycle ------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        """Serve in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name=f"{self.service}-sandbox", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        """Stop serving at once: the serve loop only sees ``shutdown()`` when its select
        returns, so a connection wakes it instead of waiting out the poll interval."""
        if self._thread is not None and self._thread.is_alive():
            stopper = threading.Thread(target=self._httpd.shutdown, daemon=True)
            stopper.start()
            while stopper.is_alive():
                self._wake()
                stopper.join(0.01)
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _wake(self) -> None:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                pass
        except OSError:
            pass  # already closed: the loop has ended

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request log ----------------------------------------------------------------
    def requests(self, method: str | None = None, path_re: str | None = None
                 ) -> list[LoggedRequest]:
        """Logged requests, optionally filtered by method and a path regex."""
        with self._log_lock:
            log = list(self._log)
        pat = re.compile(path_re) if path_re else None
        return [r for r in log if (method is None or r.method == method)
                and (pat is None or pat.search(r.path))]

    def clear_log(self) -> None:
        with self._log_lock:
            self._log.clear()

    def _record(self, req: Request, status: int) -> None:
        with self._log_lock:
            self._seq += 1
            self._log.append(LoggedRequest(
                self._seq, time.time(), req.method, req.path, req.query_string,
                req.headers, req.body if self.log_bodies else b"", status))

    # -- dispatch -------------------------------------------------------------------
    def dispatch(self, req: Request) -> Response:
        if req.path.startswith(CONTROL_PREFIX):
            try:
                return self._match(self._control, req) or self.not_found(req)
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                # a malformed control request: say so rather than drop the connection
                return Response.json({"message": f"bad control request: {exc!r}"}, 400)
        if self.faults.latency_ms:
            time.sleep(self.faults.latency_ms / 1000.0)
        drop, fail = self.faults.take()
        if drop:
            self._record(req, 0)
            raise _Dropped
        if fail is not None:
            status, body, ctype = fail
            resp = Response(status, body, ctype)
        else:
            try:
                resp = self.before_route(req) or self._match(self._routes, req) \
                    or self.not_found(req)
            except _Dropped:
                raise
            except Exception as exc:  # a simulator bug must look like a 500, not hang
                resp = self.server_error(req, exc)
        self.after_route(req, resp)
        self._record(req, resp.status)
        return resp

    def _match(self, table: list[tuple[str, re.Pattern[str], Handler]], req: Request
               ) -> Response | None:
        path_hit = False
        for method, pattern, handler in table:
            m = pattern.match(req.path)
            if m is None:
                continue
            path_hit = True
            if method == req.method:
                req.params = {k: v for k, v in m.groupdict().items() if v is not None}
                return handler(req)
        if path_hit:
            return Response.json({"message": "Method not allowed"}, 405)
        return None

    # -- the generic control plane ----------------------------------------------------
    def _base_control_routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", r"/_sandbox/faults", self._ctl_faults),
            ("GET", r"/_sandbox/log", self._ctl_log),
            ("DELETE", r"/_sandbox/log", self._ctl_clear_log),
            ("GET", r"/_sandbox/stats", self._ctl_stats),
        ]

    def _ctl_faults(self, req: Request) -> Response:
        """Body: {"latency_ms": 20, "fail_next": 3, "status": 503, "drop_next": 1,
        "clear": true}."""
        spec = req.json()
        if spec.get("clear"):
            self.faults.clear()
        if "latency_ms" in spec:
            self.faults.set_latency(spec["latency_ms"])
        if spec.get("fail_next"):
            self.faults.fail_next(int(spec["fail_next"]), int(spec.get("status", 503)))
        if spec.get("drop_next"):
            self.faults.drop_next(int(spec["drop_next"]))
        return Response.json({"ok": True})

    def _ctl_log(self, req: Request) -> Response:
        return Response.json([r.as_dict() for r in self.requests()])

    def _ctl_clear_log(self, req: Request) -> Response:
        self.clear_log()
        return Response.json({"ok": True})

    def _ctl_stats(self, req: Request) -> Response:
        return Response.json(self.stats())

    def stats(self) -> dict[str, Any]:
        """Request counts: total, by status, and by "METHOD path" with numeric path
        segments as ``{id}`` (light enough for a benchmark to poll, unlike the log)."""
        by_route: dict[str, int] = {}
        by_status: dict[str, int] = {}
        log = self.requests()
        for r in log:
            route = f"{r.method} {_NUMERIC_SEGMENT.sub('/{id}', r.path)}"
            by_route[route] = by_route.get(route, 0) + 1
            by_status[str(r.status)] = by_status.get(str(r.status), 0) + 1
        return {"total": len(log), "by_status": by_status, "by_route": by_route}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def _make_handler(app: SandboxServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
        # Headers and body go out in separate writes; without TCP_NODELAY, Nagle and the
        # client's delayed ACK stall every reply by ~40 ms.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the request log replaces stderr chatter

        def _handle(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            req = Request(self.command, split.path, split.query,
                          {k.lower(): v for k, v in self.headers.items()}, body)
            try:
                resp = app.dispatch(req)
            except _Dropped:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(resp.body)))
            for k, v in resp.headers.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp.body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

    return _Handler
