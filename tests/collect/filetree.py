"""A Transport that serves recorded /proc and /sys files from fixture directories.

This is not a mock: the collectors do real file reads, only rooted at a recorded tree instead of `/`
(node_exporter's golden tests work the same way with its `--path.procfs` fixtures). Several roots can be
layered, the first holding a path wins, so a later /proc/stat can be served over an otherwise unchanged
tree. Commands cannot be replayed from a file tree: `run` raises FileNotFoundError, as a missing binary
would, and the collectors fall back exactly as they do on a host without it.
"""

from __future__ import annotations

from pathlib import Path

from pmaintd.collect.transport import RunResult


class FileTreeTransport:
    def __init__(self, host: str, *roots: Path) -> None:
        if not roots:
            raise ValueError("FileTreeTransport needs at least one fixture root")
        self.host = host
        self.roots = [Path(r) for r in roots]

    def _find(self, path: str) -> Path:
        if not path.startswith("/"):
            raise ValueError(f"expected an absolute path, got {path!r}")
        for root in self.roots:
            p = root / path.lstrip("/")
            if p.exists():
                return p
        raise FileNotFoundError(2, "No such file or directory (in the fixture tree)", path)

    def read_text(self, path: str) -> str:
        p = self._find(path)
        if p.is_dir():
            raise IsADirectoryError(21, "Is a directory", path)
        return p.read_text(errors="replace")

    def list_dir(self, path: str) -> list[str]:
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

    def run(self, argv: list[str], timeout: float) -> RunResult:
        raise FileNotFoundError(2, "a recorded file tree cannot run commands", argv[0])

    def close(self) -> None:
        return None
