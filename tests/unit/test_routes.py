"""The route table (spawner/routes.py): real JupyterHub URL shapes, then every path against
JupyterHub's own handler table, routed by tornado."""

import re
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jupyterhub import apihandlers, handlers
from jupyterhub.apihandlers.auth import OAuthAuthorizeHandler
from jupyterhub.apihandlers.shares import ServerShareAPIHandler, ServerShareCodeAPIHandler
from jupyterhub.apihandlers.users import UserServerAPIHandler
from jupyterhub.app import JupyterHub
from jupyterhub.handlers.pages import AcceptShareHandler, SpawnHandler
from tornado import httputil, web

from spawner.routes import (
    ACCEPT_SHARE,
    OAUTH_AUTHORIZE,
    ROUTES,
    SERVER_API,
    SHARE_CODES,
    SHARES,
    SPAWN,
    Route,
    match,
    route_of,
)

HANDLERS = {
    SPAWN: SpawnHandler,
    SERVER_API: UserServerAPIHandler,
    SHARES: ServerShareAPIHandler,
    SHARE_CODES: ServerShareCodeAPIHandler,
    OAUTH_AUTHORIZE: OAuthAuthorizeHandler,
    ACCEPT_SHARE: AcceptShareHandler,
}


def test_every_route_names_its_jupyterhub_handler():
    assert set(ROUTES) == set(HANDLERS)


@pytest.mark.parametrize(
    "path, route",
    [
        ("/hub/spawn/alice/demo", Route(SPAWN, "alice", "demo")),
        ("/hub/api/users/alice/servers/demo", Route(SERVER_API, "alice", "demo")),
        ("/hub/api/users/alice/servers/", Route(SERVER_API, "alice", "")),  # the default server
        ("/hub/api/shares/alice/demo", Route(SHARES, "alice", "demo")),
        ("/hub/api/share-codes/alice/demo", Route(SHARE_CODES, "alice", "demo")),
        ("/hub/api/oauth2/authorize", Route(OAUTH_AUTHORIZE)),
        ("/hub/accept-share", Route(ACCEPT_SHARE)),
        # names as JupyterHub's handlers see them: percent-decoded, UTF-8
        ("/hub/spawn/al%40ice/my%20app", Route(SPAWN, "al@ice", "my app")),
        ("/hub/api/users/J%C3%BCrgen/servers/caf%C3%A9", Route(SERVER_API, "Jürgen", "café")),
        ("/hub/api/shares/a%2Fb/c", Route(SHARES, "a/b", "c")),
        ("/hub/spawn/a+b/c", Route(SPAWN, "a+b", "c")),  # "+" is a plus in a path
    ],
)
def test_the_hubs_routes(path, route):
    assert match(path) == route
    assert match(path, "/hub/") == route


@pytest.mark.parametrize(
    "path",
    [
        # a trailing slash, or more after the server: another route (JupyterHub's 404)
        "/hub/spawn/alice/demo/",
        "/hub/api/users/alice/servers/demo/",
        "/hub/api/users/alice/servers/demo/progress",
        "/hub/api/shares/alice/demo/",
        "/hub/api/share-codes/alice/demo/",
        "/hub/api/oauth2/authorize/",
        "/hub/accept-share/",
        # the default server's routes, or no server at all
        "/hub/spawn/alice",
        "/hub/spawn",
        "/hub/api/users/alice/server",
        "/hub/api/shares/alice",
        "/hub/api/share-codes/alice",
        "/hub/spawn//demo",
        "/hub/api/users//servers/demo",
        # an app's own URLs, even when they end like a hub route
        "/user/alice/demo/",
        "/user/alice/demo/hub/api/users/alice/servers/demo",
        "/user/alice/demo/hub/api/oauth2/authorize",
        "/user/alice/demo/hub/spawn/alice/demo",
        # the hub's page for an app that is not running
        "/hub/user/alice/demo/",
        "/hub/user/alice/demo/hub/spawn/alice/demo",
        # not under the hub's prefix
        "/spawn/alice/demo",
        "/api/users/alice/servers/demo",
        "/hubx/spawn/alice/demo",
        "/usr/spawn/alice/demo",  # as long as the prefix, but not it
        "/hub/hub/spawn/alice/demo",
        "hub/spawn/alice/demo",
        # a name that is not UTF-8: tornado answers 400, no handler runs
        "/hub/api/users/alice/servers/%FF",
        "/hub/spawn/%C3/demo",
        "",
        "/",
        "/hub/",
    ],
)
def test_paths_that_are_no_route(path):
    assert match(path) is None


