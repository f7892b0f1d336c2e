"""A smartctl stand-in for the remote side of the SSH tests: it replays recorded smartctl outputs.

This machine has no SMART-capable disk, so nothing real can answer smartctl's queries; this script is the
one fake in those tests (everything else — sshd, paramiko, the transport, the parser — is real). It is
installed as an executable in a temp folder and configured as `[collect.smart] smartctl`, so the SSH session
runs it through the remote login shell exactly as it would run the real binary.

It logs every argv it receives, with start and end times (JSON lines), answers `--scan-open` with a
recorded listing, and answers a device query with the recording mapped to that device (and `-d` type), with
the recorded exit status.
An entry marked `old` behaves like smartctl 5.x and rejects `--json`; `sleep` delays the answer.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

SCRIPT = """#!{python}
import json, os, sys, time
from pathlib import Path
D = Path({root!r})
args = sys.argv[1:]
start = time.time()


def log():
    rec = {{"argv": args, "sudo_user": os.environ.get("SUDO_USER"), "start": start, "end": time.time()}}
    with open(D / "calls.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\\n")


if "--scan-open" in args:
    log()
    sys.stdout.write((D / "scan.txt").read_text())
    sys.exit(0)
dev = args[-1]
dtype = args[args.index("-d") + 1] if "-d" in args else ""
table = json.loads((D / "map.json").read_text())
entry = table.get(dev + "|" + dtype) or table.get(dev)
if entry is None:
    log()
    print("Smartctl open device: " + dev + " failed: No such device")
    sys.exit(2)
time.sleep(entry.get("sleep", 0))
log()
if entry.get("old") and any(a.startswith("--json") for a in args):
    print("=======> UNRECOGNIZED OPTION: json")
    sys.exit(1)
sys.stdout.write(Path(entry["file"]).read_text(errors="replace"))
sys.exit(entry.get("exit", 0))
"""


class StandIn:
    """The installed stand-in: where it is, and what it was asked."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "smartctl"
        self.path.write_text(SCRIPT.format(python=sys.executable, root=str(root)))
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        self.serve("", {})

    def serve(self, scan: str, devices: dict[str, dict[str, object]]) -> None:
        """scan: the --scan-open listing; devices: "name|type" or "name" -> {"file", "exit", "old", "sleep"}."""
        (self.root / "scan.txt").write_text(scan)
        (self.root / "map.json").write_text(json.dumps({k: {**v, "file": str(v["file"])} for k, v in devices.items()}))
        calls = self.root / "calls.jsonl"
        if calls.exists():
            os.unlink(calls)

    def calls(self) -> list[dict[str, object]]:
        p = self.root / "calls.jsonl"
        return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []
