"""The group policy's link rules (``may_share_links``, ``max_link_days``), without a hub.

tests/integration/test_link_policy.py runs the same rules on JupyterHub's share-codes API;
tests/unit/test_hubconfig.py has the first example. Here: the boundaries, one by one.
"""

import asyncio
from types import SimpleNamespace

import pytest
from jupyterhub.apihandlers.shares import ServerShareCodeAPIHandler
from tornado import web

from spawner.activity_guard import OwnServerActivityAPIHandler
from spawner.policy import PolicyError, PolicyFile, parse_policy
from spawner.sharing import (
    ConsentOnceAuthorizeHandler,
    PolicyShareCodeAPIHandler,
    ViewerSpawnPendingHandler,
    link_problem,
    policy_authenticator,
)

DAY = 86400


def policy(defaults_link_days=0.01, **groups):
    # `defaults` are a floor combined with every group (most permissive wins), so they carry
    # the smallest link lifetime here: the groups' own limits are what is tested.
    return parse_policy(
        {
            "profiles": {"small": {"display_name": "S", "cpu_limit": 1, "mem_limit": "1G"}},
            "groups": {name: {"profiles": ["small"], **rule} for name, rule in groups.items()},
            "defaults": {
                "profiles": [],
                "max_running_apps": 0,
                "max_apps": 0,
                "max_link_days": defaults_link_days,
            },
        },
        "p.yaml",
    )


TWO_DAYS = policy(ds={"may_share_links": True, "max_link_days": 2})


@pytest.mark.parametrize(
    "expires_in, refused",
    [
        (None, False),  # JupyterHub's default, one day
        (1, False),
        (DAY, False),
        (2 * DAY - 1, False),
        (2 * DAY, False),  # exactly the limit
        (2 * DAY + 1, True),
        (2 * DAY + 0.5, True),
        (3 * DAY, True),
        (365 * DAY, True),
    ],
)
def test_max_link_days_is_an_inclusive_limit_in_seconds(expires_in, refused):
    problem = link_problem(TWO_DAYS, ["ds"], "bob", expires_in)
    assert (problem is not None) is refused
    if refused:
        status, message = problem
        assert status == 400
        assert message.startswith(
            "A share link of bob's apps may last at most 2 days under the "
            "group policy; this one asked for "
        )
        assert message.endswith(" days. Send a smaller expires_in (seconds, at most 172800).")


