"""Which servers' activity a token may post (spawner/activity_guard.py), from its scopes."""

import pytest
from jupyterhub.scopes import parse_scopes

from spawner.activity_guard import OwnServerActivityAPIHandler, activity_problem, reachable_servers
from spawner.hub_host import hub_host_only

# what the hub gives alice/one's server token (spawner/hubconfig.py, plus JupyterHub's own)
APP_ONE = parse_scopes(
    {"users:activity!user=alice", "access:servers!server=alice/one", "read:shares!server=alice/one"}
)
AT = {"last_activity": "2026-11-29T00:00:00Z"}


def test_an_app_token_reaches_only_its_own_server():
    assert reachable_servers(APP_ONE) == {"alice/one"}
    assert reachable_servers(parse_scopes({"access:servers!server=alice/"})) == {"alice/"}


@pytest.mark.parametrize(
    "scopes",
    [
        {"users:activity!user=alice"},  # no access:servers at all (a service posting activity)
        {"users:activity", "access:servers"},  # an admin
        {"users:activity!user=alice", "access:servers!user=alice"},  # a person's own token
        {"access:servers!user=alice", "access:servers!server=alice/one"},
        {"access:servers!group=analysts", "access:servers!server=alice/one"},
    ],
    ids=["no-access", "admin", "person", "user-and-server", "group-and-server"],
)
def test_credentials_not_limited_to_named_servers_are_not_held(scopes):
    parsed = parse_scopes(scopes)
    assert reachable_servers(parsed) is None
    assert activity_problem(parsed, "alice", {"two": AT, "three": AT}) is None


def test_an_app_token_posts_for_its_own_app_only():
    assert activity_problem(APP_ONE, "alice", {"one": AT}) is None
    problem = activity_problem(APP_ONE, "alice", {"one": AT, "two": AT})
    assert problem.startswith(
        "This token may post activity only for the app it belongs to "
        "('alice/one'), not for alice's 'two'."
    )
    assert "own token" in problem
    # another user's server of the same name is not its own
    assert "bob's 'one'" in activity_problem(APP_ONE, "bob", {"one": AT})
    # the default server is a server like any other
    default = parse_scopes({"access:servers!server=alice/"})
    assert activity_problem(default, "alice", {"": AT}) is None
    assert activity_problem(default, "alice", {"one": AT}) is not None


@pytest.mark.parametrize("servers", [None, {}, [], "two", 3])
def test_bodies_without_servers_or_of_the_wrong_shape_are_jupyterhubs_to_answer(servers):
    # user-level last_activity stays allowed; a malformed `servers` gets JupyterHub's 400
    assert activity_problem(APP_ONE, "alice", servers) is None


def test_a_long_list_of_other_servers_is_named_briefly():
    problem = activity_problem(
        APP_ONE, "alice", {f"app{i}": AT for i in range(50)} | {"x" * 500: AT}
    )
    assert "and 48 more" in problem and len(problem) < 400


def test_the_handler_answers_on_any_host_and_others_only_on_the_hubs():
    class Base:
        def get_handlers(self, app):
            return [("/activity", OwnServerActivityAPIHandler), ("/login", Login)]

    class Login:
        pass

    (_, activity), (_, login) = hub_host_only(Base)().get_handlers(None)
    assert activity is OwnServerActivityAPIHandler
    assert login is not Login and issubclass(login, Login)


def test_the_refusal_names_each_app_exactly():
    problem = activity_problem(APP_ONE, "alice", {"two": AT, "three": AT, "one": AT})
    assert problem == (
        "This token may post activity only for the app it belongs to "
        "('alice/one'), not for alice's 'three', 'two'. Post each app's activity "
        "with that app's own token, or use a token of the person who owns the app."
    )


def test_names_are_shortened_past_60_characters_and_counted_past_three():
    from spawner.activity_guard import _names

    assert _names(["a" * 60]) == repr("a" * 60)
    assert _names(["b" * 61]) == repr("b" * 57 + "...")
    assert _names(["x", "y", "z"]) == "'x', 'y', 'z'"
    assert _names(["w", "x", "y", "z"]) == "'w', 'x', 'y' and 1 more"


class _Handler(OwnServerActivityAPIHandler):
    """The guard's post with JupyterHub's request machinery stood in."""

    def __init__(self, scopes, body, may=True, user=True):
        self.parsed_scopes = parse_scopes(scopes)
        self._body, self._may, self._user = body, may, user
        self.asked = []

    def has_scope(self, scope):
        self.asked.append(scope)
        return self._may

    def find_user(self, name):
        return object() if self._user else None

    def get_json_body(self):
        return self._body


@pytest.fixture
def passed_on(monkeypatch):
    """What reached JupyterHub's own handler (its post is replaced by a recorder)."""
    from jupyterhub.apihandlers.users import ActivityAPIHandler

    seen = []
    monkeypatch.setattr(ActivityAPIHandler, "post", lambda self, user_name: seen.append(user_name))
    return seen


def run(handler, user="alice"):
    import asyncio

    return asyncio.run(handler.post(user))


APP_TOKEN = {"users:activity!user=alice", "access:servers!server=alice/one"}


def test_the_handler_refuses_another_apps_activity_with_a_403(passed_on):
    from tornado import web

    h = _Handler(APP_TOKEN, {"servers": {"two": AT}})
    with pytest.raises(web.HTTPError) as refused:
        run(h)
    assert refused.value.status_code == 403 and "alice's 'two'" in refused.value.log_message
    assert h.asked == ["users:activity!user=alice"] and passed_on == []


def test_the_handler_passes_its_own_apps_activity_on(passed_on):
    run(_Handler(APP_TOKEN, {"servers": {"one": AT}, **AT}))
    assert passed_on == ["alice"]


@pytest.mark.parametrize(
    "may, user, body",
    [
        (False, True, {"servers": {"two": AT}}),  # no users:activity on alice: JupyterHub says 403
        (True, False, {"servers": {"two": AT}}),  # no such user: JupyterHub says 404
        (True, True, ["not", "an", "object"]),  # JupyterHub's 400
    ],
)
def test_what_is_not_the_guards_to_judge_goes_to_jupyterhub(passed_on, may, user, body):
    run(_Handler(APP_TOKEN, body, may=may, user=user))
    assert passed_on == ["alice"]


def test_an_awaitable_post_of_jupyterhub_is_awaited(monkeypatch):
    from jupyterhub.apihandlers.users import ActivityAPIHandler

    done = []

    async def post(self, user_name):
        done.append(user_name)

    monkeypatch.setattr(ActivityAPIHandler, "post", post)
    run(_Handler(APP_TOKEN, {"servers": {"one": AT}}))
    assert done == ["alice"]
