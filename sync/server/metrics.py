"""Prometheus ``/metrics``: ingest rate, devices online, backlog, errors.

Counters are per process (scrape every server process; sum them). Fleet gauges are read from the
shared database at scrape time, so every process reports the same fleet figures (take ``max``).
The counters come from an ASGI middleware that reads what the API answered (status, the small
JSON error or push result), so the handlers need no metrics code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sync.server.storage import Storage
from sync.wire.protocol import API

#: a device is "online" if it pushed within this window, "silent" if not within SILENT
ONLINE_WINDOW = timedelta(minutes=15)
SILENT_AFTER = timedelta(hours=24)
#: response bodies parsed for an error code or a push result are small; larger ones are not read
_PARSE_LIMIT = 4096
PUSH = f"{API}/push"


def _route(path: str, known: frozenset[str]) -> str:
    """A bounded label: the API path if it is one of ours, else ``other`` (no label per random URL)."""
    return path if path in known else "other"


class _FleetCollector(Collector):
    def __init__(self, storage: Storage):
        self._storage = storage

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = datetime.now(UTC)
        stats = self._storage.ops_stats(online_since=(now - ONLINE_WINDOW).isoformat(timespec="seconds"),
                                        silent_before=(now - SILENT_AFTER).isoformat(timespec="seconds"))
        yield GaugeMetricFamily("checkpoint_devices_enrolled", "Devices with an enrolled key.", stats.enrolled)
        yield GaugeMetricFamily("checkpoint_devices_online", "Devices that pushed within the last 15 minutes.",
                                stats.online)
        yield GaugeMetricFamily("checkpoint_devices_silent", "Enrolled devices not heard from for 24 hours.",
                                stats.silent)
        yield GaugeMetricFamily("checkpoint_records_held_beyond_gap",
                                "Backlog: records stored after a missing one, waiting for the gap to fill.",
                                stats.held_beyond_gap)
        yield GaugeMetricFamily("checkpoint_records_ingested", "Records ever stored, whole fleet.", stats.records)


class Metrics:
    """The per-app registry (several apps may live in one test process)."""

    def __init__(self, storage: Storage, routes: frozenset[str]):
        self.registry = CollectorRegistry(auto_describe=True)
        self.routes = routes
        self.requests = Counter("checkpoint_http_requests", "HTTP requests answered, by route and status.",
                                ["route", "status"], registry=self.registry)
        self.errors = Counter("checkpoint_http_errors", "Error answers by route and error code "
                              "(internal = an unhandled server error).", ["route", "error"], registry=self.registry)
        self.latency = Histogram("checkpoint_http_request_seconds", "Time to answer, by route.", ["route"],
                                 registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.records = Counter("checkpoint_ingest_records", "Scan records newly stored (ingest rate: rate()).",
                               registry=self.registry)
        self.duplicates = Counter("checkpoint_ingest_duplicates", "Records received again and not stored twice.",
                                  registry=self.registry)
        self.batches = Counter("checkpoint_ingest_batches", "Push batches accepted.", registry=self.registry)
        self.registry.register(_FleetCollector(storage))

    def observe(self, path: str, status: int, seconds: float, body: bytes | None) -> None:
        route = _route(path, self.routes)
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        parsed = None
        if body is not None:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        if status >= 400:
            error = parsed.get("error") if isinstance(parsed, dict) else None
            code = str(error)[:40] if error else "internal" if status >= 500 else str(status)
            self.errors.labels(route, code).inc()
        elif route == PUSH and isinstance(parsed, dict):
            self.batches.inc()
            self.records.inc(int(parsed.get("stored", 0)))
            self.duplicates.inc(int(parsed.get("duplicates", 0)))


class MetricsMiddleware:
    """Pure ASGI middleware: times each request and hands status and small bodies to ``Metrics``."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        chunks: list[bytes] = []
        size = 0
        wants_body = False

        async def watch(message: Message) -> None:
            nonlocal status, size, wants_body
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = dict(message.get("headers") or [])
                wants_body = headers.get(b"content-type", b"").startswith(b"application/json") and (
                    status >= 400 or scope["path"] == PUSH)
            elif message["type"] == "http.response.body" and wants_body:
                piece = message.get("body", b"")
                size += len(piece)
                if size <= _PARSE_LIMIT:
                    chunks.append(piece)
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            body = b"".join(chunks) if wants_body and size <= _PARSE_LIMIT else None
            self.metrics.observe(scope["path"], status, time.perf_counter() - start, body)


def install_metrics(app: FastAPI, storage: Storage, *, path: str = "/metrics") -> Metrics:
    """Add ``GET /metrics`` (Prometheus text format) and the counting middleware to ``app``."""
    routes = frozenset(getattr(r, "path", "") for r in app.routes) | {path, PUSH}  # push: outside the router
    metrics = Metrics(storage, routes)

    @app.get(path, include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.metrics = metrics
    return metrics
