"""TOML configuration -> validated, typed objects.

Every error names the key path (e.g. `store.url`), the value found and what is allowed, and unknown keys
are errors: a typo in an operator's config must never silently fall back to a default. Secrets are never
held in the config itself, only the paths of files that hold them (`*_file`), so nothing that prints a
config can leak one.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

DEFAULT_CONFIG_PATH = Path("/etc/pmaintd/pmaintd.toml")

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION_HELP = 'a duration such as "500ms", "30s", "5m", "2h", "30d" or "1w"'


class ConfigError(Exception):
    """A configuration problem, already phrased for an operator (key path, value, what is allowed)."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + ("; ".join(problems) if len(problems) == 1 else "\n  " + "\n  ".join(problems)))


def parse_duration(value: object) -> float:
    """Parse "60s", "5m", "2h", "30d" (or a bare number of seconds) into seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_HELP}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise ValueError(f"expected {DURATION_HELP}")
    if seconds < 0:
        raise ValueError(f"expected {DURATION_HELP}, not a negative one")
    return seconds


def format_duration(seconds: float) -> str:
    """Inverse of parse_duration for the largest whole unit, for summaries."""
    for unit in ("w", "d", "h", "m", "s"):
        n = seconds / _UNIT_SECONDS[unit]
        if n >= 1 and n == int(n):
            return f"{int(n)}{unit}"
    return f"{seconds:g}s"


def _positive(v: float) -> float:
    if v <= 0:
        raise ValueError(f"expected {DURATION_HELP} greater than zero")
    return v


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written in the config as a duration string."""
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]


def _existing_file(v: Path) -> Path:
    if not v.is_file():
        raise ValueError("expected a path to an existing, readable file")
    return v


SecretFile = Annotated[Path, AfterValidator(_existing_file)]
"""A path to a file that holds a secret; the secret is read only when used (see read_secret)."""


def redact_url(url: str | None) -> str:
    """A URL with any user:password@ part replaced by ***@, for messages and status output."""
    return re.sub(r"//[^/@]*@", "//***@", url or "")


def read_secret(path: Path | None) -> str | None:
    """Read a secret from its file, stripping one trailing newline. Never log the result."""
    if path is None:
        return None
    return path.read_text().rstrip("\r\n")


