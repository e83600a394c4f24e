"""Who is looking at a hub page, for templates (``streamlit_me`` in template_vars)."""

from __future__ import annotations

from .app_server.scopes import grants_access


class ViewerInfo:
    def __init__(self, user):
        self.name = user.name
        self.admin = bool(user.admin)
        self._user = user

    def may_start(self, owner: str, server: str) -> bool:
        """May this person start ``owner``'s app ``server`` from the hub's pages?

        JupyterHub 6.1.1's spawn and progress pages require the ``servers`` scope on that
        server (``start:servers`` alone is enough only for the REST API), so "viewers may
        wake this app" is a share that carries ``servers!server=<owner>/<app>``.
        """
        from jupyterhub.scopes import get_scopes_for

        have = get_scopes_for(self._user.orm_user)
        return grants_access(have, {f"servers!server={owner}/{server}"}, "servers")


def template_viewer(user):
    if user is None or getattr(user, "kind", "user") != "user":
        return None
    return ViewerInfo(user)
