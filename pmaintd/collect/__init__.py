"""The Collector protocol and the registry that maps config names to collectors.

A collector is configured once, from its config section, so that validation errors surface before the
daemon reports ready. It then lists its targets (the local machine, each [[hosts]] entry, each SNMP agent)
and collects one target at a time. `collect` may block (files, subprocesses, SSH); the daemon runs it in a
worker thread with a timeout. Collectors whose work is naturally asynchronous (SNMP) also offer `acollect`,
which the daemon awaits on its event loop instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pmaintd.telemetry import Point

if TYPE_CHECKING:
    from pmaintd.collect.transport import Transport
    from pmaintd.config import Config


class CollectError(Exception):
    """A target could not be collected; the message is for the operator and names the target."""


@dataclass(frozen=True)
class Target:
    """Something a collector polls. `name` is unique per collector and appears in logs and self-metrics."""

    name: str
    interval: float
    timeout: float
    transport: Transport | None = None
    """How to reach a host (local or ssh); None for network targets like SNMP agents."""
    options: object = field(default=None, compare=False)
    """The collector's own per-target settings (e.g. an SNMP target's config)."""


@runtime_checkable
class Collector(Protocol):
    name: str

    def targets(self) -> Sequence[Target]:
        """What this collector polls, with each target's interval and timeout."""
        ...

    def collect(self, target: Target) -> list[Point]:
        """One poll of one target. Raises CollectError (or OSError/TimeoutError) when it fails."""
        ...


Factory = Callable[["Config"], Collector | None]
"""Builds a collector from the whole config; returns None when the config does not enable it."""

_REGISTRY: dict[str, Factory] = {}


def register(name: str) -> Callable[[Factory], Factory]:
    """Decorator: make a collector factory available under `name` (the config and `--only` use it)."""

    def deco(factory: Factory) -> Factory:
        _REGISTRY[name] = factory
        return factory

    return deco


BUILTIN_MODULES = ("diskio", "host", "smart", "snmp")
"""Modules under pmaintd.collect whose import registers a collector."""


def _load_builtin() -> None:
    # Importing the modules registers their factories; done here so the registry is complete whoever asks.
    for mod in BUILTIN_MODULES:
        importlib.import_module(f"pmaintd.collect.{mod}")


def names() -> list[str]:
    """Every collector name pmaintd knows."""
    _load_builtin()
    return sorted(_REGISTRY)


def build(cfg: Config, only: Sequence[str] = ()) -> list[Collector]:
    """Instantiate the collectors the config enables (restricted to `only` when given).

    Raises KeyError naming the unknown collector when `only` asks for one that does not exist.
    """
    _load_builtin()
    unknown = [n for n in only if n not in _REGISTRY]
    if unknown:
        raise KeyError(f"unknown collector {unknown[0]!r}; known: {', '.join(sorted(_REGISTRY))}")
    out = []
    for name in sorted(_REGISTRY):
        if only and name not in only:
            continue
        c = _REGISTRY[name](cfg)
        if c is not None:
            out.append(c)
    return out