class KeyProblem(ValueError):
    """Raised by cross-field checks: names the offending key (relative to its section), value and rule."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}: {value!r} is not allowed: {allowed}")


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable after load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreConfig(Section):
    """Where telemetry and forecasts go: the embedded sqlite file, or an InfluxDB server."""

    kind: Literal["sqlite", "influxdb"] = "sqlite"
    path: Path | None = None
    """sqlite only: the database file; default `<state dir>/pmaintd.db`."""
    url: str | None = None
    api: Literal["v1", "v2", "v3"] = "v1"
    database: str = "pmaintd"
    bucket: str | None = None
    org: str | None = None
    token_file: SecretFile | None = None
    username: str | None = None
    password_file: SecretFile | None = None
    retention: PositiveDuration = 30 * 86400.0
    batch_size: int = Field(5000, ge=1, le=1_000_000)
    timeout: PositiveDuration = 10.0
    gzip: bool = True
    spool_max_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024)
    """Bound of the on-disk spool that holds writes while the server is unreachable."""

    @model_validator(mode="after")
    def _check(self) -> StoreConfig:
        if self.kind == "influxdb":
            if not self.url:
                raise KeyProblem("url", self.url, 'a URL is required when kind = "influxdb"')
            if not re.match(r"^https?://[^/\s]+", self.url):
                raise KeyProblem("url", redact_url(self.url), "expected http://HOST:PORT or https://HOST…")
            if re.match(r"^https?://[^/]*@", self.url):
                raise KeyProblem(
                    "url", redact_url(self.url), "credentials do not belong in the URL: use username + password_file"
                )
        elif self.url is not None:
            raise KeyProblem("url", redact_url(self.url), 'only allowed when kind = "influxdb"')
        return self


class LocalCollectorConfig(Section):
    """A collector that reads the local machine (or a [[hosts]] entry) on an interval."""

    enabled: bool = True
    interval: PositiveDuration = 60.0
    timeout: PositiveDuration = 30.0


class DiskioConfig(LocalCollectorConfig):
    devices: list[str] = Field(default_factory=list)
    """Only these device names (globs allowed); empty means every real block device."""
    skip_virtual: bool = True
    """Skip loop, ram and zram devices: no hardware behind them can fail (Telegraf keeps them; dm and md stay)."""


class HostConfig(LocalCollectorConfig):
    pass


SMART_DEVICE_TYPES = (
    "auto", "ata", "scsi", "nvme", "sat", "sntasmedia", "sntjmicron", "sntrealtek", "usbcypress", "usbjmicron",
    "usbprolific", "usbsunplus", "usbasm1352r", "marvell", "megaraid", "aacraid", "3ware", "areca", "hpt", "cciss",
    "jmb39x", "intelliprop",
)  # fmt: skip
"""The `-d` families smartctl knows (smartctl(8)); arguments after a comma (megaraid,N, sat,12) are checked by
smartctl itself. `sat+megaraid,N` style combinations are allowed."""

_SMART_TYPE_RE = re.compile(r"^[a-z0-9]+(?:\+[a-z0-9]+)?(?:,[A-Za-z0-9/]+)*$")


def _valid_smart_type(value: str) -> str:
    families = re.split(r"[+]", value.split(",", 1)[0])
    if not _SMART_TYPE_RE.match(value) or any(f not in SMART_DEVICE_TYPES for f in families):
        raise ValueError(
            f"expected a smartctl -d type such as sat, nvme, megaraid,0 or sat+megaraid,3; "
            f"families: {', '.join(SMART_DEVICE_TYPES)}"
        )
    return value


def _valid_device_name(value: str) -> str:
    if not value or value.startswith("-") or any(c in value for c in "\0\n\r"):
        raise ValueError("expected a device such as /dev/sda or /dev/bus/0 (not starting with '-')")
    return value


class SmartDeviceConfig(Section):
    """One explicitly listed disk ([[collect.smart.devices]]), or a type override for a scanned one."""

    name: Annotated[str, AfterValidator(_valid_device_name)]
    type: Annotated[str, AfterValidator(_valid_smart_type)] | None = None
    """smartctl -d TYPE; unset lets smartctl (or --scan-open) decide."""


class SmartConfig(LocalCollectorConfig):
    """[collect.smart]: smartctl on the local machine and on every [[hosts]] entry that lists "smart"."""

    interval: PositiveDuration = 600.0
    timeout: PositiveDuration = 30.0
    """Per device: a disk that hangs smartctl longer than this is skipped for this poll."""
    concurrency: int = Field(4, ge=1, le=256)
    """Disks of one host queried at once."""
    nocheck: Literal["never", "sleep", "standby", "idle"] = "standby"
    """smartctl -n: a disk in this power mode (or a lower one) is not woken up and is skipped this poll."""
    smartctl: str = "smartctl"
    """The smartctl binary on the polled host (a name looked up on its PATH, or an absolute path)."""
    sudo: bool = False
    """Run smartctl through `sudo -n` (needs a NOPASSWD rule for smartctl only)."""
    scan: bool = True
    """Find disks with `smartctl --scan-open` (and /sys/class/nvme); `devices` adds to or overrides them."""
    devices: list[SmartDeviceConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> SmartConfig:
        seen: dict[str, int] = {}
        for i, d in enumerate(self.devices):
            key = f"{d.name} {d.type or ''}"
            if key in seen:
                raise KeyProblem(f"devices[{i}]", d.name, f"listed twice (also devices[{seen[key]}])")
            seen[key] = i
        if not self.smartctl or self.smartctl.startswith("-") or any(c in self.smartctl for c in "\0\n"):
            raise KeyProblem("smartctl", self.smartctl, "a program name or absolute path")
        if not self.scan and not self.devices:
            raise KeyProblem("scan", self.scan, "with scan = false, list the disks in [[collect.smart.devices]]")
        return self


class CollectConfig(Section):
    host: HostConfig = HostConfig()
    diskio: DiskioConfig = DiskioConfig()
    smart: SmartConfig = SmartConfig()


def parse_listen(value: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 as `[::1]:port`) for [daemon] listen; ValueError says what is allowed."""
    m = re.match(r"^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$", value)
    if not m or not 0 < int(m.group(3)) < 65536:
        raise ValueError("expected HOST:PORT such as 127.0.0.1:9737 or [::1]:9737, port 1-65535")
    return m.group(1) or m.group(2), int(m.group(3))


