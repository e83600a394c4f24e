"""Driving the hub-auth ASGI middleware in unit tests: a scripted hub, an app that echoes,
one HTTP exchange, one websocket from the client's side, a hand-moved clock, a session log."""

import asyncio
import json

from spawner.app_server.auth import HubAuthMiddleware
from spawner.app_server.hub_client import HubUnavailable
from tests.helpers.app_settings import demo_settings


class ScriptedHub:
    def __init__(self):
        self.models = {}
        self.calls = 0
        self.down = False
        self.shares = []
        self.share_calls = 0

    async def identify(self, token):
        self.calls += 1
        await asyncio.sleep(0.01)
        if self.down:
            raise HubUnavailable("down")
        return self.models.get(token)

    async def server_shares(self, owner, server):
        self.share_calls += 1
        return self.shares

    async def token_for_code(self, **kw):
        return "tok-" + kw["code"]


def allowed(name, groups=()):
    return {
        "name": name,
        "kind": "user",
        "groups": list(groups),
        "scopes": ["access:servers!server=alice/demo"],
    }


async def downstream(scope, receive, send):
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send(
        {
            "type": "http.response.body",
            "body": json.dumps([[k.decode(), v.decode()] for k, v in scope["headers"]]).encode(),
        }
    )


async def exchange(mw, path="/user/alice/demo/", headers=(), method="GET", query=b"", omit=()):
    """One HTTP request through the middleware; every ASGI message it sent. ``omit``: scope
    keys left out (a server that sends less)."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(m):
        sent.append(m)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }
    for key in omit:
        scope.pop(key)
    await mw(scope, receive, send)
    return sent


async def call(mw, path="/user/alice/demo/", headers=(), method="GET", query=b""):
    """One HTTP request: (status, headers with set-cookie as a list, body)."""
    sent = await exchange(mw, path, headers, method, query)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    headers["set-cookie"] = [v.decode() for k, v in start["headers"] if k == b"set-cookie"]
    return start["status"], headers, body


def make(ttl=30.0):
    hub = ScriptedHub()
    mw = HubAuthMiddleware(downstream, demo_settings(auth_cache_seconds=ttl), hub=hub)
    return mw, hub


class EchoApp:
    """A stand-in for Streamlit's websocket endpoint: accept, echo each text, note the end."""

    def __init__(self):
        self.reached = False
        self.scopes = []
        self.received = []
        self.ended_with = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            await downstream(scope, receive, send)
            return
        self.reached = True
        self.scopes.append(scope)
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.ended_with = message.get("code")
                return
            self.received.append(message["text"])
            await send({"type": "websocket.send", "text": "echo " + message["text"]})


class Socket:
    """Drives one websocket through the middleware: the client's side of the ASGI exchange."""

    def __init__(self, mw, headers, path="/user/alice/demo/_stcore/stream"):
        self.mw = mw
        self.incoming: asyncio.Queue = asyncio.Queue()
        self.sent = []
        self.scope = {
            "type": "websocket",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "subprotocols": ["streamlit"],
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        }
        self.incoming.put_nowait({"type": "websocket.connect"})
        self.task = None

    async def _receive(self):
        return await self.incoming.get()

    async def _send(self, message):
        self.sent.append(message)

    async def open(self):
        """Start the exchange; return once Streamlit accepted (or the middleware closed)."""
        self.task = asyncio.ensure_future(self.mw(self.scope, self._receive, self._send))
        for _ in range(200):
            await asyncio.sleep(0.005)
            if self.sent or self.task.done():
                break
        assert self.sent[:1] == [{"type": "websocket.accept"}], self.sent
        return self

    async def say(self, text):
        before = len(self.sent)
        self.incoming.put_nowait({"type": "websocket.receive", "text": text})
        for _ in range(100):
            await asyncio.sleep(0.005)
            if len(self.sent) > before or self.task.done():
                break
        return self.sent[before:]

    async def close(self):
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(self.task, 2)


def make_ws(ttl=30.0):
    hub = ScriptedHub()
    app = EchoApp()
    mw = HubAuthMiddleware(app, demo_settings(auth_cache_seconds=ttl), hub=hub)
    return mw, hub, app


WS_HOST = ("Host", "alice.apps.example.com")


class Clock:
    """The middleware's monotonic clock, moved by hand: window tests need no sleeps."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now


def install_clock(monkeypatch):
    """A Clock standing in for the middleware's monotonic time (tests/unit/conftest.py)."""
    import types

    import spawner.app_server.auth as auth

    c = Clock()
    monkeypatch.setattr(auth, "time", types.SimpleNamespace(monotonic=c.monotonic))
    return c


class SessionLog:
    """Stands in for SessionAudit: what the middleware tells the audit about a session."""

    def __init__(self):
        self.opened, self.frames, self.ended, self.kicks = [], [], [], 0
        self.sender = self

    def kick(self):
        self.kicks += 1

    def open(self, viewer, scope):
        self.opened.append((viewer.name, scope["path"]))
        log = self

        class Session:
            def client_frame(self, data):
                log.frames.append(("client", data))

            def server_frame(self, data):
                log.frames.append(("server", data))

            def end(self, reason):
                log.ended.append(reason)

        return Session()


class BytesEcho(EchoApp):
    async def __call__(self, scope, receive, send):
        await send({"type": "websocket.accept"})
        assert (await receive())["type"] == "websocket.connect"
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.ended_with = message.get("code")
                return
            await send({"type": "websocket.send", "bytes": b"re:" + message["bytes"]})


def audited(ttl=30.0):
    hub, audit = ScriptedHub(), SessionLog()
    mw = HubAuthMiddleware(BytesEcho(), demo_settings(auth_cache_seconds=ttl), hub=hub, audit=audit)
    hub.models["T"] = allowed("carol")
    return mw, hub, audit


async def say_bytes(sock, data):
    sock.incoming.put_nowait({"type": "websocket.receive", "bytes": data})
    for _ in range(100):
        await asyncio.sleep(0.005)
        if sock.sent[-1].get("bytes") == b"re:" + data or sock.task.done():
            break
