"""``streamlit-hub-app``: start one app server (Streamlit + hub auth) in one process.

The spawner runs ``python -m spawner.app_server`` with the hub's ``JUPYTERHUB_*`` variables and
``STREAMLIT_HUB_ENTRY`` (absolute path of the analyst's entry file). This program:

1. makes itself non-dumpable when the local spawner runs it under an analyst's own account
   (``keep_memory_private``), reads its settings and removes its API token from
   ``os.environ``; the owner's app secrets that came with the token through
   the local spawner's pipe go into ``os.environ`` for the app's code (on Kubernetes they are
   in the container's environment already);
2. checks the app's code without running it (``code_problem``): a syntax error, or a top-level
   import the app environment does not have, stops the start with one line on stderr starting
   ``CANNOT_START`` (the spawner shows the rest to the analyst and refuses the start), so such
   an app never runs, never counts against its owner's quota and never shows a viewer a
   traceback;
3. fixes the Streamlit options that security depends on (base URL = the hub prefix, identity
   headers, headless, no usage stats, no error details in viewers' browsers);
4. builds Streamlit's public ``st.App(entry, middleware=[HubAuthMiddleware],
   on_script_error=...)``: an error in the app's code shows its owner the full exception and
   everyone else one plain sentence (``script_error_handler``); the traceback goes to the
   app's output (stderr), which its owner reads through the hub's app output API;
5. with ``workers`` > 1 (``STREAMLIT_HUB_WORKERS``), serves the same auth layer in front of
   N Streamlit worker processes instead (``workers.py``);
6. binds the listening socket itself with ``IPPROTO_TCP`` so asyncio turns on TCP_NODELAY for
   every accepted connection (Streamlit binds with protocol 0, which costs ~44 ms per
   keep-alive response through Nagle + delayed ACK), and serves it with uvicorn.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import logging
import os
import socket
import sys
from pathlib import Path

from .settings import AppServerSettings, SettingsError, from_environ

log = logging.getLogger("streamlit_hub")

# The one stderr line that says why an app was not started; the spawner shows what follows.
CANNOT_START = "streamlit-hub-app: cannot start: "
# A line in the app's output for each error its code raised while someone used it.
APP_ERROR = "streamlit-hub-app: app error: "
# What a viewer of an app whose code failed sees, instead of a traceback with the server's paths.
VIEWER_ERROR_TEXT = "This app has an error; its owner has been told."


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


def shown_path(entry: Path, home: str | None) -> str:
    """The entry file as its owner knows it: relative to their home when it is inside."""
    if home:
        try:
            return str(Path(os.path.realpath(entry)).relative_to(os.path.realpath(home)))
        except ValueError:
            pass
    return str(entry)


def top_level_imports(tree: ast.Module) -> list[str]:
    """Top-level module names the script imports unconditionally, in order, once each.

    Only statements directly in the module's body count: an import inside ``try`` (an
    optional dependency), ``if`` or a function may never run. Relative imports and
    ``__future__`` are not modules to find.
    """
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found = [node.module]
        else:
            continue
        for name in found:
            top = name.split(".", 1)[0]
            if top != "__future__" and top not in names:
                names.append(top)
    return names


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def code_problem(entry: Path, shown: str) -> str | None:
    """Why the app's code cannot run in this environment, found without running it, or None.

    A syntax error in the entry file, or a top-level import that no installed package or file
    next to the script provides (``importlib.util.find_spec`` on ``sys.path`` as the app will
    see it: nothing is imported). Call it after the script's folder is on ``sys.path``.
    """
    try:
        tree = ast.parse(entry.read_bytes(), filename=shown)
    except SyntaxError as e:
        return f"{shown} has a syntax error on line {e.lineno}: {e.msg}."
    except (OSError, ValueError):
        return None  # unreadable or not text: Streamlit says so, as it would anyway
    missing = []
    for name in top_level_imports(tree):
        try:
            found = name in sys.builtin_module_names or importlib.util.find_spec(name)
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    if not missing:
        return None
    them = "it" if len(missing) == 1 else "them"
    return (
        f"{shown} imports {_listed(missing)}, which the app environment does not have. "
        f"Ask an admin to add {them} to the app environment, or remove the import."
    )


def _viewer_name() -> str | None:
    """The hub user viewing the page now (the header the auth layer sets), inside a run."""
    try:
        import streamlit as st

        from .auth import USER_HEADER

        return st.context.headers.get(USER_HEADER)
    except Exception:  # no script run context: nobody to show anything to
        return None


def script_error_handler(owner: str, viewer=_viewer_name):
    """Streamlit's ``on_script_error``: the app's owner sees the exception in full, every
    other viewer one plain sentence; either way the app's output gets one ``APP_ERROR`` line
    (Streamlit has logged the traceback there just before)."""

    def on_script_error(exc: Exception) -> bool:
        import streamlit as st

        who = viewer()
        print(
            f"{APP_ERROR}{type(exc).__name__}: {str(exc)[:300]} (viewer {who or 'unknown'})",
            file=sys.stderr,
            flush=True,
        )
        if who is not None and who == owner:
            st.error(
                "Your app raised an error. Its viewers see only “"
                + VIEWER_ERROR_TEXT
                + "”; the details, also in the app's output on the hub:"
            )
            st.exception(exc)
        else:
            st.error(VIEWER_ERROR_TEXT)
        return True  # no default display: that would show viewers the traceback

    return on_script_error


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
            # What on_script_error does not cover (a compile error of the script itself,
            # deprecation warnings) shows viewers no type, message or traceback either.
            "client.showErrorDetails": "none",
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
        on_script_error=script_error_handler(settings.owner),
    )


PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def keep_memory_private() -> bool:
    """Make this process non-dumpable (Linux: ``prctl(PR_SET_DUMPABLE, 0)``), before the token
    and the app's secrets are read: other processes of the same account (the owner's other
    apps) can then no longer read its memory (``/proc/<pid>/mem``), take its open files
    (``pidfd_getfd``, ``/proc/<pid>/fd``) or attach a debugger to it; root still can. The
    price: the process cannot read its own ``/proc/self/environ`` or ``/proc/self/io`` either
    (``os.environ`` is unaffected). Its children (processes the app's code starts) are
    dumpable again after their ``exec``."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
        return False


def run_published_version(settings) -> int | None:
    """Kubernetes, a published version: fetch, verify and extract it, build its environment
    (``published.py``), and run this program again on that environment's Python. None: go
    on here (no bundle, or this is the run on the environment's Python already)."""
    from .settings import AppServerSettings

    own = AppServerSettings()
    if not own.bundle_digest or own.bundle_ready == own.bundle_digest:
        return None
    from .published import PublishedError, prepare

    try:
        python = prepare(settings, own)
    except PublishedError as e:
        print(f"{CANNOT_START}{e}", file=sys.stderr)
        return 3
    if python is None:
        return None
    # The token came from the container's environment (a secretKeyRef); the next run reads
    # it from there again, and removes it again.
    env = {
        **os.environ,
        _BUNDLE_READY: own.bundle_digest,
        "JUPYTERHUB_API_TOKEN": settings.api_token,
    }
    os.execve(str(python), [str(python), "-m", "spawner.app_server"], env)
    return None  # pragma: no cover - execve does not return


_BUNDLE_READY = "STREAMLIT_HUB_BUNDLE_READY"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level="INFO", format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    try:
        # with per-user accounts (local): before the token and the secrets are read
        if AppServerSettings(environ=os.environ).private_memory and not keep_memory_private():
            log.warning("could not make the app server non-dumpable (prctl)")
        settings = from_environ()
    except SettingsError as e:
        print(f"streamlit-hub-app: {e}", file=sys.stderr)
        return 2
    # The owner's app secrets: environment variables of this process (the app's code) only.
    os.environ.update(settings.app_secrets)
    logging.getLogger().setLevel(settings.log_level)  # STREAMLIT_HUB_LOG_LEVEL
    rerun = run_published_version(settings)
    if rerun is not None:
        return rerun
    entry = Path(settings.entry)
    shown = shown_path(entry, os.environ.get("HOME"))
    if not entry.is_file():
        print(f"{CANNOT_START}there is no file {shown}.", file=sys.stderr)
        return 2

    # The app runs as `streamlit run apps/<app>/app.py` would see it, from its own folder:
    # relative data files and sibling modules resolve there.
    os.chdir(entry.parent)
    sys.path.insert(0, str(entry.parent))
    sys.argv = [str(entry)]
    problem = code_problem(entry, shown)
    if problem:
        print(f"{CANNOT_START}{problem}", file=sys.stderr)
        return 3

    import uvicorn
    from streamlit import config as st_config

    st_config._main_script_path = str(entry)  # script-level .streamlit/ config and secrets
    apply_streamlit_options(streamlit_options(settings))
    sender = audit_sender(settings)
    if settings.workers > 1:  # the auth layer here, Streamlit in N worker processes
        from .workers import build_front

        app, _pool = build_front(settings, sender)
    else:
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