def _valid_listen(value: str) -> str:
    parse_listen(value)
    return value


class DaemonConfig(Section):
    listen: Annotated[str, AfterValidator(_valid_listen)] = "127.0.0.1:9737"
    """Where /metrics and /healthz are served."""
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    jitter: Duration = 5.0
    """Each job starts up to this long after its interval, so many targets don't poll in lockstep."""
    misfire_grace: PositiveDuration = 30.0
    housekeeping_interval: PositiveDuration = 3600.0
    stop_timeout: PositiveDuration = 8.0
    """On SIGTERM, how long pending writes may take to flush before the daemon exits anyway (keep it below
    the unit's TimeoutStopSec)."""
    retrain_interval: Duration = 0.0
    """Run `pmaintd retrain` for every [forecast] kind this often, from the daemon; 0 = never (the default:
    systemd's pmaintd-retrain.timer does it, with its own CPU and I/O limits)."""


SNMP_AUTH_PROTOCOLS = ("SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512", "MD5")
"""SNMPv3 auth protocols by their net-snmp names (`snmpget -a`). MD5 only for old agents that lack SHA."""
SNMP_PRIV_PROTOCOLS = ("AES", "AES-128", "AES-192", "AES-256", "AES-192-C", "AES-256-C")
"""SNMPv3 privacy protocols. AES-192/AES-256 extend keys as net-snmp does (Blumenthal draft); the -C forms
extend them as Cisco does (Reeder draft). Agents disagree here, so the operator picks. DES is not offered."""


def parse_snmp_address(value: str) -> tuple[str, int]:
    """Split an SNMP agent address `host[:port]` (IPv6 as `[::1]:161`); the port defaults to 161."""
    m = re.match(r"^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9_.-]+))(?::(\d{1,5}))?$", value)
    if not m or (m.group(3) is not None and not 0 < int(m.group(3)) < 65536):
        raise ValueError("expected HOST or HOST:PORT such as 192.0.2.1:161 or [2001:db8::1]:161, port 1-65535")
    return m.group(1) or m.group(2), int(m.group(3) or 161)


def _valid_snmp_address(value: str) -> str:
    parse_snmp_address(value)
    return value


