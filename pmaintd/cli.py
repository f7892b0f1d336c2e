"""Every pmaintd command. Thin on purpose: parse, call the library, print (rich tables, or --json).

Exit codes: 0 ok, 1 the command ran but failed (e.g. a collector failed), 2 bad usage or bad config.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from pmaintd import config as cfgmod
from pmaintd.logs import setup_logging
from pmaintd.telemetry import format_time

EXIT_FAILED = 1
EXIT_USAGE = 2

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # errors stay one line in logs and pipes


@dataclass
class App:
    """What every command needs: the resolved config and state dir. Config loads lazily so that
    `--help` works with a broken config, and once, so every command reports config errors the same way."""

    config_arg: Path | None
    state_dir_arg: Path | None
    _loaded: cfgmod.Config | None = field(default=None, repr=False)

    @property
    def config_path(self) -> Path | None:
        return cfgmod.resolve_config_path(self.config_arg)

    @property
    def state_dir(self) -> Path:
        return cfgmod.resolve_state_dir(self.state_dir_arg)

    @property
    def config(self) -> cfgmod.Config:
        if self._loaded is None:
            try:
                self._loaded = cfgmod.load(self.config_path)
            except cfgmod.ConfigError as exc:
                print_error("config error", exc)
                sys.exit(EXIT_USAGE)
        return self._loaded

    @contextmanager
    def store(self) -> Iterator[Any]:
        """The configured store, closed on exit; a store that cannot open is a clean error, not a traceback."""
        from pmaintd.store import StoreError, open_store

        try:
            st = open_store(self.config.store, self.state_dir)
        except StoreError as exc:
            print_error("store error", exc)
            sys.exit(EXIT_FAILED)
        try:
            yield st
        finally:
            st.close()


pass_app = click.make_pass_decorator(App)


def print_error(label: str, message: object) -> None:
    """An error line on stderr. The message can quote a device, a file or a server (sysName, smartctl output,
    Grafana's answer), so it is printed literally, never as rich markup."""
    err_console.print(f"[red]{label}[/red] {escape(str(message))}", highlight=False)


def print_json(obj: object) -> None:
    """Machine-readable output: one JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option(
    "--config",
    "config_arg",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML config; else $PMAINTD_CONFIG, else /etc/pmaintd/pmaintd.toml if present, else built-in defaults.",
)
@click.option(
    "--state-dir",
    "state_dir_arg",
    type=click.Path(path_type=Path, file_okay=False),
    help="State directory; else $PMAINTD_STATE_DIR, else /var/lib/pmaintd (root) or $XDG_STATE_HOME/pmaintd.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="Override [daemon] log_level.",
)
@click.version_option(package_name="pmaintd")
@click.pass_context
def cli(ctx: click.Context, config_arg: Path | None, state_dir_arg: Path | None, log_level: str | None) -> None:
    """pmaintd: predictive maintenance for fleets. Collects SNMP, SMART and host telemetry, forecasts
    disk, host and network failures, and acts before they happen."""
    ctx.obj = App(config_arg, state_dir_arg)
    setup_logging(log_level or "warning", "text")


@cli.command("check-config")
@pass_app
def check_config(app: App) -> None:
    """Validate the config; exit 2 naming the key, the value and what is allowed when it is not valid."""
    cfg = app.config
    click.echo(cfgmod.summary(cfg, app.config_path))


@cli.command("collect")
@click.option("--once", is_flag=True, help="Required: one pass of the enabled collectors (schedules: `pmaintd run`).")
@click.option("--only", "only", multiple=True, metavar="NAME", help="Only this collector (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the points as a JSON array.")
@click.option("--no-store", is_flag=True, help="Do not store the points (nor record the run in the run state).")
@pass_app
def collect_cmd(app: App, once: bool, only: tuple[str, ...], as_json: bool, no_store: bool) -> None:
    """One pass of the enabled collectors over their targets; stores the points and each run's outcome.
    A failing collector is reported on stderr and the others still run; exit 1 if any failed."""
    from pmaintd import collect
    from pmaintd.collect.runner import run_once
    from pmaintd.collect.runstate import RunState, RunStateError

    if not once:
        raise click.UsageError("collect runs a single pass and needs --once; scheduled collection is `pmaintd run`")
    cfg = app.config
    try:
        collectors = collect.build(cfg, only)
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="--only") from None
    disabled = sorted(set(only) - {c.name for c in collectors})
    if disabled:
        raise click.BadParameter(
            f"collector {disabled[0]!r} is not enabled (collect.{disabled[0]}.enabled = false)", param_hint="--only"
        )
    if not collectors:
        err_console.print("no collector is enabled in the config", highlight=False)
        sys.exit(EXIT_USAGE)
    try:
        state = None if no_store else RunState(app.state_dir)
    except RunStateError as exc:
        print_error("run state error", escape(str(exc)))
        sys.exit(EXIT_FAILED)
    try:
        results = run_once(collectors, state)
    finally:
        if state is not None:
            state.close()
    failed = [r for r in results if not r.ok]
    for r in failed:
        # The error can quote a device (an SNMP sysName, smartctl's output): never rich markup.
        err_console.print(f"[red]collector {r.collector} failed[/red] {escape(f'on {r.target}: {r.error}')}",
                          highlight=False)
    points = [p for r in results for p in r.points]
    store_failed = False
    if not no_store:
        from pmaintd.store import StoreError

        with app.store() as st:
            try:
                st.write(points + [r.self_point() for r in results])
            except StoreError as exc:
                print_error("store error", exc)
                store_failed = True
    if as_json:
        print_json([p.to_json() for p in points])
    else:
        rows = [
            [r.collector, r.target, len(r.points), f"{r.duration_s:.3f}s", "ok" if r.ok else f"error: {r.error}"]
            for r in results
        ]
        console.print(_table("collect --once", ["collector", "target", "points", "duration", "outcome"], rows))
    if failed or store_failed:
        sys.exit(EXIT_FAILED)


def _age(ns: int) -> str:
    """How long ago, in the largest unit that keeps it readable; a newest point stamped after now (a device
    clock ahead) says `ahead`."""
    s = abs(ns) / 1e9
    text = next((f"{int(s // u)}{name}" for u, name in ((86400, "d"), (3600, "h"), (60, "m")) if s >= 2 * u),
                f"{int(s)}s")
    return f"{text} ago" if ns >= 0 else f"{text} ahead"


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@pass_app
def status_cmd(app: App, as_json: bool) -> None:
    """The store (kind, location), per measurement its points of the last 24 h and its newest point (time and
    age: is data arriving?), per collector and target its last run and outcome, and per forecast kind the model
    the daemon scores it with (or why none loads). Answers in about a second whatever the volume stored (no
    count over all time). Exit 1 when the store cannot be read or a model bundle is broken (its kind is not
    scored, or scored by the shipped model instead of the promoted one): a monitoring check can run
    `pmaintd status >/dev/null` and alert on the exit code."""
    from pmaintd import collect
    from pmaintd.collect.runstate import FILENAME, RunState, RunStateError
    from pmaintd.forecasting import LoadedModels
    from pmaintd.store import StoreError

    cfg = app.config
    runs = []
    if (app.state_dir / FILENAME).exists():
        try:
            with RunState(app.state_dir, readonly=True) as state:
                runs = state.all()
        except RunStateError as exc:
            print_error("run state error", escape(str(exc)))
            sys.exit(EXIT_FAILED)
    enabled = [c.name for c in collect.build(cfg)]
    never = [n for n in enabled if not any(r.collector == n for r in runs)]
    # The same choice from the same files as the daemon's (it looks again before every forecast run).
    models = LoadedModels(app.state_dir, cfg.forecast.kinds if cfg.forecast.enabled else [], report=False)
    models.refresh()
    from pmaintd.act.engine import ActionStateError, recurring_healing

    try:
        recurring = recurring_healing(cfg, app.state_dir)
    except ActionStateError as exc:
        print_error("action state error", escape(str(exc)))
        sys.exit(EXIT_FAILED)
    store_error = None
    with app.store() as st:
        kind, location = st.kind, st.location
        try:
            stats = st.stats()
        except StoreError as exc:
            stats, store_error = [], str(exc)
    if as_json:
        print_json(
            {
                "store": {"kind": kind, "location": location, "error": store_error},
                "measurements": [
                    {
                        "measurement": s.measurement,
                        "points_24h": s.points_24h,
                        "newest": format_time(s.newest),
                    }
                    for s in stats
                ],
                "collectors": [r.to_json() for r in runs] + [{"collector": n, "last_run": None} for n in never],
                "recurring": [{"kind": r.kind, "entity": r.entity, "count": r.count} for r in recurring],
                "models": [s.to_json() for s in models.states()],
            }
        )
    else:
        console.print(f"store: {kind} at {location}", highlight=False)
        if store_error:
            print_error("store error", store_error)
        now = time.time_ns()
        m_rows = [[s.measurement, s.points_24h, format_time(s.newest)[:19] + "Z", _age(now - s.newest)] for s in stats]
        console.print(_table("measurements", ["measurement", "points (24h)", "newest", "age"], m_rows))
        c_rows = [
            [
                r.collector,
                r.target,
                format_time(r.started_ns)[:19] + "Z",  # to the second, so the table fits a terminal
                f"{r.duration_s:.3f}s",
                r.points,
                "ok" if r.ok else f"error ({r.consecutive_failures}x): {r.error}",
            ]
            for r in runs
        ] + [[n, "", "never", "", "", ""] for n in never]
        c_cols = ["collector", "target", "last run", "duration", "points", "outcome"]
        console.print(_table("collectors", c_cols, c_rows))
        for r in recurring:
            console.print(f"recurring healing: {r.describe()} (root cause not fixed)", highlight=False)
        md_rows = [
            [s.kind, s.source if s.usable else "NOT SCORED" if s.problem else "none", s.version, s.path]
            for s in models.states()
        ]
        console.print(_table("models", ["kind", "in use", "version", "path"], md_rows))
        for s in models.states():
            if s.problem:
                print_error("model problem", s.summary())
    if store_error or any(s.problem for s in models.states()):
        sys.exit(EXIT_FAILED)


@cli.command("run")
@click.option("--once", is_flag=True, help="Run every job one time (collect, forecast, housekeeping), then exit.")
@click.pass_context
def run_cmd(ctx: click.Context, once: bool) -> None:
    """The daemon, in the foreground (systemd Type=notify): scheduled collection, forecasting and
    housekeeping; SIGHUP reloads the config, SIGTERM flushes and exits. Exit 1 with --once if a poll failed."""
    from pmaintd.daemon import run

    app: App = ctx.obj
    cfg = app.config  # exits 2 naming the key when the config is invalid, before anything starts
    sys.exit(run(cfg, app.config_path, app.state_dir, once=once, log_level=ctx.parent.params["log_level"]))


@contextmanager
def _action_engine(app: App) -> Iterator[Any]:
    """The action engine on the configured store; closed on exit."""
    from pmaintd.act.engine import ActionEngine, ActionStateError
    from pmaintd.grafana import annotator

    with app.store() as st:
        # Every transition is also a Grafana annotation when [grafana] is configured (best effort, logged once).
        try:
            engine = ActionEngine(app.config, app.state_dir, st, annotate=annotator(app.config.grafana))
        except ActionStateError as exc:
            print_error("action state error", escape(str(exc)))
            sys.exit(EXIT_FAILED)
        try:
            yield engine
        finally:
            engine.close()


def _operator() -> str:
    """Who is approving: the sudo caller if any, else the login user (recorded in the audit log)."""
    import getpass
    import os

    return os.environ.get("SUDO_USER") or getpass.getuser()


def _action_call(fn: Any, *args: Any) -> Any:
    """Run an engine request; an operator error (unknown id, illegal move, limit) is a message and exit 1."""
    from pmaintd.act.engine import ActionError, IllegalTransition, NoSuchAction

    try:
        return fn(*args)
    except (ActionError, IllegalTransition, NoSuchAction) as exc:  # may quote an entity name from a device
        print_error("error", escape(str(exc)))
        sys.exit(EXIT_FAILED)


def _print_action_result(rec: Any, as_json: bool) -> None:
    if as_json:
        print_json(rec.to_json())
    else:
        click.echo(f"action {rec.id} {rec.state}: {rec.message}")
    if rec.state in ("failed", "unknown"):
        sys.exit(EXIT_FAILED)


@cli.group("actions")
def actions_group() -> None:
    """Actions taken (or proposed) on forecasts: list, inspect, approve, reject, undo, and test policies."""


@actions_group.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(["proposed", "approved", "auto", "observed", "rejected", "expired", "running", "succeeded",
                       "failed", "unknown", "undone"]),
    help="Only actions in this state (repeatable).",
)
@click.option("--limit", default=200, show_default=True, help="Newest N actions.")
@click.option("--json", "as_json", is_flag=True, help="JSON array of action objects.")
@pass_app
def actions_list(app: App, states: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Actions, newest first; `recurring` marks entities healed again and again (root cause not fixed)."""
    with _action_engine(app) as engine:
        recs = engine.list(states, limit)
        flagged = {(r.kind, r.entity) for r in engine.recurring()}
    rows = [{**r.to_json(), "recurring": (r.kind, r.entity) in flagged} for r in recs]
    if as_json:
        print_json(rows)
        return
    cols = ["id", "state", "mode", "policy", "action", "kind", "entity", "probability", "created", "recurring"]
    table = [[r[c] if c != "recurring" else ("yes" if r[c] else "") for c in cols] for r in rows]
    console.print(_table("actions", cols, table))


@actions_group.command("show")
@click.argument("action_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="The action and its audit history as JSON.")
@pass_app
def actions_show(app: App, action_id: int, as_json: bool) -> None:
    """One action: the exact commands, its outcome and output, and every transition from the audit log."""
    with _action_engine(app) as engine:
        rec = _action_call(engine.get, action_id)
        history = engine.history(action_id)
    obj = {**rec.to_json(), "history": history}
    if as_json:
        print_json(obj)
        return
    for k in ("id", "state", "mode", "policy", "action", "kind", "entity", "host", "run_on", "probability",
              "horizon_hours", "reasons", "created", "window_end", "command", "verify", "undo", "returncode",
              "message"):  # fmt: skip
        click.echo(f"{k:>13}: {obj[k]}")
    for k in ("stdout", "stderr"):
        if obj[k]:
            click.echo(f"{k:>13}:\n{obj[k]}")
    for h in history:
        click.echo(f"  {h['time']}  {h.get('from') or '-':>9} -> {h['state']:<9} {h.get('message', '')}")


@actions_group.command("approve")
@click.argument("action_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def actions_approve(app: App, action_id: int, as_json: bool) -> None:
    """Approve a proposed action and carry it out now (limits are checked first). Exit 1 if it failed."""
    with _action_engine(app) as engine:
        _action_call(engine.recover)
        rec = _action_call(engine.approve, action_id, _operator())
    _print_action_result(rec, as_json)


@actions_group.command("reject")
@click.argument("action_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def actions_reject(app: App, action_id: int, as_json: bool) -> None:
    """Refuse a proposed action; it is kept (and audited) as rejected and will not be proposed again this window."""
    with _action_engine(app) as engine:
        rec = _action_call(engine.reject, action_id, _operator())
    _print_action_result(rec, as_json)


@actions_group.command("undo")
@click.argument("action_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def actions_undo(app: App, action_id: int, as_json: bool) -> None:
    """Run a finished action's undo command; it becomes `undone` when the undo succeeds."""
    with _action_engine(app) as engine:
        rec = _action_call(engine.undo, action_id)
    _print_action_result(rec, as_json)


@actions_group.command("resolve")
@click.argument("action_id", type=int)
@click.argument("outcome", type=click.Choice(["succeeded", "failed"]))
@click.option("--json", "as_json", is_flag=True)
@pass_app
def actions_resolve(app: App, action_id: int, outcome: str, as_json: bool) -> None:
    """Settle an `unknown` action (interrupted, and no verify command could decide) after checking the host."""
    with _action_engine(app) as engine:
        rec = _action_call(engine.resolve, action_id, outcome, _operator())
    if as_json:
        print_json(rec.to_json())
    else:
        click.echo(f"action {rec.id} {rec.state}: {rec.message}")


@actions_group.command("recover")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def actions_recover(app: App, as_json: bool) -> None:
    """Settle actions a crashed process left running: mark them unknown and run their verify (never re-run)."""
    with _action_engine(app) as engine:
        recs = _action_call(engine.recover)
    if as_json:
        print_json([r.to_json() for r in recs])
        return
    for rec in recs:
        click.echo(f"action {rec.id} {rec.state}: {rec.message}")
    if not recs:
        click.echo("nothing to recover")


@actions_group.command("evaluate")
@click.option("--forecasts", "forecasts_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help='JSON lines: {"kind", "entity", "probability", "horizon_hours", "reasons"?, "host"?}.')  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Decide and print, but record and run nothing.")
@click.option("--json", "as_json", is_flag=True, help="Decisions as a JSON array.")
@pass_app
def actions_evaluate(app: App, forecasts_path: Path, dry_run: bool, as_json: bool) -> None:
    """Run the policy engine once on forecasts and (unless --dry-run) carry out what it decides; prints every
    decision with its reason, including why something was not acted on. Exit 1 if an action failed."""
    from pmaintd.act.policy import ForecastError, read_forecasts

    try:
        forecasts = read_forecasts(forecasts_path)
    except ForecastError as exc:
        print_error("forecast error", exc)
        sys.exit(EXIT_USAGE)
    with _action_engine(app) as engine:
        decisions = _action_call(engine.run_once, forecasts, dry_run)
    rows = [d.to_json() for d in decisions]
    if as_json:
        print_json(rows)
    else:
        # One line per decision, so the reason (the point of a dry run) is never cut by a narrow table.
        if dry_run:
            click.echo("dry run: nothing recorded or run")
        for r in rows:
            ref = f" [action {r['action_id']} {r['state']}]" if r["action_id"] is not None else ""
            policy = f"policy {r['policy']}" if r["policy"] else "no policy"
            head = f"{r['kind']} {r['entity']!r} p={r['probability']:.3g} {policy}"
            click.echo(f"{head}: {r['outcome']}{ref}: {r['reason']}")
    if any(d.state in ("failed", "unknown") for d in decisions):
        sys.exit(EXIT_FAILED)


@cli.group("incidents")
def incidents_group() -> None:
    """Failures (labels for training): record, import, list, detect, and mark false alarms."""


def _incident_rules(app: App) -> Any:
    from pmaintd.forecast.incidents import DetectionRules

    c = app.config.incidents
    return DetectionRules(c.host_unreachable_after, c.interface_down_after, c.disk_vanished_after)


@incidents_group.command("add")
@click.option("--kind", required=True, type=click.Choice(["disk", "host", "network"]))
@click.option("--entity", required=True, help="Disk serial, host name, or device/ifName.")
@click.option("--time", "when", help="ISO 8601 time (UTC if no zone); default now.")
@click.option("--cause", default="", help="Free text, e.g. 'DIMM B2 replaced'.")
@click.option("--false-alarm", is_flag=True, help="Record that a forecast or action for this entity was wrong.")
@pass_app
def incidents_add(app: App, kind: str, entity: str, when: str | None, cause: str, false_alarm: bool) -> None:
    """Record one incident (or, with --false-alarm, a label that the entity did not fail)."""
    from pmaintd.forecast import incidents as inc
    from pmaintd.forecast.labels import Incident
    from pmaintd.telemetry import now_ns, parse_time

    try:
        t = parse_time(when) if when else now_ns()
    except ValueError:
        raise click.BadParameter(f"{when!r} is not an ISO 8601 time", param_hint="--time") from None
    i = Incident(t, kind, entity, cause)
    with app.store() as st:
        new = inc.record(st, [i], "operator", inc.FALSE_ALARM if false_alarm else inc.FAILURE)
    click.echo(("recorded " if new else "already recorded ") + ("false alarm" if false_alarm else "incident")
               + f" {kind} {entity!r} at {format_time(t)}")


@incidents_group.command("import")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print counts as JSON.")
@pass_app
def incidents_import(app: App, path: Path, as_json: bool) -> None:
    """Import a CSV (time,kind,entity[,cause]) or JSON-lines file; any bad row refuses the whole file."""
    from pmaintd.forecast import incidents as inc
    from pmaintd.forecast.labels import IncidentFileError, parse_incidents

    try:
        rows = parse_incidents(path)
    except IncidentFileError as exc:
        print_error("error", exc)
        sys.exit(EXIT_USAGE)
    with app.store() as st:
        new = inc.record(st, rows, f"file:{path.name}")
    summary = {"read": len(rows), "new": len(new), "by_kind": inc.summarize(new)}
    if as_json:
        print_json(summary)
    else:
        click.echo(f"{path}: {len(rows)} incidents read, {len(new)} new {summary['by_kind']}")


@incidents_group.command("list")
@click.option("--kind", type=click.Choice(["disk", "host", "network"]))
@click.option("--since", help="ISO 8601 time; default 90 days ago.")
@click.option("--false-alarms", is_flag=True, help="List false-alarm labels instead of failures.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def incidents_list(app: App, kind: str | None, since: str | None, false_alarms: bool, as_json: bool) -> None:
    """Incidents in the store, oldest first."""
    from pmaintd.forecast import incidents as inc
    from pmaintd.telemetry import now_ns, parse_time

    start = parse_time(since) if since else now_ns() - 90 * 86400 * 10**9
    with app.store() as st:
        rows = inc.read(st, kind, start, None, inc.FALSE_ALARM if false_alarms else inc.FAILURE)
    objs = [{"time": format_time(i.time), "kind": i.kind, "entity": i.entity, "cause": i.cause} for i in rows]
    if as_json:
        print_json(objs)
    else:
        console.print(_table("incidents", ["time", "kind", "entity", "cause"],
                             [[o["time"], o["kind"], o["entity"], o["cause"]] for o in objs]))


@incidents_group.command("detect")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def incidents_detect(app: App, as_json: bool) -> None:
    """Look through recent telemetry for incidents ([incidents] rules) and record the new ones."""
    from pmaintd.forecast import incidents as inc
    from pmaintd.telemetry import now_ns

    now = now_ns()
    with app.store() as st:
        found = inc.detect(st, now - int(app.config.incidents.lookback * 1e9), now, _incident_rules(app))
        new = inc.record(st, found, "auto")
    objs = [{"time": format_time(i.time), "kind": i.kind, "entity": i.entity, "cause": i.cause} for i in new]
    if as_json:
        print_json(objs)
    else:
        click.echo(f"{len(found)} incidents in telemetry, {len(new)} new: {inc.summarize(new)}")


@cli.command("simulate")
@click.option("--hosts", default=20, show_default=True, help="Hosts (each with its disks and one uplink).")
@click.option("--disks-per-host", default=2, show_default=True)
@click.option("--days", default=14.0, show_default=True, help="Days of history up to now.")
@click.option("--future", default="0s", show_default=True,
              help="Also simulate this far past now; nothing after now is written (it is what forecasts predict).")
@click.option("--step", default="5m", show_default=True, help="Sample interval.")
@click.option("--seed", default=0, show_default=True)
@click.option("--end", "now_arg", help="ISO 8601 time that counts as now; default the real now.")
@click.option("--no-incidents", is_flag=True, help="Write telemetry only (let `incidents detect` find them).")
@click.option("--truth", type=click.Path(path_type=Path, dir_okay=False),
              help="Write every simulated failure, past and future, to this JSON-lines file.")
@pass_app
def simulate_cmd(app: App, hosts: int, disks_per_host: int, days: float, future: str, step: str, seed: int,
                 now_arg: str | None, no_incidents: bool, truth: Path | None) -> None:
    """Write a simulated fleet's telemetry (and its incidents) into the store: for demos and end-to-end
    tests only, never to judge accuracy."""
    from pmaintd.forecast import incidents as inc
    from pmaintd.simulate import NS, FleetSpec, simulate
    from pmaintd.telemetry import now_ns, parse_time

    try:
        step_s = int(cfgmod.parse_duration(step))
        future_s = cfgmod.parse_duration(future)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    span_days = days + future_s / 86400
    # Failures land from a third of the span to its very end, so the future part has some to predict.
    spec = FleetSpec(hosts=hosts, disks_per_host=disks_per_host, days=span_days, step_s=step_s, seed=seed,
                     failure_window=(1 / 3, 1.0 if future_s else 0.95))
    now = parse_time(now_arg) if now_arg else now_ns()
    start = now - int(days * 86400) * NS
    batches, failures = simulate(spec, start)
    n = 0
    with app.store() as st:
        buf: list[Any] = []
        for b in batches:
            buf += [p for p in b if p.time <= now]
            if len(buf) >= 20000:
                st.write(buf)
                n, buf = n + len(buf), []
        st.write(buf)
        n += len(buf)
        past = [f for f in failures if f.time <= now]
        if not no_incidents:
            inc.record(st, past, "simulator")
    if truth is not None:
        truth.write_text("".join(json.dumps({"time": format_time(f.time), "kind": f.kind, "entity": f.entity,
                                             "cause": f.cause}) + "\n" for f in failures))
    click.echo(f"simulated {hosts} hosts over {days:g} days: {n} points, {len(past)} failures so far "
               f"({inc.summarize(past)}), {len(failures) - len(past)} still to come")


@cli.group("snmp")
def snmp_group() -> None:
    """SNMP agents: see what a device answers and which profile pmaintd picks for it."""


@snmp_group.command("probe")
@click.argument("target")
@click.option("--community", help="For an address not in the config: the v1/v2c community (default public).")
@click.option("--version", "version", type=click.Choice(["1", "2c"]), default="2c", show_default=True,
              help="For an address not in the config. SNMPv3 agents: configure a [[snmp.targets]] entry.")
@click.option("--profile", help="Use this profile instead of matching sysObjectID.")
@click.option("--timeout", default=2.0, show_default=True, help="Seconds per request (address only).")
@click.option("--retries", default=1, show_default=True, help="Retries per request (address only).")
@click.option("--json", "as_json", is_flag=True, help="Discovery, profile and every point as one JSON object.")
@pass_app
def snmp_probe(app: App, target: str, community: str | None, version: str, profile: str | None, timeout: float,
               retries: int, as_json: bool) -> None:
    """Poll TARGET once (a configured target's name, or HOST[:PORT]) and show what it answered."""
    from pmaintd.collect import CollectError
    from pmaintd.collect.snmp import SnmpCollector, adhoc_target, probe_report

    snmp_cfg = app.config.snmp
    try:
        coll = SnmpCollector(snmp_cfg)
        names = [t.name for t in snmp_cfg.targets]
        if target in names and community is None:
            tgt = coll.target(target)
            if profile is not None:
                tgt = coll.with_profile(tgt, profile)
        else:
            if profile is not None:
                coll.profiles.get(profile)
            tgt = adhoc_target(target, community or "public", version, timeout, retries, snmp_cfg.max_repetitions,
                               profile)
    except (cfgmod.ConfigError, KeyError, ValueError) as exc:
        print_error("error", exc)
        sys.exit(EXIT_USAGE)
    try:
        result = coll.probe(tgt)
    except CollectError as exc:
        print_error("failed", exc)
        sys.exit(EXIT_FAILED)
    report = probe_report(result)
    if as_json:
        print_json(report)
        return
    d = report["device"]
    console.print(f"sysName      {d['sysName']}\nsysObjectID  {d['sysObjectID']}\nsysDescr     {d['sysDescr']}",
                  highlight=False, markup=False)
    console.print(f"profile      {report['profile']} ({report['reason']})", highlight=False, markup=False)
    console.print(f"poll         {report['requests']} requests, {report['varbinds']} varbinds, "
                  f"{report['seconds']:.2f}s", highlight=False, markup=False)
    console.print(_table("interfaces", ["ifIndex", "ifName", "ifDescr", "ifAlias", "oper", "admin", "Mb/s",
                                        "in errors", "HC counters"],
                         [[i["ifIndex"], i["ifName"], i["ifDescr"], i["ifAlias"], i["ifOperStatus"],
                           i["ifAdminStatus"], i["speed_mbps"], i["ifInErrors"], "yes" if i["hc"] else "no"]
                          for i in report["interfaces"]]))
    console.print(_table("sensors", ["sensor", "index", "type", "reading", "raw", "status", "mib"],
                         [[s["sensor"], s["sensor_index"], s["sensor_type"], s["reading"], s["value"], s["status"],
                           s["mib"]] for s in report["sensors"]]))
    others = {k: v for k, v in report["measurements"].items() if k not in ("interface", "snmp_sensor")}
    if others:
        console.print("other points: " + ", ".join(f"{k} {v}" for k, v in sorted(others.items())),
                      highlight=False, markup=False)


@cli.group("smart")
def smart_group() -> None:
    """SMART: parse saved smartctl outputs (for hosts pmaintd cannot reach, and for debugging)."""


@smart_group.command("parse")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--json", "as_json", is_flag=True, help="A JSON array, one object per file (raw values; null: not reported)."
)
def smart_parse_cmd(files: tuple[Path, ...], as_json: bool) -> None:
    """Parse smartctl outputs (text -a/-x, or --json). Every file is tried; exit 1 if any could not be parsed."""
    from pmaintd.collect.smart_parse import SmartParseError, parse

    results: list[dict[str, Any]] = []
    failed = 0
    for f in files:
        obj: dict[str, Any] = {"file": str(f)}
        try:
            obj.update(parse(f.read_bytes()).to_json())
        except (OSError, SmartParseError) as exc:
            failed += 1
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            obj["error"] = reason
            err_console.print(f"[red]error[/red] {escape(f'{f}: {reason}')}", highlight=False)
        results.append(obj)
    if as_json:
        print_json(results)
    else:
        counters = ("reallocated_sectors_count", "pending_sector_count", "uncorrectable_sector_count",
                    "udma_crc_errors", "media_errors", "critical_warning", "grown_defects")  # fmt: skip
        keys = ("serial_no", "model", "device_type", "health_ok", "temp_c", "power_on_hours")
        rows = [
            [Path(r["file"]).name, *(r[k] for k in keys), " ".join(f"{c}={r[c]}" for c in counters if r[c])]
            for r in results
            if "error" not in r
        ]
        cols = ["file", "serial", "model", "type", "health_ok", "temp_c", "power_on_h", "non-zero error counters"]
        console.print(_table("smartctl outputs", cols, rows))
    if failed:
        sys.exit(EXIT_FAILED)


@cli.group("grafana")
def grafana_group() -> None:
    """Grafana: provision pmaintd's folder, datasource and dashboards through the HTTP API."""


@grafana_group.command("provision")
@click.option("--url", help="Grafana base URL, e.g. http://grafana:3000 (default: [grafana] url).")
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="File holding a service-account token (default: [grafana] token_file).",
)
@click.option(
    "--basic-auth-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="File holding user:password, instead of a token (default: [grafana] basic_auth_file).",
)
@click.option("--folder", default=None, help="Folder title for the dashboards (default: [grafana] folder, pmaintd).")
@click.option(
    "--datasource-url",
    help="InfluxDB URL as Grafana reaches it, when not [store] url (e.g. pmaintd writes to 127.0.0.1).",
)
@click.option("--dry-run", is_flag=True, help="Only read from Grafana and report what would change.")
@click.option("--push-secrets", is_flag=True, help="Send the datasource credentials even if nothing else changed.")
@click.option("--json", "as_json", is_flag=True, help="Print the changes as a JSON array.")
@pass_app
def grafana_provision(
    app: App,
    url: str | None,
    token_file: Path | None,
    basic_auth_file: Path | None,
    folder: str | None,
    datasource_url: str | None,
    dry_run: bool,
    push_secrets: bool,
    as_json: bool,
) -> None:
    """Create or update, by uid, the folder, the InfluxDB datasource (from [store]) and every shipped
    dashboard; a second run changes nothing. Credentials are read from files and never printed."""
    from pmaintd import grafana

    gcfg = app.config.grafana
    url = url or gcfg.url
    if not url:
        raise click.UsageError("give --url (or set [grafana] url)")
    if token_file and basic_auth_file:
        raise click.UsageError("give only one of --token-file, --basic-auth-file")
    if not (token_file or basic_auth_file):
        token_file, basic_auth_file = gcfg.token_file, gcfg.basic_auth_file
    try:
        credential = grafana.read_credential(token_file, basic_auth_file)
        changes = grafana.provision(
            url,
            credential,
            app.config.store,
            folder or gcfg.folder,
            dry_run=dry_run,
            push_secrets=push_secrets,
            timeout=gcfg.timeout,
            datasource_url=datasource_url,
        )
    except grafana.GrafanaError as exc:
        # The message can quote Grafana's answer: never rich markup.
        print_error("grafana error", escape(str(exc)))
        sys.exit(EXIT_FAILED)
    if as_json:
        print_json({"dry_run": dry_run, "changes": [c.to_json() for c in changes]})
        return
    verb = {"created": "would create", "updated": "would update"} if dry_run else {}
    rows = [[c.kind, c.uid, c.title, verb.get(c.outcome, c.outcome)] for c in changes]
    title = f"Grafana {url}" + (" (dry run)" if dry_run else "")
    console.print(_table(title, ["kind", "uid", "title", "outcome"], rows))


# ---- forecasting (issue 4): train, backtest, import backblaze, forecast, retrain ----

_BACKBLAZE_FILES = click.Path(path_type=Path, dir_okay=False, exists=True)


def _stderr_log(msg: str) -> None:
    err_console.print(msg, highlight=False, markup=False)


def _models(app: App, kinds: list[str]) -> Any:
    """The models the daemon scores `kinds` with, chosen by the daemon's own rule (`LoadedModels`): the promoted
    bundle, else the shipped one, else none. Model files are parsed in a throwaway process first, so a truncated
    one is a reason here, not a crash; a fallback or an unusable kind is the daemon's own one-line warning or
    error (kind, path, reason, fix) on stderr. Same files, same choice: what these commands show is what the
    daemon scores."""
    from pmaintd.forecasting import LoadedModels

    models = LoadedModels(app.state_dir, kinds)
    models.refresh()
    return models


def _backtest_bundle(model: Path | None, app: App, kind: str) -> tuple[Any, str]:
    """(bundle, where it comes from): the bundle the operator named with --model, else the daemon's choice.

    A --model bundle is never swapped for another: a backtest of the wrong model would look like a result.
    It is probed like the daemon's (a truncated model.txt is an error, not a crash); exit 2 when it cannot be
    loaded. Without --model, exit 1 when the kind has no usable model (the error line says why)."""
    from pmaintd.forecast.bundle import BundleError
    from pmaintd.forecasting import load_checked

    if model is not None:
        try:
            return load_checked(model, kind), f"--model {model}"
        except BundleError as exc:
            print_error("model error", f"{exc} (the --model bundle; no other one is used in its place)")
            sys.exit(EXIT_USAGE)
    (state,) = _models(app, [kind]).states()
    if not state.usable:
        if state.problem is None:  # with a problem, the daemon's error line has just said it
            print_error("model error", f"no {kind} model (none promoted, none shipped)")
        sys.exit(EXIT_FAILED)
    return state.bundle, f"{state.source} {state.path}"


@cli.command("train")
@click.argument("kind", type=click.Choice(["disk"]))
@click.option("--backblaze", "files", multiple=True, required=True, type=_BACKBLAZE_FILES,
              help="Backblaze drive-stats CSV (plain or .gz); repeat for several.")
@click.option("--histories", "history_files", multiple=True, type=_BACKBLAZE_FILES,
              help="Start-stop drive histories (hds CSV): healthy windows from whole lifetimes; repeatable.")
@click.option("--output", type=click.Path(path_type=Path, file_okay=False),
              help="Bundle directory to write (model.txt, bundle.json), e.g. models/disk.")
@click.option("--folds", type=click.IntRange(min=3), default=None,
              help="Cross-validate in this many drive folds and print the figures instead of writing a bundle.")
@click.option("--valid-from", help="ISO date: train before it, evaluate from it on (time- and drive-disjoint).")
@click.option("--no-baselines", is_flag=True, help="Skip the Backblaze-rule and plain-LightGBM reference baselines.")
@click.option("--seed", "model_seed", type=int, default=None,
              help="Seed of the negative subsampling and LightGBM; the drive split stays the same, so runs with "
                   "different seeds show how much of a figure is chance.  [default: the split's seed]")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def train_cmd(app: App, kind: str, files: tuple[Path, ...], history_files: tuple[Path, ...], output: Path | None,
              folds: int | None, valid_from: str | None, no_baselines: bool, model_seed: int | None,
              as_json: bool) -> None:
    """Train a disk model from Backblaze files (how the shipped models/disk bundle was made); prints the
    per-drive metrics on drives the model never saw, beside the two baselines."""
    from pmaintd.forecast.backblaze import BackblazeFormatError
    from pmaintd.forecast.disk import cross_validate_backblaze, train_from_backblaze
    from pmaintd.forecast.train import TrainOptions

    if output is None and folds is None:
        raise click.UsageError("give --output DIR (or --folds K to only cross-validate)")
    if valid_from is not None:
        try:
            date.fromisoformat(valid_from)
        except ValueError:
            raise click.BadParameter(f"{valid_from!r} is not an ISO date, e.g. 2016-01-01",
                                     param_hint="--valid-from") from None
    fc = app.config.forecast
    opts = TrainOptions(horizon_hours=fc.horizon_hours(kind), far_budget=fc.false_alarm_budget, valid_from=valid_from,
                        model_seed=model_seed)
    try:
        if folds is not None:
            print_json(cross_validate_backblaze(list(files), opts, folds, _stderr_log, list(history_files)))
            return
        assert output is not None
        bundle, report = train_from_backblaze(list(files), output, opts, not no_baselines, _stderr_log,
                                              list(history_files))
    except BackblazeFormatError as exc:
        print_error("input error", exc)
        sys.exit(EXIT_USAGE)
    if as_json:
        print_json({"output": str(output), "version": bundle.version, "threshold": bundle.threshold, **report})
        return
    click.echo(f"wrote {output} (version {bundle.version}, threshold {bundle.threshold:.4g})")
    cols = ["model", "r@1%FAR", "r@.1%FAR", "FAR@thr", "r@thr", "lead h"]
    rows = [[name, _f(m.get("recall_at_far_0.01")), _f(m.get("recall_at_far_0.001")), _f(m.get("far_at_threshold")),
             _f(m.get("recall_at_threshold")), _f(m.get("median_lead_hours_at_far_0.01"), "{:.0f}")]
            for name, m in report.items() if "recall_at_far_0.01" in m]
    table = _table("test drives never seen in training (r: recall, thr: the bundle's threshold, lead h: median "
                   "at 1% FAR)", cols, rows)
    table.columns[0].no_wrap = True  # the names say which figure is which: never cut them on an 80-column terminal
    console.print(table)
    w = report["model_by_warning"]
    click.echo(f"of {w['failed_warned'] + w['failed_silent']} failed test drives, {w['failed_silent']} showed no "
               f"critical SMART counter (5/187/188/197/198) above zero in their window; at 1% FAR the model caught "
               f"{w['failed_warned_alarms_at_far_0.01']} of the {w['failed_warned']} warned and "
               f"{w['failed_silent_alarms_at_far_0.01']} of the silent ones, while {w['healthy_warned']} healthy "
               f"drives showed a warning and {w['healthy_warned_alarms_at_far_0.01']} of them alarmed")
    svc = report["model_in_service"]
    click.echo(f"model_in_service leaves out {svc['healthy_retired']} healthy test drives that left the data early "
               f"without a failure; they made {svc['of_them_retired']} of the model's "
               f"{svc['false_alarms_at_far_0.01']} false alarms at 1% FAR")


def _f(v: object, fmt: str = "{:.3f}") -> str:
    return "-" if v is None else fmt.format(v) if isinstance(v, float) else str(v)


@cli.command("backtest")
@click.argument("kind", type=click.Choice(["disk"]))
@click.option("--backblaze", "files", multiple=True, required=True, type=_BACKBLAZE_FILES)
@click.option("--output", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="CSV to write: date,serial_number,probability,alarm (one row per input row).")
@click.option("--model", type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Bundle directory (this one or an error); default the daemon's model (promoted, else shipped).")
@click.option("--chunk-rows", default=250_000, show_default=True, help="Rows per drive chunk (bounds memory).")
@pass_app
def backtest_cmd(app: App, kind: str, files: tuple[Path, ...], output: Path, model: Path | None,
                 chunk_rows: int) -> None:
    """Score every drive-day of Backblaze files using only rows up to that day."""
    from pmaintd.forecast.backblaze import BackblazeFormatError
    from pmaintd.forecast.backtest import backtest

    bundle, source = _backtest_bundle(model, app, kind)
    try:
        res = backtest(list(files), bundle, output, chunk_rows, _stderr_log)
    except BackblazeFormatError as exc:
        print_error("input error", exc)
        sys.exit(EXIT_USAGE)
    click.echo(f"wrote {output}: {res.rows} rows, {res.drives} drives, {res.alarms} alarms "
               f"(model {bundle.version} from {source}, threshold {bundle.threshold:.4g}) in {res.seconds:.1f}s")


@cli.group("import")
def import_group() -> None:
    """Load external history into the store."""


@import_group.command("backblaze")
@click.argument("files", nargs=-1, required=True, type=_BACKBLAZE_FILES)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def import_backblaze(app: App, files: tuple[Path, ...], as_json: bool) -> None:
    """Backblaze drive-stats CSVs -> smart_device / smart_attribute history and pmaintd_incident failures."""
    import time as _time

    from pmaintd.forecast import backblaze

    t0 = _time.perf_counter()
    try:
        df = backblaze.read_backblaze(list(files))
    except backblaze.BackblazeFormatError as exc:
        print_error("input error", exc)
        sys.exit(EXIT_USAGE)
    points = 0
    with app.store() as st:
        for batch in backblaze.to_points(df):
            st.write(batch)
            points += len(batch)
    summary = {"rows": df.height, "drives": df["serial_number"].n_unique(),
               "failures": int((df["failure"] == 1).sum()), "points": points,
               "seconds": round(_time.perf_counter() - t0, 1)}
    if as_json:
        print_json(summary)
    else:
        click.echo(f"imported {summary['rows']} drive-days of {summary['drives']} drives "
                   f"({summary['failures']} failures): {points} points in {summary['seconds']}s")


@cli.command("forecast")
@click.option("--kind", type=click.Choice(["disk", "host", "network"]), help="Only this kind.")
@click.option("--top", default=20, show_default=True, help="Show the N highest risks.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def forecast_cmd(app: App, kind: str | None, top: int, as_json: bool) -> None:
    """Current ranked failure risks from the store's telemetry, each with its top reasons; entities whose data
    cannot support a number show "insufficient history". Each kind is scored with the model the daemon uses
    (a broken promoted one gives way to the shipped one, with a warning); exit 1, after the other kinds'
    risks, when a kind has a model that cannot be used at all."""
    from pmaintd.act.engine import recurring_healing
    from pmaintd.forecast.fleet import anomaly_points
    from pmaintd.forecast.scoring import forecasts
    from pmaintd.telemetry import now_ns

    fc = app.config.forecast
    kinds = [kind] if kind else list(fc.kinds)
    now = now_ns()
    models = _models(app, kinds)
    source = {s.kind: s.source for s in models.states()}
    unscored = any(s.problem and not s.usable for s in models.states())
    with app.store() as st:
        rows = forecasts(st, models, kinds, now, fc)
        # Unsupervised scores beside the model's: a failure with no precedent shows here first.
        anomaly = {(p.tags["kind"], p.tags["entity"]): p.fields for p in anomaly_points(st, now)}
    recurring = {(r.kind, r.entity): r.count for r in recurring_healing(app.config, app.state_dir)}
    rows = rows[:top]
    objs = []
    for r in rows:
        a = anomaly.get((r.kind, r.entity), {})
        objs.append(r.to_json() | {"model_source": source.get(r.kind), "anomaly": a.get("score"),
                                   "anomaly_metric": a.get("metric"),
                                   "recurring_actions": recurring.get((r.kind, r.entity), 0)})
    if as_json:
        print_json(objs)
        sys.exit(EXIT_FAILED if unscored else 0)
    table_rows = []
    for r, o in zip(rows, objs, strict=True):
        p = "insufficient history" if r.probability is None else f"{r.probability:.3f}"
        why = "; ".join(f"{x['feature']}={_f(x['value'])} ({x['contribution']:+.2f})" for x in r.reasons[:3])
        anom = "" if o["anomaly"] is None else f"{o['anomaly']:.1f} ({o['anomaly_metric']})"
        healed = f"healed {o['recurring_actions']}x: root cause not fixed" if o["recurring_actions"] else ""
        table_rows.append([r.kind, r.entity, r.host, p, r.level, why, anom, healed])
    console.print(_table("forecasts", ["kind", "entity", "host", "probability", "level", "top reasons", "anomaly",
                                       "recurring"], table_rows))
    if unscored:
        sys.exit(EXIT_FAILED)


@cli.command("retrain")
@click.option("--kind", required=True, type=click.Choice(["disk", "host", "network"]))
@click.option("--incidents", "incidents_file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="CSV or JSON-lines incidents (time,kind,entity[,cause]) in addition to those in the store.")
@click.option("--backblaze", "files", multiple=True, type=_BACKBLAZE_FILES,
              help="Disk only: Backblaze files to train on as well (their failures are labels).")
@click.option("--no-store", is_flag=True, help="Use only the given files, not the store's telemetry.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def retrain_cmd(app: App, kind: str, incidents_file: Path | None, files: tuple[Path, ...], no_store: bool,
                as_json: bool) -> None:
    """Train a challenger, backtest it and the current model on the same recent window, promote it only if
    it is not worse (the daemon reloads the promoted model by itself). Earlier versions stay in the state dir."""
    from pmaintd.forecast.labels import IncidentFileError, parse_incidents
    from pmaintd.forecast.retrain import retrain
    from pmaintd.forecast.sources import RetrainDataError, labeled_for_retrain
    from pmaintd.forecast.train import TrainOptions
    from pmaintd.forecasting import LoadedModels

    fc = app.config.forecast
    try:
        extra = parse_incidents(incidents_file) if incidents_file else []
    except IncidentFileError as exc:
        print_error("error", exc)
        sys.exit(EXIT_USAGE)
    if files and kind != "disk":
        raise click.BadParameter("Backblaze files only train disk models", param_hint="--backblaze")
    opts = TrainOptions(horizon_hours=fc.horizon_hours(kind), far_budget=fc.false_alarm_budget)
    # The champion is the model the daemon scores with: a promoted bundle that cannot be loaded (trained for
    # another feature-spec version, truncated) is skipped for the shipped one, or none, as the daemon does.
    registry = LoadedModels(app.state_dir, [kind], report=False)
    registry.refresh()
    for s in registry.states():
        if s.problem:
            _stderr_log(f"{kind} model: {s.problem}; the champion is {s.source} {s.version or ''}".rstrip())
    with app.store() as st:
        try:
            labeled, spec, data_hash = labeled_for_retrain(kind, None if no_store else st, extra, list(files),
                                                           opts.horizon_hours)
            res = retrain(kind, labeled, spec, registry, opts, fc.recent_window, fc.finetune_below_failures,
                          data_hash, _stderr_log)
        except (RetrainDataError, ValueError) as exc:
            print_error("retrain error", exc)
            sys.exit(EXIT_FAILED)
    if as_json:
        print_json(res.to_json())
        return
    key = f"recall_at_far_{fc.false_alarm_budget:g}"
    cols = ["model", "version", key, "FAR@thr", "recall@thr", "failed", "healthy"]
    rows = [[name, m.get("version"), _f(m.get(key)), _f(m.get("far_at_threshold")), _f(m.get("recall_at_threshold")),
             m.get("entities_failed"), m.get("entities_healthy")]
            for name, m in (("challenger", res.challenger), ("champion", res.champion)) if m]
    console.print(_table(f"{kind}: recent window {res.window['start']} .. {res.window['end']}", cols, rows))
    click.echo(("promoted " if res.promoted else "kept champion; not promoted ") + f"{res.challenger_version}: "
               + res.reason + (" (fine-tuned from the champion)" if res.finetuned else ""))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="pmaintd")


def _table(title: str, columns: list[str], rows: list[list[object]]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        # Cells hold entity names, serials and errors from devices: plain Text, never parsed as rich markup.
        t.add_row(*(Text("" if v is None else str(v)) for v in r))
    return t
