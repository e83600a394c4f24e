"""Real activity, posted to the hub only when viewers used the app.

A request or websocket message from a verified viewer counts, and so does an open websocket
(a viewer reading a page). Nothing else does: the hub's own health checks, refused clients and
an app with no viewers post nothing, so the idle culler sees the truth. At most one post per
``activity_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from ..utc import iso_z

log = logging.getLogger("streamlit_hub.activity")


class ActivityTracker:
    def __init__(self, settings, hub):
        self._interval = settings.activity_interval
        self._url = settings.activity_url
        self._server = settings.server_name
        self._hub = hub
        self.last_activity: datetime | None = None
        self.last_posted: datetime | None = None
        self.open_websockets = 0
        self._task: asyncio.Task | None = None

    def touch(self):
        self.last_activity = datetime.now(UTC)
        self._ensure_running()

    def websocket_opened(self):
        self.open_websockets += 1
        self.touch()

    def websocket_closed(self):
        self.open_websockets = max(0, self.open_websockets - 1)
        self.touch()

    def _ensure_running(self):
        if self._task is None and self._url:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self):
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception:  # a failed post must never stop tracking
                log.exception("activity post failed")

    async def flush(self):
        if self.open_websockets:
            self.last_activity = datetime.now(UTC)
        when = self.last_activity
        if when is None or (self.last_posted is not None and when <= self.last_posted):
            return
        if await self._hub.post_activity(self._url, self._server, iso_z(when)):
            self.last_posted = when
