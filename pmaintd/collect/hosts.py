"""Which machines a machine-level collector (smart, diskio, host) polls, and how each is reached.

The rule: this machine (named after its hostname) unless a [[hosts]] entry with transport = "local" stands
for it, plus every [[hosts]] entry whose `collect` lists the collector. One transport per host is shared by
all collectors, so SMART, diskio and host collection of a remote machine use ONE SSH connection.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

from pmaintd.collect import CollectError, Target
from pmaintd.collect.targets import local_hostname
from pmaintd.collect.transport import LocalTransport, Transport
from pmaintd.config import Config, HostEntry, LocalCollectorConfig

_lock = threading.Lock()
_transports: dict[Hashable, Transport] = {}


def _key(h: HostEntry) -> Hashable:
    return (h.name, h.transport, h.address, h.user, str(h.key_file), str(h.known_hosts), h.connect_timeout, h.sudo)


def transport_for(h: HostEntry) -> Transport:
    """The shared transport of a [[hosts]] entry (created on first use; the SSH connection opens lazily)."""
    with _lock:
        key = _key(h)
        tr = _transports.get(key)
        if tr is None:
            tr = _make(h)
            _transports[key] = tr
        return tr


def _make(h: HostEntry) -> Transport:
    if h.transport == "local":
        return LocalTransport(h.name, sudo=h.sudo)
    from pmaintd.collect.ssh import SshTransport
    from pmaintd.ssh import SshClient, SshEndpoint

    return SshTransport(h.name, SshClient(SshEndpoint.of_host(h)), sudo=h.sudo)


def host_targets(cfg: Config, collector: str, section: LocalCollectorConfig) -> list[Target]:
    """The targets of one machine-level collector, each with the section's interval and timeout."""
    out: list[Target] = []
    if not any(h.transport == "local" for h in cfg.hosts):
        name = local_hostname()
        out.append(Target(name, section.interval, section.timeout, LocalTransport(name)))
    for h in cfg.hosts:
        if collector in h.collect:
            out.append(Target(h.name, section.interval, section.timeout, transport_for(h)))
    return out


def transport_of(collector: str, target: Target) -> Transport:
    """A machine target's transport. host_targets always sets one; a hand-built Target without one fails
    its own poll with a message instead of an AttributeError."""
    if target.transport is None:
        raise CollectError(f"{collector} target {target.name} has no transport")
    return target.transport


def close_transports() -> None:
    """Close every shared connection (daemon shutdown or config reload); they reopen on next use."""
    with _lock:
        trs = list(_transports.values())
        _transports.clear()
    for tr in trs:
        tr.close()
