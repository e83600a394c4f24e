"""Lossless delivery of audit events: a disk spool and a sender that resends with backoff.

Used by the app server (session and page events) and by the hub (authorize, app and share
events). It imports nothing from ``jupyterhub`` so the app server stays light.

Invariants:

- ``emit`` writes the event to the spool on disk before it returns (one ``write`` of one JSON
  line; the file is flushed to the OS at once and fsync'ed, off the event loop, when its
  segment is closed), so a crash of this process after ``emit`` loses nothing that the OS has.
- A spool file is deleted only after the service acknowledged every event in it (HTTP 200).
  Anything else is retried with exponential backoff (0.5 s doubling, capped at 5 s), so an outage of
  the service delays events but does not lose them. Resends carry the same event ids, and the
  service stores each id once.
- An event the service refuses as malformed or forged (400/403/413) is dropped with an error
  log naming why: one bad event must not block the spool forever.
- The spool is bounded (``max_bytes``); past it, new events are dropped with an error log
  (disk exhaustion would take the app or hub down with it, which loses more).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
import uuid
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ..utc import iso_z

log = logging.getLogger("streamlit_hub.audit")

_DROP = (400, 403, 413, 422)


def new_event(kind: str, **fields) -> dict:
    """An event dict with a fresh id and the current UTC time; ``None`` fields are left out."""
    event = {
        "id": uuid.uuid4().hex,
        "time": iso_z(),
        "type": kind,
    }
    event.update({k: v for k, v in fields.items() if v not in (None, "", (), [])})
    return event


class AuditSpool:
    """Append-only JSON-lines segments in one directory.

    ``open-*.jsonl`` is being written; ``ready-*.jsonl`` waits for the sender. At start-up an
    ``open`` segment left by a crash becomes ``ready`` (a torn last line is skipped on read).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        segment_events: int = 1000,
        segment_seconds: float = 0.25,
        max_bytes: int = 256 * 1024 * 1024,
    ):
        self.dir = Path(directory)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.segment_events = segment_events
        self.segment_seconds = segment_seconds
        self.max_bytes = max_bytes
        self._file = None
        self._path: Path | None = None
        self._count = 0
        self._opened = 0.0
        self._seq = 0
        self.dropped = 0
        for leftover in sorted(self.dir.glob("open-*.jsonl")):
            leftover.rename(leftover.with_name("ready-" + leftover.name[len("open-") :]))
        self._bytes = sum(p.stat().st_size for p in self.dir.glob("*.jsonl"))

    def append(self, event: dict) -> bool:
        line = (json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        if self._bytes + len(line) > self.max_bytes:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error(
                    "audit spool %s is full (%d bytes): %d events dropped; is the audit "
                    "service reachable?",
                    self.dir,
                    self.max_bytes,
                    self.dropped,
                )
            return False
        if self._file is None:
            self._seq += 1
            name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.jsonl"
            self._path = self.dir / f"open-{name}"
            self._file = open(self._path, "ab", buffering=0)
            self._count = 0
            self._opened = time.monotonic()
        self._file.write(line)
        self._count += 1
        self._bytes += len(line)
        if self._count >= self.segment_events:
            self.due_now = True
        return True

    due_now = False

    def due(self) -> bool:
        if self._file is None:
            return False
        if self.due_now or time.monotonic() - self._opened >= self.segment_seconds:
            self.due_now = False
            return True
        return False

    def rotate(self) -> None:
        """Close the open segment and hand it to the sender."""
        detached = self.detach()
        if detached is not None:
            self.seal(*detached)

    def detach(self):
        """Stop appending to the open segment (cheap; the next append opens a new one)."""
        if self._file is None:
            return None
        detached = (self._file, self._path)
        self._file = None
        self._path = None
        return detached

    @staticmethod
    def seal(file, path: Path) -> None:
        """fsync, close and mark ready a detached segment (slow: off the event loop)."""
        os.fsync(file.fileno())
        file.close()
        path.rename(path.with_name("ready-" + path.name[len("open-") :]))

    def ready(self) -> list[Path]:
        return sorted(self.dir.glob("ready-*.jsonl"))

    @staticmethod
    def read(path: Path) -> list[dict]:
        events = []
        with open(path, "rb") as f:
            for raw in f:
                try:
                    events.append(json.loads(raw))
                except ValueError:
                    log.warning("audit spool %s: skipped a torn line", path.name)
        return events

    def done(self, path: Path) -> None:
        try:
            self._bytes -= path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            pass

    def pending(self) -> int:
        """Events not yet acknowledged (open + ready segments)."""
        n = 0
        for p in self.dir.glob("*.jsonl"):
            with open(p, "rb") as f:
                n += sum(1 for _ in f)
        return n


class AuditSender:
    """Moves spooled events to the audit service's ingest API, in batches, in order."""

    def __init__(
        self,
        spool: AuditSpool,
        url: str,
        token: str,
        *,
        batch: int = 1000,
        max_backoff: float = 5.0,
        timeout: float = 10.0,
    ):
        self.spool = spool
        self.url = url
        self._token = token
        self.batch = batch
        self.max_backoff = max_backoff
        self.timeout = timeout
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    def emit(self, event: dict) -> None:
        self.spool.append(event)
        self._ensure_running()

    def kick(self) -> None:
        """Start delivering (e.g. what a previous run left in the spool) without an event."""
        self._ensure_running()
        if self._wake is not None:
            self._wake.set()

    def _ensure_running(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet (tests, start-up): the next emit in a loop starts it
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run())
        if self.spool.due_now:
            self._wake.set()

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.spool.segment_seconds)
            except TimeoutError:
                pass
            self._wake.clear()
            if self.spool.due():
                detached = self.spool.detach()
                if detached is not None:
                    # fsync can take milliseconds: not on the loop that serves viewers
                    await asyncio.get_running_loop().run_in_executor(
                        None, AuditSpool.seal, *detached
                    )
            try:
                await self.send_ready()
                backoff = 0.5
            except Exception as e:
                log.warning(
                    "audit service unreachable (%s); %d segment(s) kept on disk, "
                    "retrying in %.1f s",
                    e,
                    len(self.spool.ready()),
                    backoff,
                )
                await asyncio.sleep(backoff * (0.75 + random.random() / 2))
                backoff = min(backoff * 2, self.max_backoff)

    async def send_ready(self) -> None:
        """Send every ready segment; raise (keeping the segment) if the service fails."""
        for path in self.spool.ready():
            events = AuditSpool.read(path)
            for i in range(0, len(events), self.batch):
                await self._post(events[i : i + self.batch])
            self.spool.done(path)

    async def _post(self, events: list[dict]) -> None:
        req = HTTPRequest(
            self.url,
            method="POST",
            body=json.dumps({"events": events}),
            headers={"Authorization": f"token {self._token}", "Content-Type": "application/json"},
            request_timeout=self.timeout,
            connect_timeout=self.timeout,
            follow_redirects=False,
        )
        try:
            resp = await AsyncHTTPClient().fetch(req, raise_error=False)
        except (OSError, HTTPClientError) as e:
            raise ConnectionError(e.__class__.__name__) from None
        if resp.code == 200:
            rejected = json.loads(resp.body or b"{}").get("rejected") or []
            for r in rejected[:5]:
                log.error("audit service refused an event: %s", r)
            return
        if resp.code in _DROP:
            log.error(
                "audit service refused a batch of %d events (HTTP %s): %s; dropped",
                len(events),
                resp.code,
                (resp.body or b"")[:300].decode("utf-8", "replace"),
            )
            return
        raise ConnectionError(f"HTTP {resp.code}")

    async def drain(self, timeout: float = 5.0) -> bool:
        """Try to deliver everything now (at shutdown); True if nothing is left."""
        self.spool.rotate()
        try:
            await asyncio.wait_for(self.send_ready(), timeout)
        except Exception as e:
            log.warning("audit events kept on disk for the next start: %s", e)
            return False
        return True
