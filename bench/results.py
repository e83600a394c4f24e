"""What every bench run writes: the machine line and its results as JSON and Markdown."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write(out: str | os.PathLike, name: str, stamp: dt.datetime, md: str, data: dict) -> int:
    """``<out>/<date>-<name>.{json,md}``, the Markdown printed; 1 if ``data`` says a process
    was left behind (``left_behind``), else 0: the exit status of a bench's ``main``."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stamp:%Y-%m-%d}-{name}.json").write_text(
        json.dumps({"time": stamp.isoformat(), "machine": machine(), **data}, indent=1)
    )
    (folder / f"{stamp:%Y-%m-%d}-{name}.md").write_text(md + "\n")
    print(md)
    if data.get("left_behind"):
        print(f"WARNING: processes left behind: {data['left_behind']}", file=sys.stderr)
        return 1
    return 0
