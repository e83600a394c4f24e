"""The hub's routes this project reads, in one table: which JupyterHub page or API a request
is, and which user and server it names.

The hub's audit recorder (``spawner/audit/hub_recorder.py``) and the named-server limit
(``spawner/quota.py``) both ask it of the request in hand; neither parses paths itself.

A path is matched the way tornado routes it to JupyterHub's own handlers (JupyterHub 6.1.1,
``jupyterhub/handlers/pages.py`` and ``jupyterhub/apihandlers/``):

- under the hub's prefix (``base_url`` + ``hub/``: ``handler.hub.base_url``), never an app's
  own URL (``/user/<user>/<app>/...``, whatever it ends in) nor the hub's
  ``/hub/user/<user>/<app>/...`` page;
- the raw (percent-encoded) request path, whole: a trailing slash or anything after the last
  segment is another route (which JupyterHub answers with a 404, running no handler);
- each path argument percent-decoded as UTF-8, as tornado hands it to the handler: the user
  and server here are the names JupyterHub's handler works with. A path argument that is
  not UTF-8 (tornado answers 400) matches nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

# Route names
SPAWN = "spawn"  # pages.SpawnHandler: a named server's start page (GET: form, POST: start)
SERVER_API = "server_api"  # apihandlers.users.UserServerAPIHandler: create, start, stop
SHARES = "shares"  # apihandlers.shares.ServerShareAPIHandler: one server's shares
SHARE_CODES = "share_codes"  # apihandlers.shares.ServerShareCodeAPIHandler: its share links
OAUTH_AUTHORIZE = "oauth_authorize"  # apihandlers.auth.OAuthAuthorizeHandler
ACCEPT_SHARE = "accept_share"  # pages.AcceptShareHandler: a share link's accept page

# Each pattern as JupyterHub registers it, under the hub's prefix; (?P<user>) and (?P<server>)
# are its path arguments.
ROUTES: dict[str, str] = {
    SPAWN: r"spawn/(?P<user>[^/]+)/(?P<server>[^/]+)",
    SERVER_API: r"api/users/(?P<user>[^/]+)/servers/(?P<server>[^/]*)",
    SHARES: r"api/shares/(?P<user>[^/]+)/(?P<server>[^/]*)",
    SHARE_CODES: r"api/share-codes/(?P<user>[^/]+)/(?P<server>[^/]*)",
    OAUTH_AUTHORIZE: r"api/oauth2/authorize",
    ACCEPT_SHARE: r"accept-share",
}
_COMPILED = tuple((name, re.compile(pattern)) for name, pattern in ROUTES.items())


@dataclass(frozen=True)
class Route:
    """A matched route: its name (one of ``ROUTES``) and the user and server it names."""

    name: str
    user: str | None = None
    server: str | None = None


def match(path: str, hub_prefix: str = "/hub/") -> Route | None:
    """The route of the raw request path ``path`` under the hub's prefix, or None."""
    if not path.startswith(hub_prefix):
        return None
    rest = path[len(hub_prefix) :]
    tried = ((name, pattern.fullmatch(rest)) for name, pattern in _COMPILED)
    name, m = next(((name, m) for name, m in tried if m is not None), (None, None))
    if m is None:
        return None
    try:
        args = {k: unquote(v, errors="strict") for k, v in m.groupdict().items()}
    except UnicodeDecodeError:
        return None
    return Route(name, **args)


def route_of(handler) -> Route | None:
    """The route of the request a JupyterHub handler is serving (or has served)."""
    return match(handler.request.path, handler.hub.base_url)
