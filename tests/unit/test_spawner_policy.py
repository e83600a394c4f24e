"""The group policy on the spawner's start path, without a hub: who counts, who is refused.

``StreamlitSpawnerMixin.start`` asks ``admit`` (the policy, with the *owner's* groups and the
owner's other apps) before anything is launched, whoever asked for the start: the owner, an
admin, or a viewer waking a stopped app through a ``start:servers`` share. These tests run
that path on JupyterHub's own base ``Spawner`` with stand-ins for the hub's user and handler;
tests/integration/test_quota.py and test_sharing.py run the same rules on a real hub.
"""

import asyncio
from types import SimpleNamespace

import pytest
from jupyterhub.spawner import Spawner, SpawnException
from prometheus_client import REGISTRY

import spawner.audit.hub_recorder as hub_recorder
from spawner.mixin import StreamlitSpawnerMixin
from spawner.policy import RunningApp, group_names
from spawner.quota import running_apps

POLICY = """
profiles:
  small:  {display_name: "Small", cpu_limit: 1, mem_limit: 1G}
  large:  {display_name: "Large", cpu_limit: 4, mem_limit: 8G}
groups:
  analysts: {profiles: [small], max_running_apps: 2, max_apps: 5, idle_timeout: 600}
  data-scientists: {profiles: [small, large], max_running_apps: 3, max_apps: 5}
defaults: {profiles: [], max_running_apps: 0, max_apps: 0}
"""


class InstantSpawner(Spawner):
    """A base spawner whose process starts and stops at once (JupyterHub's own only raises)."""

    async def start(self):
        return "http://127.0.0.1:1"

    async def stop(self, now=False):
        self.stopped = True

    async def poll(self):
        return None


class AppSpawner(StreamlitSpawnerMixin, InstantSpawner):
    """The mixin on JupyterHub's base spawner; launching is instant and counted."""

    launch_delay = 0.0

    async def launch(self):
        self.launched = getattr(self, "launched", 0) + 1
        await asyncio.sleep(self.launch_delay)
        return "http://127.0.0.1:1"

    async def wait_until_ready(self, url):
        return None

    def resolve_app_entry(self, options):
        return "/home/x/apps/app.py"


class Group:
    def __init__(self, name):
        self.name = name


class User:
    def __init__(self, name, groups):
        self.name, self.id, self.url = name, 1, f"/user/{name}/"
        self.groups = [Group(g) for g in groups]
        self.spawners, self.orm_spawners = {}, {}


def person(name, admin=False):
    return SimpleNamespace(name=name, kind="user", admin=admin)


class Recorder:
    def __init__(self):
        self.events = []

    def record(self, kind, **fields):
        self.events.append((kind, fields))


@pytest.fixture
def policy_file(tmp_path):
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    return str(p)


@pytest.fixture
def recorder(monkeypatch):
    r = Recorder()
    monkeypatch.setattr(hub_recorder, "_recorder", r)
    return r


def app(user, name, policy_file, *, by=None):
    """``user``'s app ``name`` (a spawner registered with the user), started by ``by``."""
    sp = AppSpawner(
        user=user,
        orm_spawner=SimpleNamespace(name=name, user_options=None, state=None, server=None),
        policy_file=policy_file,
    )
    sp.handler = SimpleNamespace(current_user=by or person(user.name))
    user.spawners[name] = sp
    return sp


def running(user, name, profile="small"):
    """A ready app of ``user``, as the hub's own spawner object looks to the policy."""
    user.spawners[name] = SimpleNamespace(ready=True, app_profile=profile)


def refusals(groups, reason):
    return (
        REGISTRY.get_sample_value(
            "streamlit_hub_quota_refusals_total", {"groups": groups, "reason": reason}
        )
        or 0.0
    )


# ---- a viewer waking a stopped app (issue 18, survivor 4) ---------------------------------
def test_a_viewer_cannot_wake_an_app_while_the_owner_is_at_max_running_apps(policy_file, recorder):
    alice = User("alice", ["analysts"])
    running(alice, "sales")
    running(alice, "churn")
    asleep = app(alice, "asleep", policy_file, by=person("carol"))
    before = refusals("analysts", "running")
    with pytest.raises(SpawnException) as e:
        asyncio.run(asleep.start())
    assert e.value.status_code == 403 and e.value.reason == "quota_running"
    # in words about alice, and her other apps counted, not named (tests/unit/test_refusals_for_others.py)
    assert e.value.message == "analysts may run 2 apps at once; alice is running 2 already."
    assert getattr(asleep, "launched", 0) == 0 and not asleep._quota_admitted
    assert refusals("analysts", "running") == before + 1
    ((kind, fields),) = recorder.events
    assert kind == "app_start" and fields["outcome"] == "refused" and fields["actor"] == "carol"
    assert fields["owner"] == "alice" and fields["app"] == "asleep"
    assert fields["reason"].startswith("analysts may run 2 apps at once")
    assert fields["extra"] == {"by": "viewer"}


