"""The audit service's tornado app in the test process, with a scripted hub: tokens → models."""

from __future__ import annotations

import asyncio
import json
import socket
from contextlib import contextmanager

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from spawner.audit.service import make_app


class FakeHubAuth:
    """What ``HubAuth`` answers, from a dict of token → the hub's model of its owner."""

    def __init__(self, tokens: dict):
        self.tokens = tokens

    async def user_for_token(self, token, sync=False):
        return self.tokens.get(token)

    async def get_user(self, handler, sync=False):
        value = handler.request.headers.get("Authorization", "")
        return self.tokens.get(value.partition(" ")[2])


@contextmanager
def audit_service(tmp_path, tokens: dict, event_stream=None):
    """``call(method, path, token=None, body=None) -> (status, text)`` against the service; a
    body that is not bytes or str is sent as JSON. ``call.store`` is its store."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        "STREAMLIT_HUB_AUDIT_DB_URL": f"sqlite:///{tmp_path / 'a.sqlite'}",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/audit/",
    }
    app, settings = make_app(env, hub_auth=FakeHubAuth(tokens), event_stream=event_stream)

    async def fetch(method, path, token=None, body=None):
        server = app.listen(port, "127.0.0.1")
        try:
            headers = {"Authorization": f"token {token}"} if token else {}
            if body is not None and not isinstance(body, (bytes, str)):
                body = json.dumps(body)
            resp = await AsyncHTTPClient().fetch(
                HTTPRequest(
                    f"http://127.0.0.1:{port}/services/audit/{path}",
                    method=method,
                    headers=headers,
                    body=body,
                ),
                raise_error=False,
            )
            return resp.code, resp.body.decode()
        finally:
            server.stop()

    def call(*a, **kw):
        return asyncio.run(fetch(*a, **kw))

    call.store = settings["audit_store"]
    try:
        yield call
    finally:
        settings["audit_store"].engine.dispose()
        settings["audit_executor"].shutdown()