def test_fractional_days_and_the_one_day_default():
    half = policy(g={"may_share_links": True, "max_link_days": 0.5})
    assert link_problem(half, ["g"], "al", DAY // 2) is None
    status, message = link_problem(half, ["g"], "al", DAY // 2 + 1)
    assert status == 400 and "at most 0.5 days" in message and "at most 43200)" in message
    # no expires_in means JupyterHub's one day, which is more than half a day
    status, message = link_problem(half, ["g"], "al", None)
    assert status == 400 and "asked for 1 days" in message
    # the smallest allowed limit (0.01 days: 864 s)
    tiny = policy(g={"may_share_links": True, "max_link_days": 0.01})
    assert link_problem(tiny, ["g"], "al", 864) is None
    assert link_problem(tiny, ["g"], "al", 865)[0] == 400


def test_the_defaults_lifetime_is_a_floor_no_group_lowers():
    p = policy(defaults_link_days=3, g={"may_share_links": True, "max_link_days": 1})
    assert link_problem(p, ["g"], "al", 3 * DAY) is None
    assert link_problem(p, ["g"], "al", 3 * DAY + 1)[0] == 400


def test_max_link_days_defaults_to_one_day():
    default = policy(g={"may_share_links": True})
    assert default.groups["g"].max_link_days == 1.0
    assert link_problem(default, ["g"], "al", None) is None
    assert link_problem(default, ["g"], "al", DAY) is None
    assert link_problem(default, ["g"], "al", DAY + 1)[0] == 400


@pytest.mark.parametrize(
    "value, ok",
    [
        (0.01, True),
        (0.009, False),
        (0, False),
        (-1, False),
        (30, True),
        ("2", False),
        (True, False),
    ],
)
def test_max_link_days_in_the_file_is_checked(value, ok):
    if ok:
        assert policy(g={"max_link_days": value}).groups["g"].max_link_days == value
    else:
        with pytest.raises(PolicyError, match=r"groups.g.max_link_days"):
            policy(g={"max_link_days": value})


def test_the_longest_limit_of_the_owners_groups_applies():
    p = policy(
        short={"may_share_links": True, "max_link_days": 1},
        long={"may_share_links": True, "max_link_days": 7},
    )
    assert link_problem(p, ["short"], "al", 2 * DAY)[0] == 400
    assert link_problem(p, ["short", "long"], "al", 7 * DAY) is None
    assert link_problem(p, ["long", "short"], "al", 7 * DAY + 1)[0] == 400


def test_links_off_is_a_403_whatever_the_lifetime():
    p = policy(off={"may_share_links": False, "max_link_days": 30})
    for expires_in in (None, 1, DAY, 30 * DAY):
        status, message = link_problem(p, ["off"], "alice", expires_in)
        assert status == 403
        assert message == (
            "Share links are turned off for alice's apps by the group policy. "
            "Share with people or groups instead, or ask an admin."
        )
    # any group of the owner that allows links is enough; no group: the defaults (off)
    on = policy(off={"may_share_links": False}, on={"may_share_links": True})
    assert link_problem(on, ["off", "on"], "alice", 3600) is None
    assert link_problem(on, [], "alice", 3600)[0] == 403


@pytest.mark.parametrize("expires_in", ["soon", True, False, [1], {"d": 1}])
def test_a_lifetime_that_is_not_a_number_is_left_to_jupyterhub(expires_in):
    assert link_problem(TWO_DAYS, ["ds"], "bob", expires_in) is None


# ---- the handler on JupyterHub's share-codes route ----------------------------------------
def handler(policy_file, *, owner_groups=("ds",), may_share=True, body=None):
    """A PolicyShareCodeAPIHandler with the few request methods it uses stood in."""
    h = object.__new__(PolicyShareCodeAPIHandler)
    h.initialize(policy_file)
    owners = {
        "bob": SimpleNamespace(name="bob", groups=[SimpleNamespace(name=g) for g in owner_groups])
    }
    h.find_user = owners.get
    h.asked_scopes = []
    h.has_scope = lambda scope: h.asked_scopes.append(scope) or may_share
    h.get_json_body = lambda: body
    return h


@pytest.fixture
def policy_file(tmp_path):
    p = tmp_path / "policy.yaml"
    p.write_text("""
profiles: {small: {display_name: S, cpu_limit: 1, mem_limit: 1G}}
groups: {ds: {profiles: [small], may_share_links: true, max_link_days: 2},
         an: {profiles: [small], may_share_links: false}}
defaults: {profiles: [], max_running_apps: 0, max_apps: 0}
""")
    return PolicyFile(str(p))


@pytest.fixture
def jupyterhub_post(monkeypatch):
    calls = []

    async def post(self, user_name, server_name=None):
        calls.append((user_name, server_name))
        return "jupyterhub's answer"

    monkeypatch.setattr(ServerShareCodeAPIHandler, "post", post)
    return calls


def test_the_handler_refuses_a_link_past_the_limit_before_jupyterhub(policy_file, jupyterhub_post):
    h = handler(policy_file, body={"expires_in": 3 * DAY})
    with pytest.raises(web.HTTPError) as e:
        asyncio.run(h.post("bob", "demo"))
    assert e.value.status_code == 400 and "at most 2 days" in e.value.log_message
    assert h.asked_scopes == ["shares!server=bob/demo"] and jupyterhub_post == []


def test_the_handler_passes_a_link_within_the_limit_to_jupyterhub(policy_file, jupyterhub_post):
    for body in ({"expires_in": 2 * DAY}, {}, None):
        h = handler(policy_file, body=body)
        assert asyncio.run(h.post("bob", "demo")) == "jupyterhub's answer"
    assert jupyterhub_post == [("bob", "demo")] * 3


def test_the_handler_refuses_links_of_an_owner_whose_groups_turn_them_off(
    policy_file, jupyterhub_post
):
    h = handler(policy_file, owner_groups=("an",), body={"expires_in": 60})
    with pytest.raises(web.HTTPError) as e:
        asyncio.run(h.post("bob", "demo"))
    assert e.value.status_code == 403 and jupyterhub_post == []


@pytest.mark.parametrize(
    "user, server, may_share",
    [
        (
            "bob",
            "demo",
            False,
        ),  # no `shares` on it: JupyterHub's own answer, the policy is not told
        ("nobody", "demo", True),  # no such owner: JupyterHub answers 404
        ("bob", None, True),  # the user-level route: JupyterHub's
    ],
)
def test_the_handler_leaves_everything_else_to_jupyterhub(
    policy_file, jupyterhub_post, user, server, may_share
):
    h = handler(
        policy_file, owner_groups=("an",), may_share=may_share, body={"expires_in": 3 * DAY}
    )
    assert asyncio.run(h.post(user, server)) == "jupyterhub's answer"
    assert jupyterhub_post == [(user, server)]


def test_policy_authenticator_serves_the_share_codes_route_first():
    class Base:
        def get_handlers(self, app):
            return [("/login", "LoginHandler")]

    source = PolicyFile("/etc/policy.yaml")
    cls = policy_authenticator(Base, source)
    assert cls.__name__ == cls.__qualname__ == "StreamlitHubBase"
    assert issubclass(cls, Base)
    handlers = cls().get_handlers(None)
    assert handlers == [
        (
            r"/api/share-codes/([^/]+)/([^/]*)",
            PolicyShareCodeAPIHandler,
            {"policy": source},
        ),
        (r"/api/users/([^/]+)/activity", OwnServerActivityAPIHandler),
        # consent once per viewer and app; the pending page for viewers (tests/unit/test_consent.py)
        (r"/api/oauth2/authorize", ConsentOnceAuthorizeHandler),
        (r"/spawn-pending/([^/]+)", ViewerSpawnPendingHandler),
        (r"/spawn-pending/([^/]+)/([^/]+)", ViewerSpawnPendingHandler),
        ("/login", "LoginHandler"),
    ]


def test_an_absurd_lifetime_is_answered_without_a_float():
    status, message = link_problem(TWO_DAYS, ["ds"], "bob", 10**9)
    assert status == 400 and "this one asked for more than 10,000 days. Send" in message
    status, message = link_problem(TWO_DAYS, ["ds"], "bob", 10**9 - 1)
    assert "this one asked for 1.157e+04 days. Send" in message
    status, message = link_problem(TWO_DAYS, ["ds"], "bob", 10**400)  # no OverflowError
    assert status == 400 and "more than 10,000 days" in message


@pytest.mark.parametrize(
    "body, words",
    [
        ([1], 'Expected a JSON object like {"expires_in": 86400} (or no body), not a JSON list.'),
        ("x", 'Expected a JSON object like {"expires_in": 86400} (or no body), not a JSON str.'),
        ({"scopes": ["bogus"]}, "Scope 'bogus' for share does not exist"),
        ({"expires_in": "soon"}, "expires_in"),
    ],
)
def test_share_code_bodies_jupyterhub_would_fail_on_are_400s_with_the_reason(body, words):
    from spawner.sharing import share_code_request

    with pytest.raises(web.HTTPError) as e:
        share_code_request(body)
    assert e.value.status_code == 400
    assert (
        e.value.log_message.startswith(words) if words[0] != "e" else words in e.value.log_message
    )
    assert share_code_request({"expires_in": 60}) == {"expires_in": 60}
    assert share_code_request(None) == {}


def test_the_policy_answers_before_jupyterhubs_own_checks(policy_file, jupyterhub_post):
    # a link too long *and* with a bad scope: the policy's reason, naming the owner
    h = handler(policy_file, body={"expires_in": 3 * DAY, "scopes": ["bogus"]})
    with pytest.raises(web.HTTPError) as e:
        asyncio.run(h.post("bob", "demo"))
    assert e.value.status_code == 400 and e.value.log_message.startswith(
        "A share link of bob's apps"
    )
    # within the policy, JupyterHub's own checks still run here (as 400s, not its 500)
    h = handler(policy_file, body={"expires_in": DAY, "scopes": ["bogus"]})
    with pytest.raises(web.HTTPError) as e:
        asyncio.run(h.post("bob", "demo"))
    assert e.value.status_code == 400 and "bogus" in e.value.log_message and jupyterhub_post == []


def test_policy_authenticator_passes_the_app_on():
    class Base:
        def get_handlers(self, app):
            return [("/login", app)]

    handlers = policy_authenticator(Base, "p.yaml")().get_handlers("the app")
    assert handlers[-1] == ("/login", "the app")
