"""Every action transition, written three ways: the append-only audit log, the store, and Grafana.

`audit.jsonl` in the state dir is the record of truth: one JSON object per line, opened O_APPEND and fsynced
before the transition is considered done, so a crash right after cannot lose it. The `pmaintd_action` points
(for dashboards) and the Grafana annotation are best effort: a store or Grafana outage is logged and never
stops or undoes an action.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pmaintd.telemetry import ACTION, Point, format_time

log = logging.getLogger(__name__)

AnnotateFn = Callable[[Mapping[str, Any]], None]


class AuditLog:
    """Append-only JSON lines; each append is fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record and fsync it. A crash mid-write (power loss, full disk) leaves a torn last line;
        the next record then starts on a line of its own, so only the torn one is lost."""
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            if end and os.pread(fd, 1, end - 1) != b"\n":
                line = b"\n" + line
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        """All records, oldest first (for `actions show` and tests). A torn line is logged and skipped: one
        damaged record must not hide every other action's history."""
        if not self.path.exists():
            return []
        out = []
        for n, line in enumerate(self.path.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                log.warning("%s line %d is not a complete record (torn by a crash?); skipped", self.path, n)
        return out


def action_point(record: Mapping[str, Any], ts_ns: int) -> Point:
    """The `pmaintd_action` point for one audit record (tags identify the series; fields hold the details)."""
    tags = {k: str(record.get(k, "")) for k in ("kind", "entity", "policy", "action", "state", "host")}
    fields: dict[str, Any] = {
        "id": int(record["id"]),
        "message": str(record.get("message", "")),
        "probability": float(record.get("probability", 0.0)),
        "horizon_hours": float(record.get("horizon_hours", 0.0)),
        "from_state": str(record.get("from", "")),
        "run_on": str(record.get("run_on", "")),
    }
    if record.get("returncode") is not None:
        fields["returncode"] = int(record["returncode"])
    return Point(ACTION, tags, fields, ts_ns)


class Auditor:
    """Fans one transition out to the audit log (must succeed), the store and Grafana (best effort)."""

    def __init__(self, log_path: Path, store: Any | None = None, annotate: AnnotateFn | None = None) -> None:
        self.log = AuditLog(log_path)
        self.store = store
        self.annotate = annotate

    def record(self, record: Mapping[str, Any]) -> None:
        ts = time.time_ns()
        full = {"time": format_time(ts), **record}
        self.log.append(full)
        if self.store is not None and "id" in record:
            try:
                self.store.write([action_point(full, ts)])
            except Exception as exc:  # the store is best effort here: the audit log already has it
                log.warning("could not write pmaintd_action point for action %s: %s", record.get("id"), exc)
        if self.annotate is not None and "id" in record:
            try:
                self.annotate(full)
            except Exception as exc:  # Grafana being down must never break an action
                log.warning("could not annotate action %s in Grafana: %s", record.get("id"), exc)
