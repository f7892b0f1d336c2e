"""The daemon's own metrics (Prometheus text on /metrics) and its /healthz endpoint.

A private CollectorRegistry (not the process-global one) so a reload or a second daemon in the same
process never collides on metric names. The store's write/spool/drop counters are read from the store at
scrape time, so they are the store's own truth rather than a second bookkeeping here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

OUTCOMES = ("ok", "error", "timeout", "skipped")
"""Collection outcomes: skipped = the previous poll of the target is still running (hung), so none started."""


class StoreCounters(Collector):
    """Exposes the current store's `counters()` ({name: number}) as `pmaintd_store_<name>`.

    Names with `pending` in them are levels (gauges: e.g. points waiting in the spool now); every other
    one only grows (counters: points written, replayed, spooled, dropped, rejected). A store without
    counters (sqlite) exposes nothing here; its writes are counted by the daemon's writer.
    """

    def __init__(self, get_counters: Callable[[], Mapping[str, float]]) -> None:
        self._get = get_counters

    def collect(self) -> Iterator[Metric]:
        try:
            values = dict(self._get())
        except Exception as exc:  # a scrape must never fail because the store is mid-swap or closing
            log.debug("store counters unavailable: %s", exc)
            return
        for name, value in sorted(values.items()):
            full = f"pmaintd_store_{name}".removesuffix("_total")
            if "pending" in name:
                yield GaugeMetricFamily(full, f"store level {name}", value=value)
            else:
                yield CounterMetricFamily(full, f"store counter {name}", value=value)


class SelfMetrics:
    """Every metric the daemon updates, in one private registry."""

    def __init__(self, get_store_counters: Callable[[], Mapping[str, float]]) -> None:
        r = self.registry = CollectorRegistry()
        self.collect_duration = Histogram(
            "pmaintd_collect_duration_seconds",
            "Time one poll of one target took (timeouts count their full timeout)",
            ["collector", "target"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.collect_runs = Counter(
            "pmaintd_collect_runs",
            "Polls by outcome (ok, error, timeout, skipped)",
            ["collector", "target", "outcome"],
            registry=r,
        )
        self.target_up = Gauge(
            "pmaintd_target_up", "1 when the last poll of the target succeeded", ["collector", "target"], registry=r
        )
        self.points_collected = Counter(
            "pmaintd_points_collected", "Points collectors produced", ["collector"], registry=r
        )
        self.points_stored = Counter(
            "pmaintd_points_stored", "Points the store accepted (written or spooled)", registry=r
        )
        self.points_rejected = Counter(
            "pmaintd_points_rejected", "Points the store refused (logged with the reason)", registry=r
        )
        self.write_queue = Gauge("pmaintd_write_queue_points", "Points waiting for the store writer", registry=r)
        self.jobs_missed = Counter(
            "pmaintd_jobs_missed",
            "Scheduled runs not started: past daemon.misfire_grace, or the previous run still going",
            ["job", "reason"],
            registry=r,
        )
        self.forecast_runs = Counter("pmaintd_forecast_runs", "Forecast cycles by outcome", ["outcome"], registry=r)
        self.forecasts = Counter(
            "pmaintd_forecasts", "Forecasts written, by kind and level", ["kind", "level"], registry=r
        )
        self.forecast_last = Gauge(
            "pmaintd_forecast_last_success_timestamp_seconds", "When the last forecast cycle finished", registry=r
        )
        self.actions = Counter(
            "pmaintd_actions",
            "Policy decisions on forecasts by outcome (acted, proposed, observed, limited, no_policy, ...)",
            ["outcome"],
            registry=r,
        )
        self.retrains = Counter(
            "pmaintd_retrains",
            "Retrain runs started by the daemon, by kind and outcome",
            ["kind", "outcome"],
            registry=r,
        )
        self.reloads = Counter("pmaintd_reloads", "SIGHUP reloads by outcome", ["outcome"], registry=r)
        self.housekeeping_runs = Counter(
            "pmaintd_housekeeping_runs", "Store maintenance runs by outcome", ["outcome"], registry=r
        )
        self.model_usable = Gauge(
            "pmaintd_model_usable",
            "1 when the kind has a model that scores it; 0 when it is not scored (no model, or none loads)",
            ["kind"],
            registry=r,
        )
        self.model_broken = Gauge(
            "pmaintd_model_broken",
            "1 when a model bundle of the kind exists but cannot be loaded (see the log; with usable=1 the "
            "shipped model scores instead of the promoted one)",
            ["kind"],
            registry=r,
        )
        self._model_kinds: set[str] = set()
        r.register(StoreCounters(get_store_counters))

    def set_models(self, states: Mapping[str, tuple[bool, bool]]) -> None:
        """{kind: (usable, broken)} for the configured kinds; kinds a reload removed lose their series."""
        for kind in self._model_kinds - set(states):
            self.model_usable.remove(kind)
            self.model_broken.remove(kind)
        self._model_kinds = set(states)
        for kind, (usable, broken) in states.items():
            self.model_usable.labels(kind).set(1 if usable else 0)
            self.model_broken.labels(kind).set(1 if broken else 0)

    def forget_target(self, collector: str, target: str) -> None:
        """Drop a target's series after a reload removed it, so /metrics does not report ghosts."""
        removals: list[tuple[Any, tuple[str, ...]]] = [
            (self.collect_duration, (collector, target)),
            (self.target_up, (collector, target)),
        ]
        removals += [(self.collect_runs, (collector, target, o)) for o in OUTCOMES]
        for metric, labels in removals:
            with contextlib.suppress(KeyError):
                metric.remove(*labels)


class HttpEndpoint:
    """/metrics and /healthz on a loopback address, served from one background thread."""

    def __init__(self, host: str, port: int, metrics: SelfMetrics, health: Callable[[], tuple[bool, dict]]) -> None:
        registry = metrics.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
                    self._reply(200, ctype, encoder(registry))
                elif path == "/healthz":
                    ok, detail = health()
                    self._reply(200 if ok else 503, "application/json", json.dumps(detail).encode() + b"\n")
                else:
                    self._reply(404, "text/plain", b"not found: try /metrics or /healthz\n")

            def _reply(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # scrapes every 15 s would flood the log
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.address = f"{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="pmaintd-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
