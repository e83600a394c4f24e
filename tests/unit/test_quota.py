"""The policy at the hub's edges (spawner/quota.py), with stand-ins for the hub's objects.

tests/integration/test_quota.py asks the same of a real hub; here each rule is one case.
"""

import asyncio
import json
from types import SimpleNamespace

import pytest
from tornado import web

from spawner.policy import PolicyFile
from spawner.quota import QuotaAPIHandler, make_named_server_limit, make_template_quota, summary_for

POLICY = """
profiles:
  small:  {display_name: "Small", cpu_limit: 1, mem_limit: 1G}
  medium: {display_name: "Medium", cpu_limit: 2, mem_limit: 2G}
groups:
  analysts: {profiles: [small, medium], default_profile: medium, max_running_apps: 2, max_apps: 4,
             idle_timeout: 900}
defaults: {profiles: [], max_running_apps: 0, max_apps: 0}
"""


@pytest.fixture
def policy_file(tmp_path):
    """The policy as the hub's configuration hands it to the quota code."""
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    return PolicyFile(str(p))


def user(name, groups=(), running=(), starting=(), kept=(), kind="user"):
    spawners = {n: SimpleNamespace(ready=True, app_profile="small") for n in running}
    spawners.update(
        {
            n: SimpleNamespace(ready=False, _quota_admitted=True, app_profile="medium")
            for n in starting
        }
    )
    spawners[""] = SimpleNamespace(ready=True, app_profile=None)  # the default server
    return SimpleNamespace(
        name=name,
        kind=kind,
        groups=[SimpleNamespace(name=g) for g in groups],
        spawners=spawners,
        orm_spawners={n: object() for n in ("", *kept)},
    )


def test_summary_counts_running_and_starting_apps_and_kept_apps_but_no_default_server(policy_file):
    alice = user(
        "alice", ["analysts"], running=["sales"], starting=["churn"], kept=["sales", "churn", "old"]
    )
    s = summary_for(policy_file, alice)
    assert s["running_apps"] == ["churn", "sales"] and s["apps"] == 3
    assert s["max_running_apps"] == 2 and s["max_apps"] == 4 and s["groups"] == ["analysts"]
    assert s["line"] == "2 of 2 apps running; sizes: Small, Medium"
    assert s["idle_timeout"] == 900 and s["default_profile"] == "medium"


def test_summary_of_a_user_in_no_group(policy_file):
    s = summary_for(policy_file, user("carol"))
    assert s["may_start_apps"] is False and s["apps"] == 0
    assert s["line"] == "You can open apps shared with you; you cannot start apps."


class Handler(QuotaAPIHandler):
    """QuotaAPIHandler without tornado's request plumbing: headers and body are kept."""

    current_user = None  # the hub's property, replaced by a plain attribute

    def __init__(self, policy_file, who):
        self.initialize(policy_file)
        self.current_user = who
        self.headers, self.body = {}, []

    def set_header(self, name, value):
        self.headers[name] = value

    def write(self, chunk):
        self.body.append(chunk)


def test_the_quota_api_answers_the_signed_in_user(policy_file):
    h = Handler(policy_file, user("alice", ["analysts"], running=["sales"], kept=["sales"]))
    asyncio.run(h.get())
    assert h.headers == {"Content-Type": "application/json", "Cache-Control": "no-store"}
    (body,) = h.body
    answer = json.loads(body)
    assert answer["running_apps"] == ["sales"] and answer["line"].startswith("1 of 2 apps running")


@pytest.mark.parametrize("who", [None, SimpleNamespace(name="culler", kind="service")])
def test_the_quota_api_is_for_signed_in_users_only(policy_file, who):
    h = Handler(policy_file, who)
    with pytest.raises(web.HTTPError) as e:
        asyncio.run(h.get())
    assert (
        e.value.status_code == 403
        and e.value.log_message == "Sign in as a user to see your app quota."
    )
    assert h.body == []


