"""Session and page-view audit events, seen from the app server's websocket traffic.

Streamlit's browser client speaks protobuf over one websocket per session
(``<prefix>_stcore/stream``): it sends ``BackMsg.rerun_script`` to run (or navigate to) a page,
and the server's first ``ForwardMsg.new_session`` of that run names the page script it
actually runs (``page_script_hash``, resolved against ``app_pages``). Watching that from the
auth middleware (``st.App(middleware=...)``, Streamlit's public hook) records every session
and page without touching the analyst's code and without a monkeypatch.

Invariants:

- ``session_start`` when a verified viewer's stream opens; ``session_end`` (with its duration
  and why) when it closes, however it closes;
- ``page_view`` when a run starts on a page other than the session's current one (a rerun of
  the same page, e.g. a widget change, is not a new view);
- parsing is bounded: only client frames, and the first few server frames after each rerun
  request, are decoded; a frame that does not parse is ignored, never fatal;
- ``client`` is the address the outermost trusted proxy saw (``spawner.client_address``, with
  the hub's ``trusted_proxies``), the one the hub records for the same viewer's sign-in;
  never ``X-Real-Ip`` nor an ``X-Forwarded-For`` entry the viewer chose.
"""

from __future__ import annotations

import logging
import time
import uuid

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from ..audit.client import new_event
from ..client_address import DEFAULT_TRUSTED_PROXIES, parse_networks
from ..client_address import client_address as _client_address
from .auth import header_value

log = logging.getLogger("streamlit_hub.audit")

# new_session comes first or nearly; a multipage app's navigation message (the page names)
# follows within the first frames of the run.
_FRAMES_AFTER_RERUN = 32
_LOCAL_PROXY = parse_networks(DEFAULT_TRUSTED_PROXIES)


def client_address(scope, trusted=None) -> str | None:
    """The viewer's address as the outermost trusted proxy saw it (``spawner.client_address``):
    from the TCP peer (``scope["client"]``: the launcher turns uvicorn's proxy-headers rewrite
    off) through ``X-Forwarded-For``; never ``X-Real-Ip`` nor a client-chosen entry."""
    client = scope.get("client")
    peer = client[0] if client else None
    forwarded = [
        value.decode("latin-1")
        for key, value in scope.get("headers", [])
        if key == b"x-forwarded-for"
    ]
    return _client_address(peer, forwarded, _LOCAL_PROXY if trusted is None else trusted)


def _header(scope, name: bytes) -> str | None:
    """A header of the request, cut to 512 characters for the audit trail; None if empty."""
    value = header_value(scope.get("headers", []), name)
    return value[:512] or None if value is not None else None


def _stem(path: str) -> str:
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return name[:-3] if name.endswith(".py") else name


class SessionAudit:
    """Creates one ``StreamSession`` per viewer websocket; sends through an ``AuditSender``."""

    def __init__(self, settings, sender):
        self.s = settings
        self.sender = sender

    def emit(self, kind: str, **fields) -> None:
        try:
            self.sender.emit(
                new_event(
                    kind,
                    owner=self.s.owner,
                    app=self.s.server_name,
                    profile=self.s.profile or None,
                    version=getattr(self.s, "version", "") or None,
                    **fields,
                )
            )
        except Exception:
            log.exception("could not record a %s audit event", kind)

    def open(self, viewer, scope) -> StreamSession:
        return StreamSession(self, viewer, scope)


class StreamSession:
    def __init__(self, audit: SessionAudit, viewer, scope):
        self.audit = audit
        self.id = uuid.uuid4().hex
        self.started = time.monotonic()
        self.common = {
            "viewer": viewer.name,
            "viewer_groups": list(viewer.groups),
            "session": self.id,
            "client": client_address(scope, getattr(audit.s, "trusted_proxies", None)),
            "user_agent": _header(scope, b"user-agent"),
        }
        self.page: str | None = None
        self.pages: dict[str, str] = {}
        self._watch = 0
        self._hash: str | None = None
        self._main: tuple[str, str] | None = None
        self._ended = False
        audit.emit("session_start", **self.common)

    def client_frame(self, data: bytes | None) -> None:
        if not data:
            return
        try:
            msg = BackMsg.FromString(data)
        except Exception:
            return
        if msg.WhichOneof("type") == "rerun_script":
            self._watch = _FRAMES_AFTER_RERUN

    def server_frame(self, data: bytes | None) -> None:
        if self._watch <= 0 or not data:
            return
        self._watch -= 1
        try:
            msg = ForwardMsg.FromString(data)
        except Exception:
            return
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            new = msg.new_session
            self._remember(new.app_pages)
            self._hash = new.page_script_hash
            if new.page_script_hash == new.main_script_hash and new.main_script_path:
                self._main = (new.main_script_hash, _stem(new.main_script_path))
            self._resolve(final=False)
        elif kind == "navigation":
            self._remember(msg.navigation.app_pages)
            if msg.navigation.page_script_hash:
                self._hash = msg.navigation.page_script_hash
            self._resolve(final=True)
        elif kind == "script_finished" or self._watch == 0:
            self._resolve(final=True)

    def _remember(self, pages) -> None:
        for page in pages:
            if page.page_script_hash and page.page_name:
                self.pages[page.page_script_hash] = page.page_name

    def _resolve(self, final: bool) -> None:
        """Emit the page view once the page's name is known (or at the end of the window)."""
        if self._hash is None:
            return
        name = self.pages.get(self._hash)
        if name is None and self._main and self._main[0] == self._hash and final:
            name = self._main[1]  # a single-page app: the entry file's name
        if name is None and not final:
            return
        name = name or self._hash or "main"
        self._hash = None
        self._watch = 0
        if name != self.page:
            self.page = name
            self.audit.emit("page_view", page=name[:255], **self.common)

    def end(self, why: str) -> None:
        if self._ended:
            return
        self._ended = True
        self.audit.emit(
            "session_end",
            duration_s=round(time.monotonic() - self.started, 3),
            reason=why,
            extra={"page": self.page} if self.page else None,
            **self.common,
        )
