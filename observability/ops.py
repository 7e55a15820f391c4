"""``/healthz``, ``/readyz`` and ``/metrics`` for a process that does not run the api role.

A normalizer or store-writer pod must answer its liveness and readiness probes and be
scraped like the api, but it has no reason to load FastAPI, the FHIR routers and the
authorization middleware. This is the standard library's threading HTTP server with
three read-only routes, started and stopped like any other caregraph service. The api
role serves the same three paths from its own app instead (mount
``build_metrics_router``), so a process never runs both on one port.

The JSON bodies are those of ``caregraph.app``: ``{"status": "ok"}`` and
``{"status": "ready" | "not ready", "checks": {name: "ok" | reason}}``, 503 when not ready.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from observability.metrics import Metrics

log = logging.getLogger(__name__)

Probe = Callable[[], None]


class OpsServer:
    """Serves the probes and the metrics on ``host:port`` from a daemon thread.

    ``readiness`` maps a dependency name to a probe that raises when it is down (the same
    probes the api's ``/readyz`` uses: ``db.ping``, ``bus.ping``). Port 0 picks a free
    port, read back from ``port`` after ``start``.
    """

    name = "ops"

    def __init__(
        self, host: str, port: int, readiness: Mapping[str, Probe], metrics: Metrics
    ) -> None:
        self.host = host
        self.port = port
        self.readiness = dict(readiness)
        self.metrics = metrics
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve. Raises ``OSError`` if the port is taken."""
        server = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="ops", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def ready(self) -> tuple[bool, dict[str, str]]:
        checks: dict[str, str] = {}
        for name, probe in self.readiness.items():
            try:
                probe()
                checks[name] = "ok"
            except Exception as exc:  # any failure of a dependency means not ready
                checks[name] = " ".join(str(exc).split()) or type(exc).__name__
        return all(v == "ok" for v in checks.values()), checks


def _handler_for(ops: OpsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "caregraph-ops"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._json(HTTPStatus.OK, {"status": "ok"})
            elif path == "/readyz":
                ready, checks = ops.ready()
                body = {"status": "ready" if ready else "not ready", "checks": checks}
                self._json(HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE, body)
            elif path == "/metrics":
                self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, ops.metrics.render())
            else:
                self._json(HTTPStatus.NOT_FOUND, {"detail": "not found"})

        def _json(self, status: HTTPStatus, body: Any) -> None:
            self._send(status, "application/json", json.dumps(body).encode())

        def _send(self, status: HTTPStatus, content_type: str, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            # a probe every few seconds per pod would drown the logs
            log.debug("ops %s", format % args)

    return Handler
