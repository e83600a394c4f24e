"""Who is looking at a hub page, for templates (``streamlit_me`` in template_vars)."""

from __future__ import annotations

from .app_server.scopes import grants_access


class ViewerInfo:
    def __init__(self, user):
        self.name = user.name
        self.admin = bool(user.admin)
        self._user = user

    def may_start(self, owner: str, server: str) -> bool:
        """May this person start ``owner``'s app ``server``?

        "Viewers may wake this app" is a share carrying ``start:servers!server=<owner>/<app>``
        (``servers`` includes it). The not-running page then starts the app through the REST
        API and follows it with ``/hub/api/streamlit/apps/.../status``: JupyterHub 6.1.1's own
        spawn and progress pages would need the broader ``servers`` scope.
        """
        from jupyterhub.scopes import get_scopes_for

        have = get_scopes_for(self._user.orm_user)
        return grants_access(have, {f"start:servers!server={owner}/{server}"}, "start:servers")


def template_viewer(user):
    if user is None or getattr(user, "kind", "user") != "user":
        return None
    return ViewerInfo(user)
