"""The audit service's tornado app in the test process, answering whole responses.

tests/helpers/audit_service.py answers (status, text); this one answers tornado's
``HTTPResponse`` (status, headers, body), sends several requests at once when asked, and takes
any hub stand-in, a real ``HubOAuth`` included.
"""

from __future__ import annotations

import asyncio
import json
import socket
from contextlib import contextmanager

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from spawner.audit.service import make_app

PREFIX = "/services/audit/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """``service(method, path, token=None, body=None, headers=None) -> HTTPResponse``.

    ``token`` is sent as ``Authorization: token …``; a body that is not bytes or str is sent
    as JSON. ``service.many((method, path, kwargs), …)`` sends them all at once."""

    def __init__(self, app, settings, port: int, prefix: str = PREFIX):
        self.app, self.settings, self.port = app, settings, port
        self.store = settings["audit_store"]
        self.url = f"http://127.0.0.1:{port}{prefix}"

    async def _one(self, method, path, token=None, body=None, headers=None):
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"token {token}"
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        return await AsyncHTTPClient().fetch(
            HTTPRequest(
                self.url + path,
                method=method,
                headers=headers,
                body=body,
                follow_redirects=False,
                allow_nonstandard_methods=True,
            ),
            raise_error=False,
        )

    def many(self, *requests):
        async def go():
            server = self.app.listen(self.port, "127.0.0.1")
            try:
                return await asyncio.gather(
                    *(self._one(method, path, **kw) for method, path, kw in requests)
                )
            finally:
                server.stop()

        return asyncio.run(go())

    def __call__(self, method, path, **kw):
        return self.many((method, path, kw))[0]


@contextmanager
def running_service(tmp_path, hub_auth=None, env=None, event_stream=None, prefix=PREFIX):
    """The service on a sqlite file in ``tmp_path``; ``hub_auth=None`` is make_app's own
    default (the ``HubOAuth`` singleton). Requests go to ``prefix`` + their path: give the
    prefix the service is expected to serve at when ``env`` sets another."""
    env = {"STREAMLIT_HUB_AUDIT_DB_URL": f"sqlite:///{tmp_path / 'a.sqlite'}", **(env or {})}
    app, settings = make_app(env, hub_auth=hub_auth, event_stream=event_stream)
    try:
        yield Service(app, settings, free_port(), prefix)
    finally:
        settings["audit_store"].engine.dispose()
        settings["audit_executor"].shutdown()
