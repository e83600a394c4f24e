"""Workers per app, the pure parts: the option, the policy's max_workers, the Kubernetes CPU
bound, and the pool's pinning (least loaded, sticky, moved when a worker dies).

The processes, the proxying and the refusals on the real hub: tests/integration/test_workers.py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from types import SimpleNamespace

import pytest

from spawner.app_server.workers import WorkerPool
from spawner.options import OptionsError, parse_user_options
from spawner.policy import PolicyError, decide_start, limits_for, parse_policy

POLICY = {
    "profiles": {"small": {"cpu_limit": 1}, "large": {"cpu_limit": 2.5}},
    "groups": {
        "analysts": {"profiles": ["small"], "max_running_apps": 2},
        "power": {"profiles": ["large"], "max_running_apps": 2, "max_workers": 4},
    },
    "defaults": {"profiles": [], "max_running_apps": 0},
}


@pytest.mark.parametrize(
    "raw, workers",
    [({}, None), ({"workers": 2}, 2), ({"workers": " 3 "}, 3), ({"workers": ""}, None)],
)
def test_workers_option_is_a_whole_number(raw, workers):
    assert parse_user_options(raw).workers == workers


@pytest.mark.parametrize("bad", [0, 65, -1, True, 2.5, "2.5", "lots", "²", [2]])
def test_workers_option_refuses_anything_else_with_a_sentence(bad):
    with pytest.raises(OptionsError, match="'workers' must be a whole number from 1 to 64"):
        parse_user_options({"workers": bad})


def test_max_workers_defaults_to_one_and_the_most_permissive_group_wins():
    policy = parse_policy(POLICY)
    assert policy.groups["analysts"].max_workers == 1
    assert policy.defaults.max_workers == 1
    assert limits_for(policy, ["analysts"]).rule.max_workers == 1
    assert limits_for(policy, ["analysts", "power"]).rule.max_workers == 4


@pytest.mark.parametrize("value", [0, 1.5, "2", True])
def test_max_workers_must_be_a_whole_number_of_at_least_one(value):
    bad = {**POLICY, "groups": {"analysts": {"profiles": ["small"], "max_workers": value}}}
    with pytest.raises(PolicyError, match=r"groups\.analysts\.max_workers"):
        parse_policy(bad)


def test_a_start_beyond_max_workers_is_refused_with_the_reason():
    policy = parse_policy(POLICY)
    d = decide_start(policy, ["analysts"], [], None, "sales", workers=2)
    assert not d.allowed and d.code == "workers"
    assert d.reason.startswith("analysts may run 1 worker per app; sales asked for 2.")
    assert decide_start(policy, ["analysts"], [], None, "sales", workers=1).allowed
    assert decide_start(policy, ["power"], [], None, "sales", workers=4).allowed
    d = decide_start(policy, ["power"], [], None, "sales", workers=5)
    assert "power may run 4 workers per app; sales asked for 5" in d.reason


def test_kubernetes_bounds_workers_by_the_profiles_whole_cpus():
    from spawner.kube import StreamlitKubeSpawner
    from spawner.policy import Profile

    bound = StreamlitKubeSpawner.workers_bound
    pod = SimpleNamespace(cpu_limit=None)
    assert bound(pod, Profile(slug="large", display_name="L", cpu_limit=2.5)) == (
        2,
        "the profile 'large' has 2.5 CPUs, so at most 2 workers",
    )
    assert bound(pod, Profile(slug="s", display_name="S", cpu_limit=0.5))[0] == 1
    assert bound(pod, Profile(slug="n", display_name="N"))[0] == 1  # no limit: one
    assert bound(SimpleNamespace(cpu_limit=3.0), None)[0] == 3


def test_the_spawner_refuses_workers_beyond_its_bound():
    from spawner.mixin import StreamlitSpawnerMixin

    refused = []

    class Fake:
        name = "sales"
        workers_bound = staticmethod(lambda profile: (2, "the profile 'small' has 2 CPUs"))

        def refuse(self, message, reason, status=400):
            refused.append((message, reason, status))
            raise RuntimeError(message)

    admitted = StreamlitSpawnerMixin.admitted_workers
    assert admitted(Fake(), SimpleNamespace(workers=None), None) == 1
    assert admitted(Fake(), SimpleNamespace(workers=2), None) == 2
    with pytest.raises(RuntimeError):
        admitted(Fake(), SimpleNamespace(workers=3), None)
    assert refused == [
        (
            "sales asked for 3 workers, but the profile 'small' has 2 CPUs. "
            "Ask for fewer workers, or pick a profile with more CPUs.",
            "quota_workers",
            403,
        )
    ]


@pytest.fixture
def pool():
    settings = SimpleNamespace(prefix="/user/a/x/", app_secrets={})
    p = WorkerPool(settings, 3)
    for w in p.workers:
        w.ready = True
    yield p
    shutil.rmtree(p.folder, ignore_errors=True)


def test_the_pool_folder_is_private(pool):
    assert os.stat(pool.folder).st_mode & 0o777 == 0o700


def test_new_viewers_go_to_the_least_loaded_worker_and_stay_there(pool):
    async def scenario():
        a = await pool.worker_for("a")
        b = await pool.worker_for("b")
        c = await pool.worker_for("c")
        assert len({a.index, b.index, c.index}) == 3  # spread, before any websocket opens
        a.websockets, b.websockets = 5, 1
        assert (await pool.worker_for("d")) is c  # the fewest open websockets
        assert (await pool.worker_for("a")) is a  # pinned, however loaded
        return a

    asyncio.run(scenario())


def test_a_dead_workers_viewers_move_and_others_stay(pool):
    async def scenario():
        a, b = await pool.worker_for("a"), await pool.worker_for("b")
        a.ready = False
        pool._unpin(a)
        moved = await pool.worker_for("a")
        assert moved is not a and moved.ready
        assert (await pool.worker_for("b")) is b

    asyncio.run(scenario())


def test_with_no_live_worker_a_request_waits_then_gets_none(pool, monkeypatch):
    monkeypatch.setattr("spawner.app_server.workers._NO_WORKER_WAIT", 0.05)
    for w in pool.workers:
        w.ready = False
    assert asyncio.run(pool.worker_for("a")) is None
