"""Reading many small /proc and /sys files through a Transport.

A host poll needs dozens of files on a server with EDAC and hwmon. Most transports read a file cheaply
(locally, or over SSH on the connection's SFTP session), so `read_many` reads them one by one. A transport
whose every read costs a remote process (SSH without an SFTP subsystem falls back to `cat`) sets
`batch_reads = True`, and then `read_many` fetches all files with ONE `grep -H -s -a "" -- PATH...` (every
line of every file, prefixed with its path; unreadable files skipped), a fixed argv that needs no shell.
Measured against the test sshd on this (loaded, 2-core) machine: an SFTP read ~0.5 ms, one remote command
~0.5 s, so batching pays only when each read is itself a command.
"""

from __future__ import annotations

from collections.abc import Sequence

from pmaintd.collect.transport import Transport

BATCH_TIMEOUT_S = 30.0


def read_optional(tr: Transport, path: str) -> str | None:
    """A file's text, or None when the host has no such (readable) file."""
    try:
        return tr.read_text(path)
    except OSError:
        return None


def list_optional(tr: Transport, path: str) -> list[str]:
    """A directory's names, or [] when the host has no such (readable) directory."""
    try:
        return tr.list_dir(path)
    except OSError:
        return []


def read_many(tr: Transport, paths: Sequence[str]) -> dict[str, str]:
    """The text of each readable file among `paths` (absent: missing or unreadable); one command when the
    transport asks for batching. Empty files count as absent (sysfs and /proc files are never empty)."""
    wanted = list(dict.fromkeys(paths))
    if not wanted:
        return {}
    if getattr(tr, "batch_reads", False):
        try:
            res = tr.run(["grep", "-H", "-s", "-a", "", "--", *wanted], timeout=BATCH_TIMEOUT_S)
        except OSError:  # no grep there, or a transport that cannot run commands
            res = None
        # grep exits 0 when it printed lines, 1 when none, 2 on an error (which -s still reports, e.g. a
        # file that vanished); anything it printed is good either way.
        if res is not None and (res.returncode in (0, 1) or res.stdout):
            return split_grep_output(res.stdout, wanted)
    out = {}
    for p in wanted:
        text = read_optional(tr, p)
        if text:
            out[p] = text
    return out


def split_grep_output(stdout: str, paths: Sequence[str]) -> dict[str, str]:
    """Undo `grep -H`: each line is `PATH:LINE`; PATH is one of `paths` (which may themselves contain ':',
    like /run/udev/data/b8:0, so the longest known prefix wins)."""
    known = set(paths)
    out: dict[str, list[str]] = {}
    for line in stdout.split("\n")[:-1] if stdout.endswith("\n") else stdout.split("\n"):
        path = None
        i = line.find(":")
        while i != -1:
            if line[:i] in known:
                path = line[:i]
            i = line.find(":", i + 1)
        if path is not None:
            out.setdefault(path, []).append(line[len(path) + 1 :])
    return {p: "\n".join(lines) + "\n" for p, lines in out.items()}
