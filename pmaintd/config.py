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
                raise KeyProblem("url", self.url, "expected http://HOST:PORT or https://HOST…")
        elif self.url is not None:
            raise KeyProblem("url", self.url, 'only allowed when kind = "influxdb"')
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
    """Skip loop, ram, zram and device-mapper partitions of other disks (Telegraf's default behaviour)."""


class HostConfig(LocalCollectorConfig):
    pass


class CollectConfig(Section):
    host: HostConfig = HostConfig()
    diskio: DiskioConfig = DiskioConfig()


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


class Config(Section):
    """The whole configuration. Sections other issues add plug in here."""

    store: StoreConfig = StoreConfig()
    collect: CollectConfig = CollectConfig()
    daemon: DaemonConfig = DaemonConfig()


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
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fld = getattr(current, "model_fields", {}).get(part)
        if fld is None:
            return []
        ann = fld.annotation
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

    systemd's StateDirectory= sets $STATE_DIRECTORY, which is honoured after $PMAINTD_STATE_DIR.
    """
    if cli_value is not None:
        return cli_value
    for var in ("PMAINTD_STATE_DIR", "STATE_DIRECTORY"):
        if env.get(var):
            return Path(env[var].split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/pmaintd")
    xdg = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".local" / "state")
    return Path(xdg) / "pmaintd"


def summary(cfg: Config, path: Path | None) -> str:
    """One line for `check-config`: what will run, without any secret."""
    enabled = [name for name, c in cfg.collect if getattr(c, "enabled", False)]
    store = cfg.store.kind if cfg.store.kind == "sqlite" else f"influxdb {cfg.store.api} at {cfg.store.url}"
    src = str(path) if path else "built-in defaults"
    return f"{src}: valid; store {store}; collectors {', '.join(enabled) or 'none'}"
