"""An app with several Streamlit worker processes behind its one auth layer (the front).

With ``workers`` > 1 (``STREAMLIT_HUB_WORKERS``) the app server's process is the *front*: the
same ``HubAuthMiddleware`` (OAuth, every request and websocket checked, the websocket re-check
window, activity, audit) in front of ``WorkerProxy`` instead of Streamlit. N worker processes
(``worker.py``) serve Streamlit without auth on Unix sockets in a private folder (0700, the
app account's; each socket 0600), so only the front, or root, reaches them. With one worker
nothing of this runs: the launcher serves Streamlit in its own process, as before.

- **Pinning.** Streamlit keeps uploads, media files and session state per process, so a
  viewer's browser is pinned to one worker for all its requests and websockets: the key is
  the viewer's sign-in (the middleware's ``scope["streamlit_hub.pin"]``: a hash of the
  token behind the per-viewer session cookie, or of a bearer token). A new viewer goes to the
  least loaded worker (open websockets, then viewers pinned in the last minutes).
- **Replacement.** A worker that exits is started again (with a backoff if it keeps dying);
  its pins are dropped, so its viewers' reconnects (Streamlit's client reconnects by itself)
  go to the least loaded live worker. Other workers' viewers see nothing.
- **Proxying.** HTTP goes over the worker's socket with ``h11`` (the HTTP/1.1 protocol
  library uvicorn itself uses: this module only moves its bytes), one connection per request
  (a Unix connect costs microseconds), streamed both ways with back-pressure. Websockets go
  with the ``websockets`` client (``unix_connect``), frames passed on as they are. Both are
  dependencies of Streamlit, so every app environment has them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from urllib.parse import quote

import h11

from .auth import _Bounded

log = logging.getLogger("streamlit_hub.workers")

PIN_KEY = "streamlit_hub.pin"  # the scope key the auth middleware sets (a hash, never a token)
_MAX_PINS = 10_000
_RECENT = 600.0  # a pin used within this many seconds counts as a viewer of its worker
_READY_TIMEOUT = 120.0  # a worker's Streamlit must answer its health path within this
_NO_WORKER_WAIT = 15.0  # a request waits this long for a live worker before a 503
_HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
}
_WS_OWN = {b"host", b"origin", b"user-agent"}  # the websocket client sets these itself
# Every request the front passes on carries this header with the pool's own secret; a worker
# refuses anything without it (worker.py), so the owner's other apps, which run as the same
# account and could open the socket, cannot reach a worker around the auth layer.
FRONT_HEADER = b"x-streamlit-hub-front"


@dataclass(eq=False)
class Worker:
    index: int
    path: str  # its Unix socket
    proc: asyncio.subprocess.Process | None = None
    ready: bool = False
    websockets: int = 0
    starts: int = 0
    started_at: float = 0.0
    up: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


class WorkerPool:
    """N worker processes, kept running, and which viewer is pinned to which."""

    def __init__(self, settings, count: int, python: str = sys.executable):
        self.s = settings
        self.python = python
        self.folder = tempfile.mkdtemp(prefix="streamlit-hub-workers-")  # 0700, this account
        self.workers = [Worker(i, os.path.join(self.folder, f"w{i}.sock")) for i in range(count)]
        self.pins: _Bounded = _Bounded(_MAX_PINS)  # pin key -> [worker, last used]
        self._cookie_secret = secrets.token_urlsafe(32)
        self.front_secret = secrets.token_urlsafe(32)
        self._tasks: list[asyncio.Task] = []
        self._closing = False
        self.any_up = asyncio.Event()

    # ---- life cycle -----------------------------------------------------------------
    async def start(self) -> None:
        """Start every worker; return once all answer, raise if one cannot start at all."""
        self._tasks = [asyncio.create_task(self._supervise(w)) for w in self.workers]
        all_up = asyncio.ensure_future(asyncio.gather(*(w.up.wait() for w in self.workers)))
        # returns when all answer, or a supervisor fails (a worker died before answering)
        await asyncio.wait(
            [all_up, *self._tasks], timeout=_READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if all(w.ready for w in self.workers):
            log.info(
                "%d Streamlit workers ready (pids %s)",
                len(self.workers),
                ", ".join(str(w.pid) for w in self.workers),
            )
            return
        all_up.cancel()
        await self.stop()
        raise RuntimeError("the app's Streamlit workers did not start (see the output above)")

    async def stop(self) -> None:
        self._closing = True
        for t in self._tasks:
            t.cancel()
        procs = [w.proc for w in self.workers if w.proc is not None and w.proc.returncode is None]
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                await asyncio.wait_for(p.wait(), 5.0)
            except TimeoutError:
                p.kill()
                await p.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _spec(self) -> bytes:
        return (
            json.dumps(
                {
                    "parent": os.getpid(),
                    "prefix": self.s.prefix,
                    "owner": self.s.owner,
                    "entry": self.s.entry,
                    "bind_host": self.s.bind_host,
                    "bind_port": self.s.bind_port,
                    "cookie_secret": self._cookie_secret,
                    "front_secret": self.front_secret,
                    "secrets": dict(self.s.app_secrets),
                    "log_level": self.s.log_level,
                }
            ).encode()
            + b"\n"
        )

    async def _supervise(self, w: Worker) -> None:
        """Keep worker ``w`` running: start it, wait until it answers, restart it when it
        exits (after a pause that grows while it keeps dying young)."""
        pause = 0.5
        # the app's secrets reach workers through their stdin, not their environment
        env = {k: v for k, v in os.environ.items() if k not in self.s.app_secrets}
        while not self._closing:
            try:
                os.unlink(w.path)
            except FileNotFoundError:
                pass
            w.starts += 1
            w.started_at = time.monotonic()
            w.proc = await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                "spawner.app_server.worker",
                w.path,
                stdin=asyncio.subprocess.PIPE,
                env=env,
            )
            w.proc.stdin.write(self._spec())
            await w.proc.stdin.drain()
            w.proc.stdin.close()
            waiting = asyncio.create_task(self._wait_ready(w))
            status = await w.proc.wait()
            waiting.cancel()
            w.ready = False
            self._unpin(w)
            if self._closing:
                return
            log.warning(
                "Streamlit worker %d (pid %s) exited with status %s; starting it again",
                w.index,
                w.proc.pid,
                status,
            )
            if w.starts == 1 and not w.up.is_set():
                raise RuntimeError(f"worker {w.index} exited before it answered")
            lived = time.monotonic() - w.started_at
            pause = 0.5 if lived > 60 else min(pause * 2, 30.0)
            await asyncio.sleep(pause)

    async def _wait_ready(self, w: Worker) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                status = await asyncio.wait_for(
                    http_status(w.path, self.s.prefix + "_stcore/health", self.front_secret),
                    5.0,
                )
                if status == 200:
                    w.ready = True
                    w.up.set()
                    self.any_up.set()
                    return
            except (OSError, TimeoutError, h11.ProtocolError):
                pass
            await asyncio.sleep(0.1)
        log.error("Streamlit worker %d did not answer in %.0f s", w.index, _READY_TIMEOUT)

    # ---- pinning --------------------------------------------------------------------
    def _unpin(self, w: Worker) -> None:
        for key in [k for k, v in self.pins.items() if v[0] is w]:
            del self.pins[key]

    def _load(self, w: Worker, now: float) -> tuple[int, int, int]:
        recent = sum(1 for v in self.pins.values() if v[0] is w and now - v[1] < _RECENT)
        return (w.websockets, recent, w.index)

    async def worker_for(self, key: str | None) -> Worker | None:
        """The viewer's pinned worker if it is up, else the least loaded live one (pinned
        from now on); None when no worker comes up in time."""
        now = time.monotonic()
        pinned = self.pins.get(key) if key else None
        if pinned is not None and pinned[0].ready:
            pinned[1] = now
            self.pins.move_to_end(key)
            return pinned[0]
        live = [w for w in self.workers if w.ready]
        if not live:
            self.any_up.clear()
            try:
                await asyncio.wait_for(self.any_up.wait(), _NO_WORKER_WAIT)
            except TimeoutError:
                return None
            live = [w for w in self.workers if w.ready]
            if not live:
                return None
        w = min(live, key=lambda w: self._load(w, now))
        if key:
            self.pins.put(key, [w, now])
        return w


async def http_status(path: str, target: str, front_secret: str) -> int:
    """The status of ``GET target`` on the Unix socket ``path`` (a worker's health)."""
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        conn = h11.Connection(h11.CLIENT)
        writer.write(
            conn.send(
                h11.Request(
                    method="GET",
                    target=target,
                    headers=[
                        ("host", "localhost"),
                        ("connection", "close"),
                        (FRONT_HEADER.decode(), front_secret),
                    ],
                )
            )
        )
        writer.write(conn.send(h11.EndOfMessage()))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                if not data and conn.their_state is h11.SEND_RESPONSE:
                    raise ConnectionResetError("closed before answering")
            elif isinstance(event, h11.Response):
                return event.status_code
    finally:
        writer.close()


class WorkerProxy:
    """The ASGI app behind the auth middleware: each request and websocket goes to the
    viewer's worker. Lifespan starts and stops the pool."""

    def __init__(self, pool: WorkerPool):
        self.pool = pool

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        worker = await self.pool.worker_for(scope.get(PIN_KEY))
        if worker is None:
            await _unavailable(scope, send)
        elif kind == "websocket":
            await self._websocket(worker, scope, receive, send)
        else:
            await self._http(worker, scope, receive, send)

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.pool.start()
                except Exception as e:
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.pool.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ---- HTTP -----------------------------------------------------------------------
    async def _http(self, worker: Worker, scope, receive, send):
        target = (scope.get("raw_path") or quote(scope["path"]).encode()) + (
            b"?" + scope["query_string"] if scope.get("query_string") else b""
        )
        headers = [
            (k, v) for k, v in scope["headers"] if k not in _HOP_BY_HOP and k != FRONT_HEADER
        ]
        headers.append((FRONT_HEADER, self.pool.front_secret.encode()))
        if not any(k == b"host" for k, _ in headers):
            headers.append((b"host", b"localhost"))
        length = next((v for k, v in headers if k == b"content-length"), None)
        body = b""
        if length is None:  # no length given (rare): the body is read first, then sent
            chunks = []
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            body = b"".join(chunks)
            if body or scope["method"] not in ("GET", "HEAD", "OPTIONS", "DELETE"):
                headers.append((b"content-length", str(len(body)).encode()))
        headers.append((b"connection", b"close"))
        started = False
        try:
            reader, writer = await asyncio.open_unix_connection(worker.path)
        except OSError:
            await _unavailable(scope, send)
            return
        try:
            conn = h11.Connection(h11.CLIENT)
            writer.write(
                conn.send(h11.Request(method=scope["method"], target=target, headers=headers))
            )
            if length is not None:
                more = True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    if chunk:
                        writer.write(conn.send(h11.Data(data=chunk)))
                        await writer.drain()
                    more = message.get("more_body", False)
            elif body:
                writer.write(conn.send(h11.Data(data=body)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Response):
                    kept = [(k, v) for k, v in event.headers if k not in _HOP_BY_HOP]
                    await send(
                        {
                            "type": "http.response.start",
                            "status": event.status_code,
                            "headers": kept,
                        }
                    )
                    started = True
                elif isinstance(event, h11.Data):
                    await send(
                        {"type": "http.response.body", "body": bytes(event.data), "more_body": True}
                    )
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    await send({"type": "http.response.body", "body": b""})
                    return
        except (OSError, h11.ProtocolError) as e:
            log.warning("worker %d failed a request: %s", worker.index, e)
            if not started:
                await _unavailable(scope, send)
            else:  # the response was under way: end it (the browser sees a short body)
                await send({"type": "http.response.body", "body": b""})
        finally:
            writer.close()

    # ---- websockets -----------------------------------------------------------------
    async def _websocket(self, worker: Worker, scope, receive, send):
        from websockets.asyncio.client import unix_connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        message = await receive()  # websocket.connect
        if message["type"] != "websocket.connect":
            return
        host = _header(scope, b"host") or "localhost"
        target = (scope.get("raw_path") or quote(scope["path"]).encode()).decode("latin-1")
        qs = scope.get("query_string", b"").decode("latin-1")
        extra = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k not in _HOP_BY_HOP
            and k not in _WS_OWN
            and k != FRONT_HEADER
            and not k.startswith(b"sec-websocket-")
        ]
        extra.append((FRONT_HEADER.decode(), self.pool.front_secret))
        try:
            upstream = await unix_connect(
                worker.path,
                f"ws://{host}{target}" + (f"?{qs}" if qs else ""),
                origin=_header(scope, b"origin"),
                subprotocols=scope.get("subprotocols") or None,
                additional_headers=extra,
                user_agent_header=_header(scope, b"user-agent"),
                compression=None,  # a local socket: no deflate between the two
                proxy=None,
                ping_interval=None,  # the worker pings; this client answers
                max_size=None,  # the worker and the front's own server bound sizes
                open_timeout=10,
                close_timeout=2,
            )
        except (OSError, InvalidHandshake, TimeoutError) as e:
            log.info("worker %d refused a websocket: %s", worker.index, e)
            await send({"type": "websocket.close", "code": 1011})
            return
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        worker.websockets += 1

        async def from_viewer():
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message["type"] == "websocket.receive":
                    data = message.get("bytes")
                    await upstream.send(data if data is not None else message.get("text", ""))

        async def from_worker():
            try:
                async for data in upstream:
                    if isinstance(data, bytes):
                        await send({"type": "websocket.send", "bytes": data})
                    else:
                        await send({"type": "websocket.send", "text": data})
            except ConnectionClosed:
                pass

        viewer = asyncio.create_task(from_viewer())
        server = asyncio.create_task(from_worker())
        try:
            done, _ = await asyncio.wait({viewer, server}, return_when=asyncio.FIRST_COMPLETED)
            if server in done and not viewer.done():
                # the worker closed it (or died): the viewer's client reconnects, to a live
                # worker; 1012 is "service restart"
                code = upstream.close_code if upstream.close_code not in (None, 1006) else 1012
                try:
                    await send({"type": "websocket.close", "code": code})
                except Exception:  # the viewer is gone too
                    pass
            for t in (viewer, server):
                if not t.done():
                    t.cancel()
            for t in (viewer, server):
                try:
                    await t
                except (asyncio.CancelledError, ConnectionClosed, OSError):
                    pass
        finally:
            worker.websockets -= 1
            await upstream.close()


def _header(scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return v.decode("latin-1")
    return None


async def _unavailable(scope, send):
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1013})  # try again later
        return
    body = json.dumps(
        {"status": 503, "message": "The app is restarting a worker. Try again in a moment."}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"2"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def build_front(settings, sender=None):
    """The front's ASGI app: the auth middleware in front of the worker pool."""
    from .audit_sessions import SessionAudit
    from .auth import HubAuthMiddleware

    audit = SessionAudit(settings, sender) if sender is not None else None
    pool = WorkerPool(settings, settings.workers)
    return HubAuthMiddleware(WorkerProxy(pool), settings=settings, audit=audit), pool