@pytest.mark.parametrize("base_url", ["/jh/", "/a/b/", "/j%C3%BC/"])
def test_under_a_base_url(base_url):
    prefix = base_url + "hub/"
    assert match(prefix + "spawn/alice/demo", prefix) == Route(SPAWN, "alice", "demo")
    assert match(prefix + "api/users/al%40ice/servers/x", prefix) == Route(
        SERVER_API, "al@ice", "x"
    )
    assert match(prefix + "api/oauth2/authorize", prefix) == Route(OAUTH_AUTHORIZE)
    assert match(prefix + "accept-share", prefix) == Route(ACCEPT_SHARE)
    # the same paths without the base URL are not the hub's
    assert match("/hub/spawn/alice/demo", prefix) is None
    assert match("/hub/api/oauth2/authorize", prefix) is None
    # nor is an app under the base URL
    assert match(base_url + "user/alice/demo/hub/api/oauth2/authorize", prefix) is None


def test_route_of_reads_the_handlers_path_and_the_hubs_prefix():
    handler = SimpleNamespace(
        request=SimpleNamespace(path="/jh/hub/spawn/alice/demo"),
        hub=SimpleNamespace(base_url="/jh/hub/"),
    )
    assert route_of(handler) == Route(SPAWN, "alice", "demo")
    handler.hub.base_url = "/hub/"
    assert route_of(handler) is None


def test_a_route_is_a_value():
    r = Route(SPAWN, "a", "b")
    assert (r.name, r.user, r.server) == (SPAWN, "a", "b")
    assert Route(OAUTH_AUTHORIZE) == Route(OAUTH_AUTHORIZE, None, None)
    with pytest.raises(AttributeError):
        r.user = "c"


# ---- against JupyterHub's own table, routed by tornado --------------------------------------
def hub_application(hub_prefix):
    table = JupyterHub.add_url_prefix(
        hub_prefix, [*handlers.default_handlers, *apihandlers.default_handlers]
    )
    return web.Application(table)


APPS = {prefix: hub_application(prefix) for prefix in ("/hub/", "/jh/hub/")}


def hub_request(uri):
    return httputil.HTTPServerRequest(
        start_line=httputil.RequestStartLine("GET", uri, "HTTP/1.1"),
        headers=httputil.HTTPHeaders({"Host": "hub.example"}),
    )


ARITY = {name: re.compile(pattern).groups for name, pattern in ROUTES.items()}


def tornado_route(app, request):
    """What tornado does with ``request``: the route of the JupyterHub handler it runs, or None.

    Of each handler, the table holds the routes that name a user and a server (those
    handlers' routes for a user's default server, with fewer arguments, are not in it)."""
    delegate = app.find_handler(request)
    name = next((n for n, cls in HANDLERS.items() if delegate.handler_class is cls), None)
    if name is None or len(delegate.path_args) != ARITY[name]:
        return None
    try:
        args = [a.decode("utf-8") for a in delegate.path_args]  # as the handler decodes them
    except UnicodeDecodeError:
        return None  # tornado's 400
    return Route(name, *args)


segment = st.lists(
    st.sampled_from(["a", "Z", "0", "-", ".", "@", "+", "%40", "%2F", "%C3%A9", "%FF", "/", "?"]),
    max_size=4,
).map("".join)
shape = st.sampled_from(
    [
        "spawn/{}/{}",
        "spawn/{}",
        "api/users/{}/servers/{}",
        "api/users/{}/servers/{}/progress",
        "api/users/{}/server",
        "api/shares/{}/{}",
        "api/share-codes/{}/{}",
        "api/oauth2/authorize{}{}",
        "accept-share{}{}",
        "user/{}/{}",
        "home{}{}",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    prefix=st.sampled_from(sorted(APPS)),
    shape=shape,
    user=segment,
    server=segment,
    tail=st.sampled_from(["", "/", "/x", "//"]),
    other_prefix=st.booleans(),
)
def test_every_path_is_routed_as_tornado_routes_jupyterhubs_handlers(
    prefix, shape, user, server, tail, other_prefix
):
    request = hub_request(prefix + shape.format(user, server) + tail)
    path = request.path  # what a handler's request holds: the URI up to its query
    assert match(path, prefix) == tornado_route(APPS[prefix], request)
    # under another hub prefix, the same path is not the hub's
    other = "/jh/hub/" if prefix == "/hub/" else "/hub/"
    if other_prefix and not path.startswith(other):
        assert match(path, other) is None
