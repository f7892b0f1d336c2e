"""`pmaintd run`: the service. Wires collectors, the store, forecasting and systemd together.

Order matters to systemd: the config is valid, the store open, the collectors built and the models loaded
BEFORE READY=1, so `systemctl start` only succeeds for a daemon that can work. A model bundle that cannot be
loaded is the exception: it costs its kind (logged as an error, shown in STATUS, `pmaintd status` and
/metrics), not the daemon, because a model trained before an upgrade must not stop collection and the other
kinds (see pmaintd.forecasting.LoadedModels). Everything then runs from one asyncio loop driven by APScheduler 3:

- one job per (collector, target) at the target's interval. Each target gets a fixed phase within
  `[daemon] jitter` (a hash of its name), so a thousand agents do not poll in lockstep yet each keeps a
  regular spacing between samples. A real `misfire_grace_time` with coalescing means a stall of the loop
  costs at most one late run, never a lost cycle (APScheduler's 1 s default dropped whole cycles).
- blocking collectors run in a thread pool of their own collector (so one collector's hung hosts cannot
  take threads from another), under the target's timeout. A poll that outlives its timeout is abandoned:
  the target is marked failing and is not polled again until that thread returns, so one hung target
  holds at most one thread. Async collectors (`acollect`, SNMP) are awaited on the loop.
- points go to ONE writer thread (sqlite wants a single writer; InfluxDB wants large batches), which also
  runs housekeeping, so no store call ever blocks the loop.
- forecasting and the policies run in one dedicated thread every `[forecast] interval` (pmaintd.forecasting);
  housekeeping (retention, checkpoints, spool replay, incident detection) every `housekeeping_interval`;
  retraining, when `[daemon] retrain_interval` asks for it, in a child process per kind.
- WATCHDOG=1 is sent by a task on the loop itself: if the loop blocks, the pings stop and systemd kills
  and restarts the daemon, which is what the watchdog is for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from pmaintd import collect
from pmaintd import config as cfgmod
from pmaintd.collect import Collector, Target
from pmaintd.collect.runner import PollResult, describe_failure
from pmaintd.collect.runstate import RunState, RunStateError
from pmaintd.collect.transport import Transport
from pmaintd.forecasting import CycleResult, ForecastJob, LoadedModels
from pmaintd.logs import setup_logging
from pmaintd.sdnotify import Notifier, watchdog_interval
from pmaintd.selfmetrics import HttpEndpoint, SelfMetrics
from pmaintd.store import Store, StoreError, open_store
from pmaintd.telemetry import Point, format_time, now_ns

log = logging.getLogger("pmaintd.daemon")
T = TypeVar("T")

MAX_THREADS_PER_COLLECTOR = 32
"""Upper bound of one collector's worker threads. Each target holds at most one (see module docstring), so
this only limits how many of ONE collector's targets can be in flight or hung at once."""
CLOSE_WAIT = 1.0
"""How long stop and reload wait for connections to close before leaving the stuck ones behind."""
LOOP_STALL_UNHEALTHY = 10.0
"""/healthz answers 503 when the event loop has not ticked for this long."""


