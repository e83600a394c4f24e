"""Find processes by what their command line or environment mentions (Linux /proc)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def processes_mentioning(needle: str) -> list[int]:
    """PIDs (other than ours) whose cmdline or environment contains ``needle``."""
    found = []
    key = needle.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        stat = _read(entry / "stat")
        if b") Z " in stat:  # zombie: already dead, waiting to be reaped
            continue
        if key in _read(entry / "cmdline") or key in _read(entry / "environ"):
            found.append(int(entry.name))
    return found


def wait_gone(needle: str, timeout: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        left = processes_mentioning(needle)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)
