"""One way to write a time: UTC, microseconds, ``Z`` (what JupyterHub's activity API and the
audit event schema both take, e.g. ``2026-11-29T03:05:26.123456Z``)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_z(when: datetime | None = None) -> str:
    """``when`` (default: now) in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    when = datetime.now(UTC) if when is None else when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