class StartupError(Exception):
    """The daemon cannot start; the message is for the operator (stderr), and there was no READY=1."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Writer:
    """The single thread that talks to the store: point batches and store calls, in submission order."""

    def __init__(self, store: Store, metrics: SelfMetrics, batch_size: int) -> None:
        self.store = store
        self._metrics = metrics
        self.batch_size = batch_size
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._last_error: str | None = None
        self.queued = 0
        """Points submitted and not yet handed to the store."""
        self.rescued = 0
        """Points moved to the store's spool at stop because a hung server held the writer."""
        self._count_lock = threading.Lock()
        self.stored = 0
        """Points the store accepted (written, or spooled by a server store) since start."""
        self.refused = 0
        self.final_counters: dict[str, float] = {}
        """The store's own counters just before it was closed (for the stop log line)."""
        # A daemon thread: if a write is stuck past the stop timeout, the process must still be able to exit.
        self._thread = threading.Thread(target=self._run, name="pmaintd-writer", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, points: Sequence[Point]) -> None:
        if points:
            with self._count_lock:
                self.queued += len(points)
            self._metrics.write_queue.inc(len(points))
            self._q.put(list(points))

    def call(self, fn: Callable[[Store], T]) -> Future[T]:
        """Run fn(store) in the writer thread after everything submitted before it."""
        fut: Future[T] = Future()
        self._q.put((fn, fut))
        return fut

    def swap(self, new: Store) -> Future[None]:
        """Make `new` the store for every later write, and close the old one (after its pending writes)."""

        def do(old: Store) -> None:
            self.store = new
            old.close()

        return self.call(do)

    def close(self, timeout: float) -> bool:
        """Write what is queued, close the store; False when that did not finish within timeout (then what
        still waits behind the stuck write goes to the store's spool, where one exists)."""
        self._q.put(None)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return True
        self._rescue()
        return False

    def _rescue(self) -> None:
        """Move the point batches still queued into the store's durable spool (a server store keeps one): a
        server that accepts connections but never answers must not cost the points waiting behind it."""
        spool = getattr(self.store, "spool", None)
        if not callable(spool):
            return
        points: list[Point] = []
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, list):
                points.extend(item)
        if not points:
            return
        try:
            spool(points)
        except Exception as exc:
            log.error("could not spool %d points at stop: %s", len(points), exc)
            return
        self.rescued += len(points)
        self._metrics.write_queue.dec(len(points))
        with self._count_lock:
            self.queued -= len(points)

    def _run(self) -> None:
        while True:
            items = [self._q.get()]
            while True:  # take whatever else is queued, so points are written in large batches
                try:
                    items.append(self._q.get_nowait())
                except queue.Empty:
                    break
            batch: list[Point] = []
            for item in items:
                if isinstance(item, list):
                    batch.extend(item)
                    continue
                self._write(batch)
                batch = []
                if item is None:
                    self._close_store()
                    return
                fn, fut = item
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn(self.store))
                    except BaseException as exc:
                        fut.set_exception(exc)
            self._write(batch)

    def _write(self, points: list[Point]) -> None:
        for i in range(0, len(points), self.batch_size):
            chunk = points[i : i + self.batch_size]
            try:
                self.store.write(chunk)
            except Exception as exc:
                # The store spools what a server could not take; an error here means it refused the points
                # (e.g. a field type conflict), which retrying cannot fix. Say so once per distinct reason.
                self._metrics.points_rejected.inc(len(chunk))
                self.refused += len(chunk)
                msg = str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}"
                if msg != self._last_error:
                    log.error("store %s refused %d points: %s", self.store.location, len(chunk), msg)
                    self._last_error = msg
            else:
                self._metrics.points_stored.inc(len(chunk))
                self.stored += len(chunk)
                self._last_error = None
            finally:
                self._metrics.write_queue.dec(len(chunk))
                with self._count_lock:
                    self.queued -= len(chunk)

    def _close_store(self) -> None:
        get = getattr(self.store, "counters", None)
        try:
            self.final_counters = dict(get()) if callable(get) else {}
            self.store.close()
        except Exception as exc:
            log.error("closing store %s failed: %s", self.store.location, exc)


class QueuedStore:
    """The store as forecasting and actions see it inside the daemon: reads go to the store, writes to the
    writer's queue, so the store keeps a single writer. Closing it is the daemon's business, not theirs."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer

    @property
    def kind(self) -> str:
        return self._writer.store.kind

    @property
    def location(self) -> str:
        return self._writer.store.location

    def write(self, points: Sequence[Point]) -> None:
        self._writer.submit(points)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        return self._writer.store.query(*args, **kwargs)

    def stats(self) -> Any:
        return self._writer.store.stats()

    def maintain(self) -> None:
        self._writer.call(lambda st: st.maintain()).result()

    def close(self) -> None:
        return None


@dataclass
class TargetHealth:
    """What the daemon knows about one (collector, target): drives logs, STATUS, /healthz and metrics."""

    polled: bool = False
    failing: bool = False
    failures: int = 0
    since: float = 0.0
    """Wall time of the last change between failing and healthy."""
    error: str = ""
    running: Future[list[Point]] | None = None
    """A blocking poll's worker-thread future, kept until the thread returns (even after a timeout)."""


def _phase(collector: str, target: str, span: float) -> float:
    """A fixed offset in [0, span) per target: spread over the jitter window, stable across restarts."""
    return zlib.crc32(f"{collector}/{target}".encode()) / 2**32 * span


@dataclass
class Retired:
    """Collectors replaced by a reload (or stopped), with what they hold open."""

    collectors: list[Collector]
    targets: Mapping[str, Sequence[Target]]
    pools: Mapping[str, ThreadPoolExecutor]


async def _release(old: Retired, keep: Mapping[str, Sequence[Target]] | None = None) -> None:
    """Close what retired collectors hold: thread pools (without waiting for hung threads), the SNMP
    engines' sockets bound to this loop (`aclose`), and SSH connections (target transports) that the
    current targets (`keep`) do not share: one host's transport is shared by all its collectors."""
    in_use = {id(t.transport) for ts in (keep or {}).values() for t in ts if t.transport is not None}
    for pool in old.pools.values():
        pool.shutdown(wait=False, cancel_futures=True)
    for c in old.collectors:
        aclose = getattr(c, "aclose", None)
        if aclose is not None:
            try:
                await asyncio.wait_for(aclose(), 2.0)
            except Exception as exc:  # closing is best effort: sockets may already be gone
                log.debug("closing collector %s: %s", c.name, exc)
    transports = {
        id(t.transport): t.transport
        for ts in old.targets.values()
        for t in ts
        if t.transport is not None and id(t.transport) not in in_use
    }
    # A transport whose connection attempt hangs holds its lock, and close() waits for it: close each in
    # its own daemon thread and wait a little, so neither the loop nor the exit can be held up by one.
    closers = [
        threading.Thread(target=_close_transport, args=(tr,), name="pmaintd-close", daemon=True)
        for tr in transports.values()
    ]
    for th in closers:
        th.start()
    await asyncio.to_thread(_join_all, closers, CLOSE_WAIT)


