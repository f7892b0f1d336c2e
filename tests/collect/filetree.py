"""A Transport that serves recorded /proc and /sys files from fixture directories.

This is not a mock: the collectors do real file reads, only rooted at a recorded tree instead of `/`
(node_exporter's golden tests work the same way with its `--path.procfs` fixtures). Several roots can be
layered, the first holding a path wins, so a later /proc/stat can be served over an otherwise unchanged
tree.

`run` executes the real command with every absolute path argument moved into the tree (and moved back in
its output), so a collector's batched `grep -H` reads the recorded files as it would over SSH. Only
commands that take file paths make sense here; `getconf` and `who` have no recording and run on this
machine, so tests pass `commands=False` where that matters: `run` then raises FileNotFoundError, as a
missing binary would, and the collectors fall back to reading file by file.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from pmaintd.collect.transport import RunResult, Transport


class FileTreeTransport:
    def __init__(self, host: str, *roots: Path, commands: bool = True) -> None:
        if not roots:
            raise ValueError("FileTreeTransport needs at least one fixture root")
        self.host = host
        self.roots = [Path(r) for r in roots]
        self.commands = commands
        self.batch_reads = commands
        """Ask read_many for one `grep -H` per batch, as a transport whose reads are remote commands would."""
        self.calls = 0
        """Every read_text, list_dir and run, as a remote transport would pay one command for each."""

    def _find(self, path: str) -> Path:
        if not path.startswith("/"):
            raise ValueError(f"expected an absolute path, got {path!r}")
        for root in self.roots:
            p = root / path.lstrip("/")
            if p.exists():
                return p
        raise FileNotFoundError(2, "No such file or directory (in the fixture tree)", path)

    def read_text(self, path: str) -> str:
        self.calls += 1
        p = self._find(path)
        if p.is_dir():
            raise IsADirectoryError(21, "Is a directory", path)
        return p.read_text(errors="replace")

    def list_dir(self, path: str) -> list[str]:
        self.calls += 1
        names: set[str] = set()
        found = False
        for root in self.roots:
            p = root / path.lstrip("/")
            if p.is_dir():
                found = True
                names.update(c.name for c in p.iterdir())
        if not found:
            raise FileNotFoundError(2, "No such file or directory (in the fixture tree)", path)
        return sorted(names)

    def run(self, argv: list[str], timeout: float, privileged: bool = False) -> RunResult:
        self.calls += 1
        if not self.commands:
            raise FileNotFoundError(2, "this file tree runs no commands", argv[0])
        moved = {}
        for a in argv[1:]:
            if a.startswith("/"):
                try:
                    moved[a] = str(self._find(a))
                except FileNotFoundError:
                    moved[a] = str(self.roots[0] / a.lstrip("/"))
        cp = subprocess.run(
            [argv[0], *(moved.get(a, a) for a in argv[1:])],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
        out, err = cp.stdout, cp.stderr
        for original, inside in moved.items():
            out, err = out.replace(inside, original), err.replace(inside, original)
        return RunResult(tuple(argv), cp.returncode, out, err)

    def close(self) -> None:
        return None


class Counting:
    """Counts the calls made through a real transport, keeping its batching choice unless `batch_reads`
    overrides it."""

    def __init__(self, inner: Transport, batch_reads: bool | None = None) -> None:
        self.inner, self.host, self.calls, self._batch = inner, inner.host, 0, batch_reads

    @property
    def batch_reads(self) -> bool:
        return getattr(self.inner, "batch_reads", False) if self._batch is None else self._batch

    def read_text(self, path: str) -> str:
        self.calls += 1
        return self.inner.read_text(path)

    def list_dir(self, path: str) -> list[str]:
        self.calls += 1
        return self.inner.list_dir(path)

    def run(self, argv: list[str], timeout: float, privileged: bool = False) -> RunResult:
        self.calls += 1
        return self.inner.run(argv, timeout, privileged)

    def close(self) -> None:
        self.inner.close()
