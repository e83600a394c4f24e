"""Which servers' activity a token may post (spawner/activity_guard.py), from its scopes."""

import pytest
from jupyterhub.scopes import parse_scopes

from spawner.activity_guard import (OwnServerActivityAPIHandler, activity_problem,
                                    reachable_servers)
from spawner.hub_host import hub_host_only

# what the hub gives alice/one's server token (spawner/hubconfig.py, plus JupyterHub's own)
APP_ONE = parse_scopes({"users:activity!user=alice", "access:servers!server=alice/one",
                        "read:shares!server=alice/one"})
AT = {"last_activity": "2026-11-29T00:00:00Z"}


def test_an_app_token_reaches_only_its_own_server():
    assert reachable_servers(APP_ONE) == {"alice/one"}
    assert reachable_servers(parse_scopes({"access:servers!server=alice/"})) == {"alice/"}


@pytest.mark.parametrize("scopes", [
    {"users:activity!user=alice"},  # no access:servers at all (a service posting activity)
    {"users:activity", "access:servers"},  # an admin
    {"users:activity!user=alice", "access:servers!user=alice"},  # a person's own token
    {"access:servers!user=alice", "access:servers!server=alice/one"},
    {"access:servers!group=analysts", "access:servers!server=alice/one"},
], ids=["no-access", "admin", "person", "user-and-server", "group-and-server"])
def test_credentials_not_limited_to_named_servers_are_not_held(scopes):
    parsed = parse_scopes(scopes)
    assert reachable_servers(parsed) is None
    assert activity_problem(parsed, "alice", {"two": AT, "three": AT}) is None


def test_an_app_token_posts_for_its_own_app_only():
    assert activity_problem(APP_ONE, "alice", {"one": AT}) is None
    problem = activity_problem(APP_ONE, "alice", {"one": AT, "two": AT})
    assert problem.startswith("This token may post activity only for the app it belongs to "
                              "('alice/one'), not for alice's 'two'.")
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
    problem = activity_problem(APP_ONE, "alice", {f"app{i}": AT for i in range(50)}
                               | {"x" * 500: AT})
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