def _close_transport(tr: Transport) -> None:
    try:
        tr.close()
    except Exception as exc:  # closing is best effort: the connection may already be gone
        log.debug("closing transport of %s: %s", tr.host, exc)


def _join_all(threads: Sequence[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for th in threads:
        th.join(max(0.0, deadline - time.monotonic()))


class Daemon:
    """One running pmaintd: config, store writer, collectors and their schedule, systemd and HTTP ends."""

    def __init__(
        self,
        cfg: cfgmod.Config,
        config_path: Path | None,
        state_dir: Path,
        log_level: str | None = None,
        env: Mapping[str, str] = os.environ,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.state_dir = state_dir
        self._log_level = log_level
        self.notifier = Notifier(env)
        self._watchdog = watchdog_interval(env)
        self.metrics = SelfMetrics(self._store_counters)
        self.writer: Writer | None = None
        self.collectors: list[Collector] = []
        self.targets: dict[str, list[Target]] = {}
        self.pools: dict[str, ThreadPoolExecutor] = {}
        self.health: dict[tuple[str, str], TargetHealth] = {}
        self.http: HttpEndpoint | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self._heartbeat = time.monotonic()
        self._ready = False
        self._stopping = False
        self._reload_problem: str | None = None
        self._status_dirty = False
        self._reload_task: asyncio.Task[None] | None = None
        self._reload_again = False
        self._stop_event: asyncio.Event | None = None
        self.runstate: RunState | None = None
        self.models: LoadedModels | None = None
        self.forecast_job: ForecastJob | None = None
        self._forecast_pool = ThreadPoolExecutor(1, thread_name_prefix="pmaintd-forecast")
        self._last_forecast: tuple[float, CycleResult] | None = None
        self._forecast_error: str | None = None
        self._retrain_proc: asyncio.subprocess.Process | None = None
        self._runstate_error: str | None = None

    # ---- start ---------------------------------------------------------------------------------------

    def start(self, once: bool = False) -> None:
        """Everything that must work before READY=1. Raises StartupError with an operator-facing message."""
        self._apply_logging(self.cfg)
        try:
            store = open_store(self.cfg.store, self.state_dir)
        except StoreError as exc:
            raise StartupError(f"store: {exc}") from None
        self.writer = Writer(store, self.metrics, self.cfg.store.batch_size)
        try:
            self.runstate = RunState(self.state_dir)
        except RunStateError as exc:
            raise StartupError(str(exc)) from None
        try:
            self._install_collectors(collect.build(self.cfg))
        except cfgmod.ConfigError as exc:
            raise StartupError(f"config error {exc}", 2) from None
        except Exception as exc:
            raise StartupError(f"collectors: {exc}") from None
        self.models = LoadedModels(self.state_dir, self.cfg.forecast.kinds)
        try:
            loaded = self.models.refresh()  # a bundle that cannot be loaded is logged and degrades its kind
            self._publish_models()
            self.forecast_job = self._in_forecast_thread(self._new_forecast_job, self.cfg, self.models).result()
            recovered = self._in_forecast_thread(self.forecast_job.recover).result()
        except Exception as exc:
            raise StartupError(f"forecasting/actions: {type(exc).__name__}: {exc}") from None
        if loaded:
            log.info("models loaded: %s", ", ".join(loaded))
        if recovered:
            log.warning("settled %d actions a previous process left running (see pmaintd actions list)", recovered)
        if not once:
            self.http = self._bind_http(self.cfg.daemon.listen)

    def _in_forecast_thread(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Forecasting and actions run in one dedicated thread: CPU work off the loop, one DB connection."""
        return self._forecast_pool.submit(fn, *args)

    def _new_forecast_job(self, cfg: cfgmod.Config, models: LoadedModels) -> ForecastJob:
        assert self.writer is not None
        return ForecastJob(cfg, self.state_dir, cast(Store, QueuedStore(self.writer)), models)

    def _load_models(self, kinds: Sequence[str]) -> tuple[LoadedModels, list[str]]:
        models = LoadedModels(self.state_dir, kinds)
        return models, models.refresh(force=True)

    def _publish_models(self) -> None:
        """The kinds' model states to /metrics (STATUS= reads them from self.models when it is sent)."""
        assert self.models is not None
        self.metrics.set_models({s.kind: (s.usable, s.problem is not None) for s in self.models.states()})
        self._publish_status()

    def _apply_logging(self, cfg: cfgmod.Config) -> None:
        setup_logging(self._log_level or cfg.daemon.log_level, cfg.daemon.log_format)

    def _bind_http(self, listen: str) -> HttpEndpoint:
        host, port = cfgmod.parse_listen(listen)
        try:
            return HttpEndpoint(host, port, self.metrics, self._health)
        except OSError as exc:
            raise StartupError(f"daemon.listen: cannot listen on {listen}: {exc.strerror or exc}") from None

    def _install_collectors(self, collectors: list[Collector]) -> Retired:
        """Make `collectors` current: targets, one thread pool per blocking collector, health entries.
        Returns the previous ones, for `_release` once nothing uses them."""
        old = Retired(self.collectors, self.targets, self.pools)
        self.collectors = collectors
        self.targets = {c.name: list(c.targets()) for c in collectors}
        self.pools = {}
        for c in collectors:
            if getattr(c, "acollect", None) is None:
                n = min(MAX_THREADS_PER_COLLECTOR, max(2, len(self.targets[c.name])))
                self.pools[c.name] = ThreadPoolExecutor(n, thread_name_prefix=f"pmaintd-collect-{c.name}")
        keep = {(c, t.name) for c, ts in self.targets.items() for t in ts}
        for key in list(self.health):
            if key not in keep:
                del self.health[key]
                self.metrics.forget_target(*key)
        for key in keep:
            self.health.setdefault(key, TargetHealth())
        return old

    def _store_counters(self) -> Mapping[str, float]:
        store = self.writer.store if self.writer else None
        get = getattr(store, "counters", None)
        return get() if callable(get) else {}

    # ---- collection ----------------------------------------------------------------------------------

    async def poll(self, collector: Collector, target: Target) -> bool:
        """One poll of one target, bounded by its timeout; the points go to the writer. True on success."""
        key = (collector.name, target.name)
        h = self.health.setdefault(key, TargetHealth())
        started = now_ns()
        if h.running is not None and not h.running.done():
            msg = f"its previous poll is still running (over {target.timeout:g}s)"
            self._record(key, started, "skipped", 0.0, msg)
            return False
        t0 = time.monotonic()
        fut: Future[list[Point]] | None = None
        try:
            acollect = getattr(collector, "acollect", None)
            if acollect is not None:
                points = await asyncio.wait_for(acollect(target), target.timeout)
            else:
                fut = self.pools[collector.name].submit(collector.collect, target)
                h.running = fut
                points = await asyncio.wait_for(asyncio.wrap_future(fut), target.timeout)
        except TimeoutError as exc:
            elapsed = time.monotonic() - t0
            if elapsed >= target.timeout * 0.99:
                hung = " (abandoned; its thread is still running)" if fut is not None and not fut.done() else ""
                self._record(key, started, "timeout", elapsed, f"no result within {target.timeout:g}s{hung}")
            else:  # the collector's own timeout (e.g. a command that did not finish)
                self._record(key, started, "timeout", elapsed, str(exc) or "timed out")
            return False
        except asyncio.CancelledError:
            if self._stopping:  # shutdown cancelled the poll: not a failure of the target, nothing to report
                return False
            raise
        except Exception as exc:
            self._record(key, started, "error", time.monotonic() - t0, describe_failure(exc))
            return False
        self.metrics.points_collected.labels(collector.name).inc(len(points))
        assert self.writer is not None
        self.writer.submit(points)
        self._record(key, started, "ok", time.monotonic() - t0, "", points)
        return True

    def _record(
        self,
        key: tuple[str, str],
        started_ns: int,
        outcome: str,
        seconds: float,
        error: str,
        points: Sequence[Point] = (),
    ) -> None:
        """Metrics, run state, the `pmaintd_collector` self-metric point, and a log line only when a target
        starts failing or recovers (not on every poll)."""
        cname, tname = key
        ok = outcome == "ok"
        run = PollResult(cname, tname, started_ns, seconds, list(points), None if ok else error)
        assert self.writer is not None
        self.writer.submit([run.self_point()])
        self.writer.call(lambda _store: self._persist_run(run))
        m = self.metrics
        m.collect_runs.labels(cname, tname, outcome).inc()
        if outcome != "skipped":
            m.collect_duration.labels(cname, tname).observe(seconds)
        m.target_up.labels(cname, tname).set(1 if ok else 0)
        h = self.health.setdefault(key, TargetHealth())
        h.polled = True
        extra = {"collector": cname, "target": tname}
        if ok:
            if h.failing:
                log.info(
                    "%s target %s recovered after %d failed polls (failing since %s)",
                    cname,
                    tname,
                    h.failures,
                    format_time(int(h.since * 1e9)),
                    extra=extra,
                )
                h.failing, h.since = False, time.time()
            h.failures, h.error = 0, ""
        else:
            h.failures += 1
            h.error = error
            if not h.failing:
                h.failing, h.since = True, time.time()
                log.warning(
                    "%s target %s is failing: %s (not repeated until it recovers)", cname, tname, error, extra=extra
                )
        self._publish_status()

    def _persist_run(self, run: PollResult) -> None:
        """In the writer thread: the run state `pmaintd status` shows (its own sqlite file)."""
        assert self.runstate is not None
        try:
            run.record(self.runstate)
        except RunStateError as exc:
            if str(exc) != self._runstate_error:
                log.error("%s", exc)
            self._runstate_error = str(exc)
        else:
            self._runstate_error = None

    # ---- housekeeping --------------------------------------------------------------------------------

    async def forecast(self) -> bool:
        """Score every entity that has a model and run the policies (in the forecast thread). What changed
        on disk since the last run (a promotion, a repaired or a broken bundle) is loaded first; a kind whose
        bundles cannot be loaded is not scored, and the others are."""
        assert self.models is not None and self.forecast_job is not None
        job = self.forecast_job
        try:
            changed = await asyncio.wrap_future(self._in_forecast_thread(self.models.refresh))
        except Exception as exc:  # not a broken bundle (that is a kind's state) but e.g. no process to probe it
            log.error("could not look for changed models (tried again next run): %s: %s", type(exc).__name__, exc)
            changed = []
        if changed:
            log.info("models loaded: %s", ", ".join(changed))
        self._publish_models()
        if not self.models.any():
            return True
        try:
            result = await asyncio.wrap_future(self._in_forecast_thread(job.run, now_ns()))
        except Exception as exc:
            self.metrics.forecast_runs.labels("error").inc()
            msg = f"{type(exc).__name__}: {exc}"
            if msg != self._forecast_error:
                log.error("forecasting failed: %s", msg)
            self._forecast_error = msg
            self._publish_status()
            return False
        self._forecast_error = None
        self.metrics.forecast_runs.labels("ok").inc()
        self.metrics.forecast_last.set(time.time())
        for (kind, level), n in result.by_level.items():
            self.metrics.forecasts.labels(kind, level).inc(n)
        for outcome, n in result.decisions.items():
            self.metrics.actions.labels(outcome).inc(n)
        self._last_forecast = (time.time(), result)
        log.info(
            "forecast: %d entities scored in %.1fs, %d alarms%s",
            result.scored,
            result.seconds,
            result.alarms,
            f"; policy decisions {result.decisions}" if result.decisions else "",
        )
        self._publish_status()
        return True

    async def retrain(self) -> bool:
        """`[daemon] retrain_interval`: `pmaintd retrain --kind K` for each forecast kind, each in its own
        process (training must not share this one's CPU and memory); the next forecast loads a promoted model."""
        ok = True
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        for kind in self.cfg.forecast.kinds:
            argv = [sys.executable, "-c", "from pmaintd.cli import main; main()"]
            argv += ["--config", str(self.config_path)] if self.config_path else []
            argv += ["--state-dir", str(self.state_dir), "retrain", "--kind", kind, "--json"]
            t0 = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
            self._retrain_proc = proc
            try:
                out, err = await proc.communicate()
            finally:
                self._retrain_proc = None
            took = time.monotonic() - t0
            if proc.returncode != 0:
                lines = [ln for ln in err.decode(errors="replace").splitlines() if ln.strip()]
                log.warning("retrain %s failed (exit %s) after %.0fs: %s", kind, proc.returncode, took,
                            lines[-1] if lines else "no message")  # fmt: skip
                self.metrics.retrains.labels(kind, "failed").inc()
                ok = False
                continue
            try:
                res = json.loads(out)
            except ValueError:
                res = {}
            promoted = bool(res.get("promoted"))
            self.metrics.retrains.labels(kind, "promoted" if promoted else "kept").inc()
            log.info("retrain %s in %.0fs: %s (%s)", kind, took,
                     f"promoted {res.get('challenger_version')}" if promoted else "kept the current model",
                     res.get("reason", ""))  # fmt: skip
        return ok

    async def housekeeping(self) -> bool:
        """store.maintain() (retention, checkpoints, spool replay), then automatic incident detection
        (`[incidents] detect`), both in the writer thread: detection writes what it finds, and the store
        has one writer."""
        assert self.writer is not None
        ok = True
        try:
            await asyncio.wrap_future(self.writer.call(lambda st: st.maintain()))
        except Exception as exc:
            ok = False
            log.error("housekeeping of store %s failed: %s", self.writer.store.location, exc)
        if self.cfg.incidents.detect:
            try:
                new = await asyncio.wrap_future(self.writer.call(self._detect_incidents))
            except Exception as exc:
                ok = False
                log.error("incident detection failed: %s", exc)
            else:
                if new:
                    kinds = ", ".join(sorted({f"{i.kind} {i.entity}" for i in new})[:10])
                    log.info("recorded %d new incidents from telemetry: %s", len(new), kinds)
        self.metrics.housekeeping_runs.labels("ok" if ok else "error").inc()
        return ok

    def _detect_incidents(self, store: Store) -> list[Any]:
        from pmaintd.forecast import incidents

        c = self.cfg.incidents
        now = now_ns()
        rules = incidents.DetectionRules(c.host_unreachable_after, c.interface_down_after, c.disk_vanished_after)
        found = incidents.detect(store, now - int(c.lookback * 1e9), now, rules)
        return incidents.record(store, found, "auto")

    # ---- status --------------------------------------------------------------------------------------

    def _target_summary(self) -> tuple[int, int, list[str], int]:
        """(up, total, down names, not yet polled)."""
        snapshot = dict(self.health)
        down = sorted(f"{c}/{t}" for (c, t), h in snapshot.items() if h.failing)
        unpolled = sum(1 for h in snapshot.values() if not h.polled)
        return len(snapshot) - len(down) - unpolled, len(snapshot), down, unpolled

    def status_text(self) -> str:
        """STATUS= for systemctl status: plain words, most important first."""
        up, total, down, unpolled = self._target_summary()
        parts = []
        if self._reload_problem:
            parts.append(self._reload_problem)
        parts.append(f"{up} of {total} targets up")
        if down:
            parts.append("down: " + ", ".join(down[:5]) + (f" and {len(down) - 5} more" if len(down) > 5 else ""))
        if unpolled:
            parts.append(f"{unpolled} not polled yet")
        parts += self._model_problems()  # forecasting last: a model that cannot be loaded, then the last run
        parts.append(self._forecast_status())
        return "; ".join(parts)

    def _model_problems(self) -> list[str]:
        """One phrase per kind whose model is broken (not scored, or on the shipped model instead)."""
        if self.models is None or not self.cfg.forecast.enabled:
            return []
        return [s.summary() for s in self.models.states() if s.problem]

    def _forecast_status(self) -> str:
        if not self.cfg.forecast.enabled:
            return "forecasting off"
        if self._forecast_error:
            return f"forecasting failing: {self._forecast_error}"
        if self.models is None or not self.models.any():
            return "no forecast model yet"
        if self._last_forecast is None:
            return f"models {self.models.describe()}, no forecast yet"
        at, r = self._last_forecast
        when = time.strftime("%H:%M:%SZ", time.gmtime(at))
        return f"last forecast {when}: {r.scored} entities, {r.alarms} alarms"

    def _publish_status(self) -> None:
        """Mark STATUS as changed; `_tick` sends it at most once a second (a thousand targets finishing
        their polls must not become a thousand messages to systemd)."""
        self._status_dirty = True

    def _health(self) -> tuple[bool, dict[str, object]]:
        """/healthz: unhealthy when the loop is stalled or the writer thread died."""
        lag = time.monotonic() - self._heartbeat
        writer_ok = self.writer is not None and self.writer.alive
        up, total, down, unpolled = self._target_summary()
        ok = self._ready and not self._stopping and lag < LOOP_STALL_UNHEALTHY and writer_ok
        detail: dict[str, object] = {
            "status": "ok" if ok else "unhealthy",
            "ready": self._ready,
            "stopping": self._stopping,
            "loop_lag_seconds": round(lag, 3),
            "writer_alive": writer_ok,
            "targets_up": up,
            "targets_total": total,
            "targets_down": down,
            "targets_not_polled": unpolled,
            "reload_error": self._reload_problem,
            "model_problems": self._model_problems(),
            "status_text": self.status_text(),
        }
        return ok, detail

    # ---- the service ---------------------------------------------------------------------------------

    def _schedule(self) -> None:
        """(Re)create every job from the current config and collectors."""
        sched = self.scheduler
        assert sched is not None
        for job in sched.get_jobs():
            job.remove()
        now = datetime.now(UTC)
        d = self.cfg.daemon
        for c in self.collectors:
            for t in self.targets[c.name]:
                start = now + timedelta(seconds=_phase(c.name, t.name, min(d.jitter, t.interval)))
                sched.add_job(
                    self.poll,
                    IntervalTrigger(seconds=t.interval, start_date=start, timezone=UTC),
                    args=(c, t),
                    id=f"collect:{c.name}:{t.name}",
                    name=f"collect {c.name} {t.name}",
                )
        if self.cfg.forecast.enabled:
            first = min(self.cfg.forecast.interval, d.jitter + 10.0)  # soon after the first polls
            sched.add_job(
                self.forecast,
                IntervalTrigger(
                    seconds=self.cfg.forecast.interval, start_date=now + timedelta(seconds=first), timezone=UTC
                ),
                id="forecast",
                name="forecast",
            )
        if d.retrain_interval > 0:
            sched.add_job(
                self.retrain,
                IntervalTrigger(
                    seconds=d.retrain_interval, start_date=now + timedelta(seconds=d.retrain_interval), timezone=UTC
                ),
                id="retrain",
                name="retrain",
            )
        sched.add_job(
            self.housekeeping,
            IntervalTrigger(
                seconds=d.housekeeping_interval,
                start_date=now + timedelta(seconds=d.housekeeping_interval),
                timezone=UTC,
            ),
            id="housekeeping",
            name="housekeeping",
        )

    def _on_scheduler_event(self, event: JobEvent) -> None:
        missed = event.code == EVENT_JOB_MISSED
        self.metrics.jobs_missed.labels(event.job_id.split(":", 1)[0], "misfire" if missed else "still_running").inc()
        if missed:
            log.warning("job %s missed a run by more than daemon.misfire_grace", event.job_id)

    async def _tick(self) -> None:
        """The loop's heartbeat for /healthz, and WATCHDOG=1 when systemd asked for it."""
        next_ping = 0.0
        while True:
            now = time.monotonic()
            self._heartbeat = now
            if self._watchdog is not None and now >= next_ping:
                self.notifier.watchdog()
                next_ping = now + self._watchdog
            if self._status_dirty and self._ready and not self._stopping:
                self._status_dirty = False
                self.notifier.status(self.status_text())
            await asyncio.sleep(min(1.0, self._watchdog or 1.0))

    def _on_stop(self, sig: signal.Signals) -> None:
        if self._stopping:
            return
        log.info("%s received: stopping", sig.name)
        self._stopping = True
        self.notifier.stopping()
        assert self._stop_event is not None
        self._stop_event.set()

    def _on_hup(self) -> None:
        if self._stopping:
            return
        if self._reload_task is not None and not self._reload_task.done():
            self._reload_again = True  # a second SIGHUP during a reload: reload once more afterwards
            return
        self._reload_task = asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> None:
        """SIGHUP: reload config and collectors; on any problem keep running exactly as before."""
        while True:
            self._reload_again = False
            await self._reload_once()
            if not self._reload_again or self._stopping:
                return

    async def _reload_once(self) -> None:
        self.notifier.reloading()
        src = str(self.config_path) if self.config_path else "built-in defaults"
        log.info("SIGHUP: reloading configuration from %s", src)
        new_collectors: list[Collector] = []
        new_store: Store | None = None
        new_http: HttpEndpoint | None = None
        new_job: ForecastJob | None = None
        try:
            new_cfg = await asyncio.to_thread(cfgmod.load, self.config_path)
            new_collectors = await asyncio.to_thread(collect.build, new_cfg)
            new_models, loaded = await asyncio.to_thread(self._load_models, new_cfg.forecast.kinds)
            # The action engine's connection may be used from any thread: build it here, run it in the
            # forecast thread. Building does not wait for a forecast that is running.
            new_job = await asyncio.to_thread(self._new_forecast_job, new_cfg, new_models)
            if new_cfg.store != self.cfg.store:
                new_store = await asyncio.to_thread(open_store, new_cfg.store, self.state_dir)
            if new_cfg.daemon.listen != self.cfg.daemon.listen:
                new_http = self._bind_http(new_cfg.daemon.listen)
        except Exception as exc:
            unused = Retired(new_collectors, {c.name: list(c.targets()) for c in new_collectors}, {})
            await _release(unused, keep=self.targets)
            if new_store is not None:
                new_store.close()
            if new_job is not None:
                new_job.close()
            self.metrics.reloads.labels("failed").inc()
            self._reload_problem = f"reload failed, still running on the previous config: {exc}"
            log.error("%s", self._reload_problem)
            self.notifier.send("READY=1", f"STATUS={' '.join(self.status_text().split())}")
            return
        self.cfg = new_cfg
        self._apply_logging(new_cfg)
        if new_store is not None:
            assert self.writer is not None
            self.writer.swap(new_store)
            self.writer.batch_size = new_cfg.store.batch_size
        if new_http is not None:
            old, self.http = self.http, new_http
            if old is not None:
                await asyncio.to_thread(old.close)
        old_job, self.forecast_job, self.models = self.forecast_job, new_job, new_models
        if old_job is not None:
            self._in_forecast_thread(old_job.close)  # after a forecast that may be running with it
        if loaded:
            log.info("models loaded: %s", ", ".join(loaded))
        self._publish_models()
        retired = self._install_collectors(new_collectors)
        self._schedule()
        await _release(retired, keep=self.targets)
        self._reload_problem = None
        self.metrics.reloads.labels("ok").inc()
        log.info("reloaded %s: %s", src, cfgmod.summary(new_cfg, self.config_path))
        self.notifier.send("READY=1", f"STATUS={' '.join(self.status_text().split())}")

    async def serve(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        d = self.cfg.daemon
        self.scheduler = AsyncIOScheduler(
            event_loop=loop,
            timezone=UTC,
            job_defaults={"misfire_grace_time": int(max(1, d.misfire_grace)), "coalesce": True, "max_instances": 1},
        )
        # A poll that outlives its interval is reported by us as "skipped"/"timeout"; the scheduler's own
        # warning for it would repeat every interval.
        logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
        self.scheduler.add_listener(self._on_scheduler_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        self._schedule()
        self.scheduler.start()
        tick = loop.create_task(self._tick())
        self._ready = True
        self.notifier.ready(" ".join(self.status_text().split()))
        assert self.http is not None
        log.info(
            "ready: %s; /metrics and /healthz on %s", cfgmod.summary(self.cfg, self.config_path), self.http.address
        )
        await self._stop_event.wait()
        return await self._shutdown([tick])

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> int:
        """Stop scheduling, cancel polls in flight, flush the writer within stop_timeout."""
        assert self.scheduler is not None and self.writer is not None
        self.scheduler.shutdown(wait=False)  # cancels the poll tasks that are running
        for t in [*tasks, self._reload_task]:
            if t is not None:
                t.cancel()
        await asyncio.sleep(0)  # let cancellations run before the blocking flush below
        timeout = self.cfg.daemon.stop_timeout
        t0 = time.monotonic()
        flushed = await asyncio.to_thread(self.writer.close, timeout)
        if flushed:
            log.info(
                "stopped: pending writes flushed in %.2fs; %d points stored since start, %d refused%s",
                time.monotonic() - t0,
                self.writer.stored,
                self.writer.refused,
                "".join(f", {k}={v}" for k, v in sorted(self.writer.final_counters.items())),
            )
        else:
            log.error(
                "stopped: the store did not finish writing within %gs; exiting anyway, %d points spooled for "
                "the next start, %d points not written",
                timeout,
                self.writer.rescued,
                self.writer.queued,
            )
        if self.http is not None:
            await asyncio.to_thread(self.http.close)  # shutdown() waits up to 0.5 s for the serving thread
        await _release(Retired(self.collectors, self.targets, self.pools))
        self._stop_forecasting()
        if self._retrain_proc is not None and self._retrain_proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._retrain_proc.pid, signal.SIGTERM)  # its challenger is simply not promoted
        if flushed and self.runstate is not None:
            self.runstate.close()
        self.notifier.close()
        return 0

    def _stop_forecasting(self) -> None:
        """Close the action engine after any forecast still running; never wait for that forecast (a
        crashed or interrupted action is settled by `recover` at the next start)."""
        if self.forecast_job is not None:
            self._in_forecast_thread(self.forecast_job.close)
        self._forecast_pool.shutdown(wait=False)

    async def once(self) -> int:
        """`run --once`: every job one time (polls concurrently), then flush and exit; 1 if any poll failed."""
        results = await asyncio.gather(*(self.poll(c, t) for c in self.collectors for t in self.targets[c.name]))
        rt = await self.retrain() if self.cfg.daemon.retrain_interval > 0 else True
        fc = await self.forecast() if self.cfg.forecast.enabled else True
        hk = await self.housekeeping()
        assert self.writer is not None
        await _release(Retired(self.collectors, self.targets, self.pools))
        self._stop_forecasting()
        if not await asyncio.to_thread(self.writer.close, self.cfg.daemon.stop_timeout):
            log.error("the store did not finish writing within %gs", self.cfg.daemon.stop_timeout)
            return 1
        if self.runstate is not None:
            self.runstate.close()
        for (c, t), h in sorted(self.health.items()):
            if h.failing:
                print(f"pmaintd: {c} {t}: {h.error}", file=sys.stderr)
        return 0 if all(results) and rt and fc and hk else 1


def run(
    cfg: cfgmod.Config, config_path: Path | None, state_dir: Path, *, once: bool = False, log_level: str | None = None
) -> int:
    """Start, serve until stopped (or one cycle with once=True), and return the process exit code."""
    daemon = Daemon(cfg, config_path, state_dir, log_level)
    try:
        daemon.start(once=once)
    except StartupError as exc:
        print(f"pmaintd: cannot start: {exc}", file=sys.stderr)
        if daemon.writer is not None:
            daemon.writer.close(cfg.daemon.stop_timeout)
        return exc.exit_code
    code = asyncio.run(daemon.once() if once else daemon.serve())
    workers = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    _join_all(workers, 0.5)  # idle pool threads leave at once after their pool's shutdown
    stuck = [t.name for t in workers if t.is_alive()]
    if stuck:
        # A collector thread hung in a device, or a forecast still computing, would be joined at interpreter
        # exit and hold the process past systemd's stop timeout; what matters is flushed, so leave now.
        log.warning("exiting with %d worker threads still busy (%s)", len(stuck), ", ".join(sorted(set(stuck))[:5]))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
