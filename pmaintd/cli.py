"""Every pmaintd command. Thin on purpose: parse, call the library, print (rich tables, or --json).

Exit codes: 0 ok, 1 the command ran but failed (e.g. a collector failed), 2 bad usage or bad config.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from pmaintd import config as cfgmod
from pmaintd.logs import setup_logging

EXIT_FAILED = 1
EXIT_USAGE = 2

console = Console()
err_console = Console(stderr=True)


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
                err_console.print(f"[red]config error[/red] {exc}", highlight=False, markup=True)
                sys.exit(EXIT_USAGE)
        return self._loaded

    @contextmanager
    def store(self) -> Iterator[Any]:
        """The configured store, closed on exit; a store that cannot open is a clean error, not a traceback."""
        from pmaintd.store import StoreError, open_store

        try:
            st = open_store(self.config.store, self.state_dir)
        except StoreError as exc:
            err_console.print(f"[red]store error[/red] {exc}", highlight=False)
            sys.exit(EXIT_FAILED)
        try:
            yield st
        finally:
            st.close()


pass_app = click.make_pass_decorator(App)


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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="pmaintd")


def _table(title: str, columns: list[str], rows: list[list[object]]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    return t