class SnmpTargetConfig(Section):
    """One SNMP agent ([[snmp.targets]]). Unset timing keys inherit the [snmp] defaults."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    """Unique; becomes the `source` tag of every point."""
    address: Annotated[str, AfterValidator(_valid_snmp_address)]
    version: Literal["1", "2c", "3"] = "2c"
    community: str | None = None
    community_file: SecretFile | None = None
    user: str | None = None
    auth_protocol: str | None = None
    auth_password_file: SecretFile | None = None
    priv_protocol: str | None = None
    priv_password_file: SecretFile | None = None
    interval: PositiveDuration | None = None
    timeout: PositiveDuration | None = None
    """Per request; a poll is several requests (discovery, then the profile's tables)."""
    retries: int | None = Field(None, ge=0, le=10)
    max_repetitions: int | None = Field(None, ge=1, le=200)
    profile: str | None = None
    """Use this profile instead of matching the agent's sysObjectID."""

    @model_validator(mode="after")
    def _check(self) -> SnmpTargetConfig:
        if self.version in ("1", "2c"):
            if self.community is not None and self.community_file is not None:
                raise KeyProblem("community_file", str(self.community_file),
                                 "set community or community_file, not both")
            if self.community is None and self.community_file is None:
                raise KeyProblem("community", None, f'version "{self.version}" needs community or community_file')
            for key in ("user", "auth_protocol", "auth_password_file", "priv_protocol", "priv_password_file"):
                if getattr(self, key) is not None:
                    raise KeyProblem(key, str(getattr(self, key)), 'only allowed with version = "3"')
            return self
        for key in ("community", "community_file"):
            if getattr(self, key) is not None:
                raise KeyProblem(key, "(set)", 'SNMPv3 authenticates with user and keys; community is for "1"/"2c"')
        if not self.user:
            raise KeyProblem("user", self.user, 'version = "3" needs a user')
        if self.auth_protocol is not None and self.auth_protocol not in SNMP_AUTH_PROTOCOLS:
            raise KeyProblem("auth_protocol", self.auth_protocol, f"one of {', '.join(SNMP_AUTH_PROTOCOLS)}")
        if self.priv_protocol is not None and self.priv_protocol not in SNMP_PRIV_PROTOCOLS:
            raise KeyProblem("priv_protocol", self.priv_protocol, f"one of {', '.join(SNMP_PRIV_PROTOCOLS)}")
        if (self.auth_protocol is None) != (self.auth_password_file is None):
            missing = "auth_password_file" if self.auth_password_file is None else "auth_protocol"
            raise KeyProblem(missing, None, "auth_protocol and auth_password_file go together")
        if (self.priv_protocol is None) != (self.priv_password_file is None):
            missing = "priv_password_file" if self.priv_password_file is None else "priv_protocol"
            raise KeyProblem(missing, None, "priv_protocol and priv_password_file go together")
        if self.priv_protocol is not None and self.auth_protocol is None:
            raise KeyProblem("priv_protocol", self.priv_protocol, "privacy needs authentication: set auth_protocol too")
        return self


class SnmpConfig(Section):
    """[snmp]: defaults for every agent, and the agents themselves ([[snmp.targets]])."""

    interval: PositiveDuration = 60.0
    timeout: PositiveDuration = 2.0
    retries: int = Field(1, ge=0, le=10)
    max_repetitions: int = Field(25, ge=1, le=200)
    concurrency: int = Field(64, ge=1, le=10_000)
    """Agents polled at once; an agent that does not answer holds its slot until its own timeouts expire."""
    profile_dirs: list[Path] = Field(default_factory=list)
    """Extra folders of device profiles (*.yaml); a profile here replaces a shipped one of the same name."""
    targets: list[SnmpTargetConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> SnmpConfig:
        seen: dict[str, int] = {}
        for i, t in enumerate(self.targets):
            if t.name in seen:
                raise KeyProblem(f"targets[{i}].name", t.name,
                                 f"target names must be unique (also targets[{seen[t.name]}])")
            seen[t.name] = i
        for d in self.profile_dirs:
            if not d.is_dir():
                raise KeyProblem("profile_dirs", str(d), "an existing folder of *.yaml SNMP profiles")
        return self


HOST_COLLECTORS = ("smart", "diskio", "host")
"""Collectors that run on a machine (local or over SSH) and so can be listed in a [[hosts]] entry's `collect`."""


def parse_ssh_address(value: str) -> tuple[str, int]:
    """Split an SSH address `host[:port]` (IPv6 as `[::1]:22`); the port defaults to 22."""
    m = re.match(r"^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9_.-]+))(?::(\d{1,5}))?$", value)
    if not m or (m.group(3) is not None and not 0 < int(m.group(3)) < 65536):
        raise ValueError("expected HOST or HOST:PORT such as db1.example.com:22 or [2001:db8::1]:22, port 1-65535")
    return m.group(1) or m.group(2), int(m.group(3) or 22)


def _valid_ssh_address(value: str) -> str:
    parse_ssh_address(value)
    return value


class HostEntry(Section):
    """One machine ([[hosts]]) whose SMART, diskio and host telemetry pmaintd collects, locally or over SSH."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    """Unique; becomes the `host` tag of every point collected from it."""
    transport: Literal["local", "ssh"] = "ssh"
    address: Annotated[str, AfterValidator(_valid_ssh_address)] | None = None
    user: str | None = None
    key_file: SecretFile | None = None
    known_hosts: Annotated[Path, AfterValidator(_existing_file)] | None = None
    """OpenSSH known_hosts holding this host's key; it is never extended, an unknown or changed key is refused."""
    connect_timeout: PositiveDuration = 10.0
    sudo: bool = False
    """Run privileged commands (smartctl) through `sudo -n` on this host, as well as when [collect.smart] says so."""
    collect: list[str] = Field(default_factory=lambda: list(HOST_COLLECTORS))

    @model_validator(mode="after")
    def _check(self) -> HostEntry:
        for c in self.collect:
            if c not in HOST_COLLECTORS:
                raise KeyProblem("collect", c, f"collectors that run on a host: {', '.join(HOST_COLLECTORS)}")
        if self.transport == "ssh":
            for key in ("address", "user", "key_file", "known_hosts"):
                if getattr(self, key) is None:
                    raise KeyProblem(key, None, 'required when transport = "ssh"')
        else:
            for key in ("address", "user", "key_file", "known_hosts"):
                if getattr(self, key) is not None:
                    raise KeyProblem(key, str(getattr(self, key)), 'only allowed when transport = "ssh"')
        return self


def _unique_hosts(hosts: list[HostEntry]) -> list[HostEntry]:
    names = [h.name for h in hosts]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ValueError(f"host names must be unique ({dup!r} appears {names.count(dup)} times)")
    if sum(h.transport == "local" for h in hosts) > 1:
        raise ValueError('at most one entry may have transport = "local" (it stands for this machine)')
    return hosts


FORECAST_KINDS = ("disk", "host", "network")
"""Entity kinds the forecasting models score and policies can match."""


def _template_problem(key: str, template: str | None) -> None:
    from pmaintd.act.templates import TemplateError, check_template

    if template is None:
        return
    try:
        check_template(template)
    except TemplateError as exc:
        raise KeyProblem(key, template, str(exc)) from None


class ActionConfig(Section):
    """[actions.NAME]: a command template run on one host; every substituted value is shell-quoted."""

    run_on: Annotated[str, Field(min_length=1)]
    """A [[hosts]] name, or "local" for this machine."""
    command: Annotated[str, Field(min_length=1)]
    verify: str | None = None
    """Exit status 0 means the action took effect; also how a crashed action is judged on restart."""
    undo: str | None = None
    timeout: PositiveDuration = 300.0
    """For each of command, verify and undo."""
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> ActionConfig:
        for key in ("command", "verify", "undo"):
            _template_problem(key, getattr(self, key))
        return self


class PolicyConfig(Section):
    """[[policies]]: when a forecast of `kind` reaches `min_probability`, do `action` in `mode`."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: Literal["disk", "host", "network"]
    min_probability: float = Field(ge=0.0, le=1.0)
    action: Annotated[str, Field(min_length=1)]
    mode: Literal["observe", "approve", "auto"] = "observe"
    """observe: record and annotate only; approve: wait for `pmaintd actions approve ID`; auto: act."""
    min_confidence: float | None = Field(None, ge=0.0, le=1.0)
    """auto only: a forecast less confident than this (its `confidence`, else its probability) escalates to
    approval instead of acting."""


class LimitsConfig(Section):
    """[limits]: blast radius. Every limit is a reason not to act now; a later evaluation retries."""

    max_concurrent: int = Field(1, ge=1, le=1000)
    """Actions approved or started and not yet finished, fleet-wide."""
    max_per_hour: int = Field(4, ge=1, le=100_000)
    max_fleet_fraction: float = Field(0.1, gt=0.0, le=1.0)
    """Never have actions in effect on more than this share of a kind's fleet (like Cluster API's maxUnhealthy)."""
    cooldown: Duration = 6 * 3600.0
    """Per entity: no new action this soon after the last one."""


class RecurringConfig(Section):
    """[recurring]: an entity acted on `count` times within `window` is flagged: the root cause is not fixed."""

    count: int = Field(3, ge=2, le=1000)
    window: PositiveDuration = 7 * 86400.0


class IncidentsConfig(Section):
    """Automatic incidents: what telemetry counts as a failure, and how long it must last."""

    detect: bool = True
    host_unreachable_after: PositiveDuration = 600.0
    interface_down_after: PositiveDuration = 300.0
    disk_vanished_after: PositiveDuration = 3 * 3600.0
    lookback: PositiveDuration = 7 * 86400.0
    """How far back each detection pass looks (it is idempotent, so overlap is harmless)."""


class ForecastConfig(Section):
    """[forecast]: how often entities are scored, horizons per kind, and the false-alarm budget of training."""

    enabled: bool = True
    interval: PositiveDuration = 3600.0
    """How often the daemon scores every entity that has a model and writes pmaintd_forecast points."""
    kinds: list[Literal["disk", "host", "network"]] = Field(default_factory=lambda: ["disk", "host", "network"])
    horizon_disk: PositiveDuration = 7 * 86400.0
    horizon_host: PositiveDuration = 86400.0
    horizon_network: PositiveDuration = 86400.0
    """P(failure within the horizon) is what a model of that kind predicts; used when (re)training."""
    min_history: PositiveDuration = 3 * 86400.0
    """Less data than this for an entity: "insufficient history" instead of a probability."""
    lookback: PositiveDuration = 35 * 86400.0
    """History read per scoring run; at least the longest feature window (30 days for disks)."""
    top_reasons: int = Field(5, ge=0, le=50)
    false_alarm_budget: float = Field(0.01, gt=0, lt=0.5)
    """Share of healthy entities allowed to alarm in their last horizon; retraining picks the threshold for it."""
    finetune_below_failures: int = Field(200, ge=0)
    """Retrain fine-tunes the current model (LightGBM init_model) when local failures are fewer than this."""
    recent_window: PositiveDuration = 30 * 86400.0
    """Retrain backtests champion and challenger on this most recent window of data."""

    def horizon_hours(self, kind: str) -> float:
        return float(getattr(self, f"horizon_{kind}")) / 3600.0


class GrafanaConfig(Section):
    """Grafana for `pmaintd grafana provision` and for action annotations; off while `url` is unset."""

    url: str | None = None
    token_file: SecretFile | None = None
    """A file holding a service-account token (Editor on the folder; Admin to provision the datasource)."""
    basic_auth_file: SecretFile | None = None
    """Instead of a token: a file holding `user:password`."""
    folder: str = Field("pmaintd", min_length=1, max_length=189)
    """Folder (title) the dashboards are provisioned into; found by title, created when missing."""
    dashboard_uid: str | None = None
    """Attach action annotations to this dashboard; unset: organization-wide, shown by every pmaintd dashboard."""
    timeout: PositiveDuration = 5.0
    """Per request. An action waits at most this long for its annotation, which never blocks or fails it."""

    @model_validator(mode="after")
    def _check(self) -> GrafanaConfig:
        if self.url is None:
            return self
        if not re.match(r"^https?://[^/\s@]+(/\S*)?$", self.url):
            raise KeyProblem("url", self.url, "expected http(s)://HOST[:PORT][/PATH], without credentials in it")
        if self.token_file and self.basic_auth_file:
            raise KeyProblem("basic_auth_file", str(self.basic_auth_file), "only one of token_file, basic_auth_file")
        if not (self.token_file or self.basic_auth_file):
            raise KeyProblem("token_file", None, "token_file or basic_auth_file is required when url is set")
        return self


class Config(Section):
    """The whole configuration. Sections other issues add plug in here."""

    store: StoreConfig = StoreConfig()
    incidents: IncidentsConfig = IncidentsConfig()
    collect: CollectConfig = CollectConfig()
    daemon: DaemonConfig = DaemonConfig()
    snmp: SnmpConfig = SnmpConfig()
    hosts: Annotated[list[HostEntry], AfterValidator(_unique_hosts)] = Field(default_factory=list)
    actions: dict[str, ActionConfig] = Field(default_factory=dict)
    policies: list[PolicyConfig] = Field(default_factory=list)
    limits: LimitsConfig = LimitsConfig()
    recurring: RecurringConfig = RecurringConfig()
    grafana: GrafanaConfig = GrafanaConfig()
    forecast: ForecastConfig = ForecastConfig()

    @model_validator(mode="after")
    def _check_action_refs(self) -> Config:
        """Policies name existing actions and actions run on existing hosts (named key, value, allowed names)."""
        hosts = ["local", *(h.name for h in self.hosts)]
        for name, action in self.actions.items():
            if action.run_on not in hosts:
                raise KeyProblem(f"actions.{name}.run_on", action.run_on, f"one of the hosts: {', '.join(hosts)}")
        seen: dict[str, int] = {}
        for i, p in enumerate(self.policies):
            if p.action not in self.actions:
                names = ", ".join(sorted(self.actions)) or "none defined"
                raise KeyProblem(f"policies[{i}].action", p.action, f"one of the [actions.*] names: {names}")
            if p.name in seen:
                also = f"policy names must be unique (also policies[{seen[p.name]}])"
                raise KeyProblem(f"policies[{i}].name", p.name, also)
            seen[p.name] = i
        return self


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config and where it came from (a path, or None for the built-in defaults)."""

    config: Config
    path: Path | None


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and "[" in part:  # tagged-union labels like 'function-after[...]'
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at loc's parent, for 'unknown key' errors."""
    current: Any = model
    keyed = False  # the previous part was a dict[str, Section] field: this part is a name, not a key
    for part in loc[:-1]:
        if isinstance(part, int) or keyed:
            keyed = False
            continue
        fld = getattr(current, "model_fields", {}).get(part)
        if fld is None:
            return []
        ann = fld.annotation
        keyed = getattr(ann, "__origin__", None) is dict
        for cand in (*getattr(ann, "__args__", ()), ann):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                current = cand
                break
            inner = getattr(cand, "__args__", ())
            sub = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
            if sub is not None:
                current = sub
                break
        else:
            return []
    return sorted(getattr(current, "model_fields", {}))


def _describe(err: Mapping[str, Any]) -> str:
    loc = tuple(err.get("loc", ()))
    path = _format_loc(loc)
    problem = (err.get("ctx") or {}).get("error")
    if isinstance(problem, KeyProblem):
        key = problem.key if path == "(top level)" else f"{path}.{problem.key}"
        return f"{key}: {problem.value!r} is not allowed: {problem.allowed}"
    if err.get("type") == "extra_forbidden":
        allowed = _allowed_keys(Config, loc)
        hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
        return f"{path}: unknown key{hint}"
    if err.get("type") == "missing":
        return f"{path}: required key is missing"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{path}: {err.get('input')!r} is not allowed: {msg}"


def validate(data: Mapping[str, Any], source: str = "") -> Config:
    """Validate a parsed TOML document; raise ConfigError listing every problem found."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_describe(e) for e in exc.errors(include_url=False)], source) from None


def load(path: Path | None) -> Config:
    """Load and validate a TOML file; None gives the built-in defaults."""
    if path is None:
        return Config()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"cannot read config file: {exc.strerror}"], str(path)) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"not valid TOML: {exc}"], str(path)) from None
    return validate(data, str(path))


def resolve_config_path(cli_value: Path | None, env: Mapping[str, str] = os.environ) -> Path | None:
    """--config, else $PMAINTD_CONFIG, else /etc/pmaintd/pmaintd.toml when it exists, else None (defaults)."""
    if cli_value is not None:
        return cli_value
    if env.get("PMAINTD_CONFIG"):
        return Path(env["PMAINTD_CONFIG"])
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def resolve_state_dir(cli_value: Path | None, env: Mapping[str, str] = os.environ) -> Path:
    """--state-dir, else $PMAINTD_STATE_DIR, else /var/lib/pmaintd as root, else $XDG_STATE_HOME/pmaintd.

    systemd's StateDirectory= sets $STATE_DIRECTORY, which is honoured after $PMAINTD_STATE_DIR. Only
    $STATE_DIRECTORY is a colon-separated list (one entry per StateDirectory= name; ours is the first):
    $PMAINTD_STATE_DIR is one path, and a colon in it is part of the name.
    """
    if cli_value is not None:
        return cli_value
    if env.get("PMAINTD_STATE_DIR"):
        return Path(env["PMAINTD_STATE_DIR"])
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/pmaintd")
    xdg = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".local" / "state")
    return Path(xdg) / "pmaintd"


def summary(cfg: Config, path: Path | None) -> str:
    """One line for `check-config`: what will run, without any secret."""
    enabled = [name for name, c in cfg.collect if getattr(c, "enabled", False)]
    if cfg.snmp.targets:
        enabled.append(f"snmp ({len(cfg.snmp.targets)} target{'s' if len(cfg.snmp.targets) != 1 else ''})")
    store = cfg.store.kind if cfg.store.kind == "sqlite" else f"influxdb {cfg.store.api} at {redact_url(cfg.store.url)}"
    src = str(path) if path else "built-in defaults"
    return f"{src}: valid; store {store}; collectors {', '.join(enabled) or 'none'}"
