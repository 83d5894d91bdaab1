"""A small HTTP proxy on loopback that sits between the importer and the BigQuery emulator and injects
faults into chosen requests: an HTTP 5xx instead of the answer, a request held (a timeout seen from the
client), or a request held until the test lets it go (to stop the emulator at an exact moment).

Threads and ``http.server`` only; bounded: every held request is released after ``max_hold_seconds``,
the proxy stops itself after ``lifetime_seconds``, and ``stop()`` releases everything it still holds.

    with FaultProxy(emulator.endpoint, [Fault(is_merge, "error", status=503, times=1)]) as proxy:
        run([... "--bigquery_endpoint", proxy.endpoint ...])
        proxy.log  # every request seen: (method, path, what was done, status)
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
              "content-length", "host"}
UPSTREAM_TIMEOUT_SECONDS = 120.0


@dataclass
class Request:
    """What a fault is matched against."""

    method: str
    path: str
    body: bytes
    merge_jobs: frozenset[str] = frozenset()  # job ids of the MERGEs the proxy has seen so far

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass
class Fault:
    """Inject ``action`` into the requests ``match`` selects, skipping the first ``after`` of them and
    acting on at most ``times`` (None: every one after that).

    Actions:
    - ``error``: answer ``status`` with a BigQuery-shaped error body, without forwarding the request;
    - ``error_after_forward``: forward the request (it takes effect upstream), then answer ``status``
      instead of the real answer (a lost response);
    - ``hold``: keep the request ``hold_seconds`` without answering, then close the connection
      without forwarding it (a timeout as the client sees it);
    - ``gate``: set ``reached``, wait until the test calls ``release()`` (at most the proxy's
      ``max_hold_seconds``), then forward the request (``forward_first``: forward it first, hold the
      answer until released, then send it);
    - ``rewrite``: forward the request with its body replaced by ``rewrite(body)`` (what an upstream
      that sees the request differently would get, e.g. an emulator on another machine)."""

    match: Callable[[Request], bool]
    action: str
    status: int = 503
    after: int = 0
    times: int | None = 1
    hold_seconds: float = 0.0
    forward_first: bool = False
    rewrite: Callable[[bytes], bytes] | None = None
    seen: int = 0
    acted: int = 0
    arrived: int = 0  # requests waiting at (or past) the gate
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()

    def applies(self, request: Request) -> bool:
        if not self.match(request):
            return False
        self.seen += 1
        if self.seen <= self.after or (self.times is not None and self.acted >= self.times):
            return False
        self.acted += 1
        return True


# Matchers for the requests the importer makes (BigQuery REST API v2).
def is_load_upload(r: Request) -> bool:
    """The upload that creates a load job (``load_table_from_file``)."""
    return r.method == "POST" and "/upload/bigquery/v2/" in r.path and "/jobs" in r.path


def is_events_load(r: Request) -> bool:
    """The load job of the staged events (into ``<table>__staging_<run>``): its upload's first request."""
    return is_load_upload(r) and "__staging_" in r.text


def is_upload_data(r: Request) -> bool:
    """The request that carries a resumable upload's bytes (and whose answer is the load job)."""
    return r.method == "PUT" and "upload_id=" in r.path


def is_load_in_place(r: Request) -> bool:
    """The jobs.insert of a load job that names local files (``--emulator_load=local_files``)."""
    return r.method == "POST" and r.path.split("?")[0].endswith("/jobs") and '"file://' in r.text


def is_merge(r: Request) -> bool:
    """The jobs.insert of the write into the target (the write transaction's script, or a MERGE)."""
    return r.method == "POST" and r.path.split("?")[0].endswith("/jobs") and (
        "BEGIN TRANSACTION" in r.text or "MERGE " in r.text)


def is_merge_poll(r: Request) -> bool:
    """A request that asks for the MERGE job's state or results (``getQueryResults``, ``jobs.get``)."""
    return r.method == "GET" and any(f"/queries/{job}?" in r.path or f"/jobs/{job}?" in r.path
                                     for job in r.merge_jobs)


def is_staging_drop(r: Request) -> bool:
    return r.method == "DELETE" and "__staging_" in r.path


def is_staging_create(r: Request) -> bool:
    return r.method == "POST" and r.path.split("?")[0].endswith("/tables") and "__staging_" in r.text


def is_any(_: Request) -> bool:
    return True


