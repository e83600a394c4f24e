"""Sign-in only on the hub's own host, when apps have hosts of their own.

With ``subdomain_host``, the proxy still sends every request it has no route for to the hub,
whatever its host: ``http://alice.apps.example.com/hub/login`` shows the hub's real login
form on alice's app host. A person who signed in there would get the hub's login cookie on
that host, where alice's JavaScript runs same-origin. So the authenticator's handlers (login,
OAuth callback) answer only on the hub's host and redirect anywhere else to the same path
there. Pure wiring: the check compares the request's host name with the hub's ``domain``.

REST API handlers are left as they are: like JupyterHub's own, they answer on any host (app
servers and services call the hub's internal address) and set no login cookie.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def on_hub_host(request_host: str, hub_domain: str) -> bool:
    """Is ``request_host`` (``name[:port]`` from the Host header) the hub's host name?"""
    name = urlsplit("//" + request_host).hostname or ""
    return name == hub_domain.lower()


def hub_host_only(base: type) -> type:
    """``base`` (an Authenticator class) whose handlers redirect to the hub's host."""

    class HubHostOnlyAuthenticator(base):
        def get_handlers(self, app):
            from jupyterhub.apihandlers.base import APIHandler

            return [
                (pattern, handler if issubclass(handler, APIHandler) else _guarded(handler), *rest)
                for pattern, handler, *rest in super().get_handlers(app)
            ]

    HubHostOnlyAuthenticator.__name__ = f"HubHostOnly{base.__name__}"
    return HubHostOnlyAuthenticator


def _guarded(handler: type) -> type:
    class HubHostOnlyHandler(handler):
        async def prepare(self):
            subdomain_host = self.settings.get("subdomain_host")
            if subdomain_host and not on_hub_host(self.request.host, self.settings["domain"]):
                self.redirect(subdomain_host.rstrip("/") + self.request.uri)
                return
            result = super().prepare()
            if result is not None:
                await result

    HubHostOnlyHandler.__name__ = handler.__name__
    return HubHostOnlyHandler