def test_a_user_object_without_a_kind_is_a_user(policy_file):
    alice = user("alice", ["analysts"])
    del alice.kind
    h = Handler(policy_file, alice)
    asyncio.run(h.get())
    assert json.loads(h.body[0])["groups"] == ["analysts"]
    assert make_template_quota(policy_file)(alice)["groups"] == ["analysts"]


def test_the_home_page_quota(policy_file):
    quota = make_template_quota(policy_file)
    assert quota(None) is None
    assert quota(SimpleNamespace(name="svc", kind="service")) is None
    s = quota(user("alice", ["analysts"], running=["a"]))
    assert s["line"] == "1 of 2 apps running; sizes: Small, Medium"


# ---- named_server_limit_per_user ----------------------------------------------------------
def limit_handler(path, who, method="POST", users=None, hub_prefix="/hub/"):
    """What named_server_limit reads of JupyterHub's handler; ``path`` as tornado's
    ``request.path`` holds it (percent-encoded, no query)."""
    users = users or {}
    return SimpleNamespace(
        current_user=who,
        request=SimpleNamespace(path=path, method=method),
        find_user=users.get,
        hub=SimpleNamespace(base_url=hub_prefix),
    )


def test_the_named_server_limit_is_max_apps_of_the_apps_owner(policy_file):
    limit = make_named_server_limit(policy_file)
    alice = user("alice", ["analysts"])
    admin = user("admin")
    users = {"alice": alice, "admin": admin}
    assert limit(limit_handler("/hub/api/users/alice/servers/new", alice, users=users)) == 4
    # an admin (in no group) starting alice's app: alice's limit, not the admin's refusal
    assert limit(limit_handler("/hub/api/users/alice/servers/new", admin, users=users)) == 4
    assert limit(limit_handler("/hub/spawn/alice/new", admin, users=users)) == 4
    # a page that names no server: the signed-in user's own limit
    assert limit(limit_handler("/hub/home", alice, "GET", users=users)) == 4


@pytest.mark.parametrize(
    "path, method, refused",
    [
        ("/hub/api/users/carol/servers/mine", "POST", True),
        ("/hub/api/users/carol/servers/mine", "PUT", True),
        ("/hub/spawn/carol/mine", "POST", True),
        ("/hub/api/users/carol/servers/kept", "POST", False),  # an existing one may be started
        ("/hub/api/users/carol/servers/kept", "PUT", False),
        ("/hub/spawn/carol/kept", "POST", False),
        ("/hub/api/users/carol/servers/mine", "GET", False),  # pages only show the number
        ("/hub/api/users/carol/servers/mine", "DELETE", False),
        ("/hub/api/users/carol/servers/mine", "PATCH", False),
        ("/hub/spawn/carol/mine", "GET", False),
        ("/hub/home", "POST", True),  # no server named: not an existing app either
    ],
)
def test_a_user_in_no_group_may_create_no_app(policy_file, path, method, refused):
    limit = make_named_server_limit(policy_file)
    carol = user("carol", kept=["kept"])
    h = limit_handler(path, carol, method, users={"carol": carol})
    if refused:
        with pytest.raises(web.HTTPError) as e:
            limit(h)
        assert e.value.status_code == 403
        assert e.value.log_message == "carol may open apps shared with them but not create apps."
    else:
        assert limit(h) == 1


def test_an_unknown_target_user_falls_back_to_the_signed_in_user(policy_file):
    limit = make_named_server_limit(policy_file)
    alice = user("alice", ["analysts"])
    assert limit(limit_handler("/hub/api/users/ghost/servers/x", alice, users={})) == 4
    carol = user("carol")
    with pytest.raises(web.HTTPError, match="carol may open"):
        limit(limit_handler("/hub/api/users/ghost/servers/x", carol, users={}))


