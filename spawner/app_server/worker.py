"""One Streamlit worker process of an app with several (``python -m spawner.app_server.worker``).

The front (``workers.py``) starts it with a private Unix socket path as its only argument and
writes one JSON line to its stdin: the app's prefix, owner and entry file, the Streamlit cookie
secret every worker shares (so an XSRF cookie one worker set is good at another after a move),
the owner's app secrets, and the front's pid. It then:

1. makes itself non-dumpable when the front is (per-user accounts), before it reads stdin;
2. asks the kernel for SIGTERM when the front dies (``PR_SET_PDEATHSIG``), so a killed front
   leaves no worker behind;
3. serves Streamlit's public ``st.App(entry)`` with the same forced options as a single app
   server, without the auth layer: the socket (mode 0600, in a 0700 folder of the app's
   account) is reachable only by processes of that account, and only requests carrying the
   front's secret (``FrontOnly``; the front authenticated them and set the identity headers
   Streamlit trusts) reach Streamlit: the owner's other apps cannot go around the front.

It never gets the app server's API token (the front removed it from the environment).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from types import SimpleNamespace

from . import launcher

log = logging.getLogger("streamlit_hub.worker")

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """SIGTERM this process when the front exits (Linux); exit now if it already has."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
            pass
    if os.getppid() != parent:
        sys.exit(0)


def bind_unix_socket(path: str, backlog: int = 2048) -> socket.socket:
    """A listening Unix socket at ``path``, readable and writable by this account only."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class FrontOnly:
    """ASGI: only requests the front passed on (its secret in ``FRONT_HEADER``) reach Streamlit;
    anything else (another process of the same account on the socket) gets a 403."""

    def __init__(self, app, secret: str):
        self.app = app
        self.secret = secret.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            from .workers import FRONT_HEADER

            given = next((v for k, v in scope.get("headers", []) if k == FRONT_HEADER), b"")
            if not hmac.compare_digest(given, self.secret):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await send({"type": "http.response.start", "status": 403, "headers": []})
                await send({"type": "http.response.body", "body": b"Only through the app."})
                return
        await self.app(scope, receive, send)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level="INFO", format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    if len(argv) != 1:
        print("usage: python -m spawner.app_server.worker SOCKET (started by the front)")
        return 2
    path = argv[0]
    from .settings import AppServerSettings

    if AppServerSettings(environ=os.environ).private_memory:
        launcher.keep_memory_private()
    spec = json.loads(sys.stdin.readline())
    sys.stdin.close()
    die_with_parent(spec["parent"])
    os.environ.update(spec.get("secrets") or {})
    logging.getLogger().setLevel(spec.get("log_level") or "INFO")
    entry = Path(spec["entry"])
    os.chdir(entry.parent)
    sys.path.insert(0, str(entry.parent))
    sys.argv = [str(entry)]

    import streamlit as st
    import uvicorn
    from streamlit import config as st_config

    st_config._main_script_path = str(entry)
    # The same forced options as a single app server (bind address: the front's, for what
    # Streamlit prints; nothing binds it here), and the cookie secret all workers share.
    options = launcher.streamlit_options(
        SimpleNamespace(
            prefix=spec["prefix"], bind_host=spec["bind_host"], bind_port=spec["bind_port"]
        )
    )
    options["server.cookieSecret"] = spec["cookie_secret"]
    launcher.apply_streamlit_options(options)
    app = FrontOnly(
        st.App(str(entry), on_script_error=launcher.script_error_handler(spec["owner"])),
        spec["front_secret"],
    )
    sock = bind_unix_socket(path)
    server = uvicorn.Server(
        uvicorn.Config(app, **{**launcher._uvicorn_kwargs(), "proxy_headers": False})
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        try:
            os.unlink(path)
        except OSError:
            pass
    return 0 if server.started else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
