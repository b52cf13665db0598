"""The HTTP probes and metrics endpoint: ``/healthz`` (alive), ``/readyz`` (serving), ``/metrics`` (Prometheus).

A small threaded WSGI server (the one prometheus-client uses), so it answers even while the event loop is busy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

log = logging.getLogger(__name__)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds would flood the log
        pass


class HealthServer:
    """Serves the probes on ``host:port`` in a daemon thread until :meth:`close`."""

    def __init__(self, port: int, is_ready: Callable[[], bool], host: str = "0.0.0.0",
                 registry: CollectorRegistry | None = None) -> None:
        metrics_app = make_wsgi_app(registry) if registry is not None else make_wsgi_app()

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "/")
            if path == "/healthz":
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ok\n"]
            if path == "/readyz":
                ready = is_ready()
                start_response("200 OK" if ready else "503 Service Unavailable", [("Content-Type", "text/plain")])
                return [b"ready\n" if ready else b"not ready\n"]
            if path == "/metrics":
                return metrics_app(environ, start_response)
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /healthz, /readyz or /metrics\n"]

        self._server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)
        self._thread.start()
        log.info("health and metrics on http://%s:%d (/healthz /readyz /metrics)", host, self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