class FaultProxy:
    def __init__(self, upstream: str, faults: list[Fault] | None = None, *, max_hold_seconds: float = 60.0,
                 lifetime_seconds: float = 600.0) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port or 80
        self.faults = list(faults or [])
        self.max_hold_seconds = max_hold_seconds
        self.log: list[tuple[str, str, str, int]] = []
        self.merge_jobs: set[str] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # shutdown() waits for serve_forever's next poll: 0.5 s apart by default, a quarter second per proxy
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fault-proxy", daemon=True)
        self._timer = threading.Timer(lifetime_seconds, self.stop)
        self._timer.daemon = True

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()
        self._timer.cancel()
        for fault in self.faults:
            fault.release()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def requests(self, what: str | None = None) -> list[tuple[str, str, str, int]]:
        with self._lock:
            return [entry for entry in self.log if what is None or entry[2] == what]

    def _record(self, request: Request, what: str, status: int) -> None:
        with self._lock:
            self.log.append((request.method, request.path, what, status))

    def _fault_for(self, request: Request) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.applies(request):
                    return fault
        return None

    def _forward(self, request: Request, headers: dict) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=UPSTREAM_TIMEOUT_SECONDS)
        try:
            conn.request(request.method, request.path, body=request.body or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def _through_proxy(self, header: tuple[str, str]) -> tuple[str, str]:
        """A resumable upload's session URL points at the emulator: make it point at the proxy, so the
        upload's data requests come through here too."""
        name, value = header
        if name.lower() == "location":
            for upstream in (f"http://{self.upstream_host}:{self.upstream_port}",
                             f"http://localhost:{self.upstream_port}"):
                value = value.replace(upstream, self.endpoint)
        return name, value

    def _handler_class(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int) -> None:
                # a 5xx as BigQuery's transient backend error; a 4xx as a refusal that no retry cures
                transient = status >= 500
                reason, state = ("backendError", "UNAVAILABLE") if transient else ("invalidQuery", "INVALID_ARGUMENT")
                body = (f'{{"error": {{"code": {status}, "message": "injected by the fault proxy", '
                        f'"errors": [{{"reason": "{reason}", "message": "injected"}}], '
                        f'"status": "{state}"}}}}').encode()
                self._send(status, [("Content-Type", "application/json")], body)

            def _drop(self) -> None:
                self.close_connection = True
                try:
                    self.connection.shutdown(2)
                except OSError:
                    pass

            def _handle(self) -> None:
                request = Request(self.command, self.path, self._body())
                if is_merge(request):
                    try:
                        proxy.merge_jobs.add(json.loads(request.body)["jobReference"]["jobId"])
                    except (ValueError, KeyError, TypeError):
                        pass
                request.merge_jobs = frozenset(proxy.merge_jobs)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers["Host"] = f"{proxy.upstream_host}:{proxy.upstream_port}"
                fault = proxy._fault_for(request)
                action = fault.action if fault else "forward"
                if action == "error":
                    proxy._record(request, "error", fault.status)
                    self._error(fault.status)
                    return
                if action == "hold":
                    proxy._record(request, "hold", 0)
                    proxy._closing.wait(min(fault.hold_seconds, proxy.max_hold_seconds))
                    self._drop()
                    return
                if action == "rewrite":
                    request.body = fault.rewrite(request.body)
                if action == "gate" and not fault.forward_first:
                    with proxy._lock:
                        fault.arrived += 1
                    fault.reached.set()
                    fault.released.wait(proxy.max_hold_seconds)
                try:
                    status, response_headers, body = proxy._forward(request, headers)
                except OSError:
                    proxy._record(request, f"{action}:upstream_down", 0)
                    self._drop()
                    return
                if action == "gate" and fault.forward_first:
                    with proxy._lock:
                        fault.arrived += 1
                    fault.reached.set()
                    fault.released.wait(proxy.max_hold_seconds)
                if action == "error_after_forward":
                    proxy._record(request, "error_after_forward", fault.status)
                    self._error(fault.status)
                    return
                proxy._record(request, action, status)
                self._send(status, [proxy._through_proxy(h) for h in response_headers], body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        return Handler


def wait_for(event: threading.Event, seconds: float, what: str) -> None:
    """Wait for a fault to be reached; fail with a clear message otherwise."""
    started = time.monotonic()
    if not event.wait(seconds):
        raise AssertionError(f"{what} was not reached within {time.monotonic() - started:.0f} s")