def test_a_viewer_wakes_an_app_under_the_owners_limits_not_their_own(policy_file, recorder):
    # carol is in no policy group (she may start nothing of her own); waking alice's app is
    # judged by alice's groups, and the app runs on alice's default profile.
    alice = User("alice", ["analysts"])
    running(alice, "sales")
    asleep = app(alice, "asleep", policy_file, by=person("carol"))
    assert asyncio.run(asleep.start()) == "http://127.0.0.1:1"
    assert asleep.launched == 1 and asleep._quota_admitted
    assert asleep.app_profile == "small" and asleep.app_profile_spec.slug == "small"
    assert asleep.idle_timeout == 600
    ((kind, fields),) = recorder.events
    assert (kind, fields["outcome"], fields["actor"], fields["reason"]) == (
        "app_start",
        "started",
        "carol",
        "viewer",
    )


def test_an_admin_starting_an_app_for_its_owner_meets_the_same_limit(policy_file, recorder):
    alice = User("alice", ["analysts"])
    running(alice, "sales")
    running(alice, "churn")
    extra = app(alice, "extra", policy_file, by=person("root", admin=True))
    with pytest.raises(SpawnException, match="may run 2 apps at once"):
        asyncio.run(extra.start())
    assert recorder.events[0][1]["extra"] == {"by": "admin"}


def test_the_owner_is_refused_at_the_limit_and_starts_below_it(policy_file, recorder):
    alice = User("alice", ["analysts"])
    running(alice, "sales")
    third = app(alice, "third", policy_file)
    asyncio.run(third.start())
    fourth = app(alice, "fourth", policy_file)
    with pytest.raises(SpawnException) as e:
        asyncio.run(fourth.start())
    assert "you are running sales, third." in e.value.message
    assert [f["outcome"] for _, f in recorder.events] == ["started", "refused"]
    assert recorder.events[0][1]["reason"] == "user"


# ---- apps still starting count against the limit ------------------------------------------
def test_apps_still_starting_count_against_the_limit(policy_file):
    alice = User("alice", ["analysts"])
    running(alice, "sales")
    starting = app(alice, "starting", policy_file)
    starting._quota_admitted = True  # admitted, not ready yet
    stopped = app(alice, "stopped", policy_file)  # neither: does not count
    assert stopped.ready is False
    assert sorted(a.name for a in running_apps(alice, stopped)) == ["sales", "starting"]
    with pytest.raises(SpawnException, match="you are running sales, starting"):
        asyncio.run(stopped.start())


def test_two_starts_at_once_with_one_slot_left_admit_exactly_one(policy_file):
    alice = User("alice", ["analysts"])
    running(alice, "sales")
    one, two = app(alice, "one", policy_file), app(alice, "two", policy_file)
    one.launch_delay = two.launch_delay = 0.05

    async def both():
        return await asyncio.gather(one.start(), two.start(), return_exceptions=True)

    results = asyncio.run(both())
    assert results[0] == "http://127.0.0.1:1"
    assert isinstance(results[1], SpawnException) and results[1].reason == "quota_running"
    assert "you are running one, sales" in results[1].message


def test_a_stop_frees_the_slot_of_an_app_that_never_became_ready(policy_file):
    alice = User("alice", ["analysts"])
    running(alice, "sales")
    first = app(alice, "first", policy_file)
    asyncio.run(first.start())
    assert first._quota_admitted
    asyncio.run(first.stop())
    assert not first._quota_admitted
    second = app(alice, "second", policy_file)
    assert asyncio.run(second.start()) == "http://127.0.0.1:1"


def test_running_apps_skips_the_default_server_and_the_one_asking(policy_file):
    alice = User("alice", ["analysts"])
    running(alice, "", "small")  # the default server is not an app
    running(alice, "sales", "large")
    me = app(alice, "me", policy_file)
    me._quota_admitted = True
    assert running_apps(alice, me) == [RunningApp("sales", "large")]
    assert running_apps(alice) == [RunningApp("sales", "large"), RunningApp("me", None)]
    assert group_names(User("bob", ["b", "a"])) == ["b", "a"]


def test_without_a_policy_anything_starts_and_nothing_is_counted(recorder):
    alice = User("alice", [])
    for n in ("a", "b", "c"):
        running(alice, n)
    sp = app(alice, "free", "")
    assert asyncio.run(sp.start()) == "http://127.0.0.1:1"
    assert sp.app_profile_spec is None and not sp._quota_admitted and sp.app_profile is None


def test_a_profile_outside_the_owners_groups_is_refused_before_launch(policy_file):
    alice = User("alice", ["analysts"])
    sp = app(alice, "big", policy_file)
    sp.user_options = {"profile": "large"}
    with pytest.raises(SpawnException) as e:
        asyncio.run(sp.start())
    assert e.value.reason == "quota_profile" and getattr(sp, "launched", 0) == 0
    bob = User("bob", ["data-scientists"])
    sp = app(bob, "big", policy_file)
    sp.user_options = {"profile": "large"}
    asyncio.run(sp.start())
    assert sp.app_profile == "large"
    assert sp.get_state()["app_profile"] == "large"
