"""Logging to stderr (journald picks it up) as plain text or one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    """One JSON object per record; `extra={"target": ...}` keys are carried through."""

    _STD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        obj = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        obj |= {k: v for k, v in record.__dict__.items() if k not in self._STD}
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str)


def setup_logging(level: str, fmt: str) -> None:
    """(Re)configure the root logger; safe to call again on reload."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that log every request at INFO would drown the daemon's own messages.
    for noisy in ("apscheduler", "paramiko", "urllib3", "influxdb_client", "pysnmp", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