def test_nobody_signed_in_gets_one(policy_file):
    limit = make_named_server_limit(policy_file)
    assert limit(limit_handler("/hub/home", None)) == 1
    assert limit(limit_handler("/hub/api/users/ghost/servers/x", None, users={})) == 1


def test_the_owner_and_the_app_are_read_from_the_hubs_route(policy_file):
    limit = make_named_server_limit(policy_file)
    alice = user("alice", ["analysts"])
    carol = user("carol", kept=["my app", "kept"])
    bob = user("al@ice", ["analysts"])
    users = {"carol": carol, "alice": alice, "al@ice": bob}
    # names as JupyterHub's handler sees them: percent-decoded
    assert limit(limit_handler("/hub/spawn/carol/my%20app", carol, users=users)) == 1
    assert limit(limit_handler("/hub/api/users/carol/servers/my%20app", carol, users=users)) == 1
    assert limit(limit_handler("/hub/api/users/al%40ice/servers/x", carol, users=users)) == 4
    # under the hub's base URL
    jh = "/jh/hub/"
    assert limit(limit_handler("/jh/hub/spawn/carol/kept", carol, users=users, hub_prefix=jh)) == 1
    assert limit(limit_handler("/jh/hub/spawn/alice/x", carol, users=users, hub_prefix=jh)) == 4
    # a path that is not the route (JupyterHub runs no start for it): no app, no owner
    for path in (
        "/hub/spawn/carol/kept/",
        "/hub/api/users/carol/servers/kept/progress",
        "/hub/api/shares/carol/kept",
        "/user/carol/kept/hub/spawn/carol/kept",
        "/jh/hub/spawn/carol/kept",  # not under this hub's prefix
    ):
        with pytest.raises(web.HTTPError, match="carol may open"):
            limit(limit_handler(path, carol, users=users))
        # nor is the owner read from it
        assert limit(limit_handler(path.replace("carol", "alice"), carol, "GET", users)) == 1


def test_a_group_allowed_one_app_gets_one_not_a_refusal(tmp_path):
    p = tmp_path / "one.yaml"
    p.write_text(
        POLICY.replace("max_running_apps: 2, max_apps: 4", "max_running_apps: 1, max_apps: 1")
    )
    limit = make_named_server_limit(PolicyFile(str(p)))
    alice = user("alice", ["analysts"])
    assert (
        limit(limit_handler("/hub/api/users/alice/servers/new", alice, users={"alice": alice})) == 1
    )


def test_spawner_and_user_objects_missing_optional_attributes(policy_file):
    from spawner.quota import running_apps

    # a spawner of another kind: no _quota_admitted, no app_profile
    bare = SimpleNamespace(
        name="bob",
        groups=[],
        spawners={"up": SimpleNamespace(ready=True), "down": SimpleNamespace(ready=False)},
    )
    assert [(a.name, a.profile) for a in running_apps(bare)] == [("up", None)]
    # a user object without orm_spawners: nothing exists yet, so a user in no group is refused
    limit = make_named_server_limit(policy_file)
    h = limit_handler("/hub/api/users/bob/servers/x", bare, users={"bob": bare})
    with pytest.raises(web.HTTPError, match="bob may open apps shared with them"):
        limit(h)


def test_the_policy_object_rereads_an_edited_file(tmp_path):
    """One PolicyFile is handed out at start; an edited policy (a ConfigMap update) applies
    to its next use without a restart."""
    import os

    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    source = PolicyFile(str(p))
    limit = make_named_server_limit(source)
    alice = user("alice", ["analysts"])
    handler = limit_handler("/hub/api/users/alice/servers/new", alice, users={"alice": alice})
    before = limit(handler)
    p.write_text(POLICY.replace("max_apps: 4", "max_apps: 9"))
    os.utime(p, (os.stat(p).st_atime + 5, os.stat(p).st_mtime + 5))
    assert (before, limit(handler)) == (4, 9)
