"""``streamlit-hub-app``: start one app server (Streamlit + hub auth) in one process.

The spawner runs ``python -m spawner.app_server`` with the hub's ``JUPYTERHUB_*`` variables and
``STREAMLIT_HUB_ENTRY`` (absolute path of the analyst's entry file). This program:

1. reads its settings and removes its API token from ``os.environ``;
2. fixes the Streamlit options that security depends on (base URL = the hub prefix, identity
   headers, headless, no usage stats);
3. builds Streamlit's public ``st.App(entry, middleware=[HubAuthMiddleware])``;
4. binds the listening socket itself with ``IPPROTO_TCP`` so asyncio turns on TCP_NODELAY for
   every accepted connection (Streamlit binds with protocol 0, which costs ~44 ms per
   keep-alive response through Nagle + delayed ACK), and serves it with uvicorn.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from pathlib import Path

from .settings import SettingsError, from_environ

log = logging.getLogger("streamlit_hub")


# Options an operator may change (server.* / client.* / theme.* in the app's
# .streamlit/config.toml are read as usual); the forced ones below always win.
DEFAULT_OPTIONS = {
    # Watching files costs CPU and inotify handles in every app server; analysts restart
    # the app from the hub to pick up changes.
    "server.fileWatcherType": "none",
    "server.runOnSave": False,
    # Viewers of a hosted app need no "Deploy" button or developer menu.
    "client.toolbarMode": "viewer",
}


def streamlit_options(settings) -> dict:
    """Streamlit config options for this app server, as ``streamlit run`` flags would set them.

    Security depends on the forced ones: the base URL is the hub prefix, identity comes only
    from the headers the auth layer sets, and nothing phones home.
    """
    from .auth import TRUSTED_USER_HEADERS

    options = dict(DEFAULT_OPTIONS)
    options.update(
        {
            "server.baseUrlPath": settings.prefix.strip("/"),
            "server.address": settings.bind_host,
            "server.port": settings.bind_port,
            "server.headless": True,
            "server.trustedUserHeaders": json.dumps(TRUSTED_USER_HEADERS),
            "server.enableCORS": True,
            "server.enableXsrfProtection": True,
            "browser.gatherUsageStats": False,
        }
    )
    return options


def apply_streamlit_options(options: dict) -> None:
    from streamlit.web import bootstrap

    # load_config_options takes CLI-flag style keys ("server_port"), as `streamlit run` does.
    bootstrap.load_config_options({k.replace(".", "_"): v for k, v in options.items()})


def bind_listening_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket whose ``proto`` is IPPROTO_TCP (so accepted ones get NODELAY)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _uvicorn_kwargs() -> dict:
    """Streamlit's own websocket settings for uvicorn (size limit, pings, protocol)."""
    try:
        from streamlit.web.server.starlette.starlette_server import _get_uvicorn_config_kwargs
    except ImportError:  # pragma: no cover - guarded by the pin on streamlit 1.67.x
        log.warning("Streamlit's uvicorn settings not found; using uvicorn's defaults")
        return {"access_log": False, "use_colors": False}
    return _get_uvicorn_config_kwargs()


def audit_sender(settings):
    """The app server's audit sender (spool on disk + resend), or None when audit is off."""
    if not settings.audit_url:
        return None
    from ..audit.client import AuditSender, AuditSpool

    return AuditSender(AuditSpool(settings.audit_spool), settings.audit_url, settings.api_token)


def build_app(settings, sender=None):
    import streamlit as st
    from starlette.middleware import Middleware

    from .audit_sessions import SessionAudit
    from .auth import HubAuthMiddleware

    audit = SessionAudit(settings, sender) if sender is not None else None
    return st.App(
        settings.entry,
        middleware=[Middleware(HubAuthMiddleware, settings=settings, audit=audit)],
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level="INFO", format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    try:
        settings = from_environ()
    except SettingsError as e:
        print(f"streamlit-hub-app: {e}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(settings.log_level)  # STREAMLIT_HUB_LOG_LEVEL
    entry = Path(settings.entry)
    if not entry.is_file():
        print(f"streamlit-hub-app: entry file {entry} does not exist", file=sys.stderr)
        return 2

    # The app runs as `streamlit run apps/<app>/app.py` would see it, from its own folder:
    # relative data files and sibling modules resolve there.
    os.chdir(entry.parent)
    sys.path.insert(0, str(entry.parent))
    sys.argv = [str(entry)]

    import uvicorn
    from streamlit import config as st_config

    st_config._main_script_path = str(entry)  # script-level .streamlit/ config and secrets
    apply_streamlit_options(streamlit_options(settings))
    sender = audit_sender(settings)
    app = build_app(settings, sender)
    sock = bind_listening_socket(settings.bind_host, settings.bind_port)
    log.info(
        "app server for %s/%s listening on %s:%s (entry %s)",
        settings.owner,
        settings.server_name,
        settings.bind_host,
        settings.bind_port,
        entry.name,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.bind_host,
            port=settings.bind_port,
            # the peer stays the peer: uvicorn would otherwise put a client's own
            # X-Forwarded-For entry in scope["client"] (spawner.client_address)
            **{**_uvicorn_kwargs(), "proxy_headers": False},
        )
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        if sender is not None:
            # Sessions just ended on shutdown: deliver their events now if the service
            # answers, else they stay in the spool for this app's next start.
            import asyncio

            asyncio.run(sender.drain(timeout=3.0))
    return 0 if server.started else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
