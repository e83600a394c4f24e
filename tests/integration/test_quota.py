"""The group policy on the real hub: every start path, exact under races, reasons shown."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.helpers.hub import Hub, running_hub
from tests.helpers.streamlit_ws import WebsocketRefused, session, ws_url

POLICY = """
profiles:
  small:  {display_name: "Small: 1 CPU, 300 MB", cpu_limit: 1, mem_limit: 300M}
  medium: {display_name: "Medium: 2 CPU, 2 GB", cpu_limit: 2, mem_limit: 2G}
  large:  {display_name: "Large: 4 CPU, 4 GB", cpu_limit: 4, mem_limit: 4G}
groups:
  analysts:        {profiles: [small, medium], default_profile: medium, max_running_apps: 3, max_apps: 60}
  data-scientists: {profiles: [small, medium, large], default_profile: medium, max_running_apps: 4, max_apps: 60}
defaults: {profiles: [], max_running_apps: 0, max_apps: 0}
"""
DEMO = {"path": "apps/demo/app.py"}
LIMIT_MESSAGE = "analysts may run 3 apps at once; you are running"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(
        tmp_path_factory.mktemp("quota"),
        policy=POLICY,
        extra_config="c.Spawner.poll_interval = 1\n",
    ) as h:
        yield h


@pytest.fixture(scope="module")
def alice(hub):
    return hub.login("alice")


@pytest.fixture
def clean(hub, alice):
    """Each test starts with none of alice's apps, and leaves none behind."""

    def wipe():
        url = f"{hub.url}/hub/api/users/alice?include_stopped_servers=1"
        servers = alice.get(url, timeout=10).json()["servers"]
        for name in [n for n in servers if n]:  # "" is the default server: not an app
            alice.delete(
                f"{hub.url}/hub/api/users/alice/servers/{name}", json={"remove": True}, timeout=60
            )
        deadline = time.monotonic() + 30
        while [n for n in alice.get(url, timeout=10).json()["servers"] if n]:
            assert time.monotonic() < deadline, "alice's apps did not go away"
            time.sleep(0.2)

    wipe()
    yield
    wipe()


def _post_start(url, token, name, body):
    r = requests.post(
        f"{url}/hub/api/users/alice/servers/{name}",
        json=body,
        headers={"Authorization": f"token {token}"},
        timeout=120,
    )
    return name, r.status_code, r.json().get("message", "") if r.content else ""


def test_50_concurrent_starts_run_exactly_3_and_47_get_the_reason(hub, alice, clean):
    token = hub.token("alice")
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda i: _post_start(hub.url, token, f"race{i}", DEMO), range(50)))
    started = [n for n, status, _ in results if status in (201, 202)]
    refused = [(n, status, m) for n, status, m in results if status not in (201, 202)]
    print(f"race: {len(started)} started, {len(refused)} refused")
    assert len(started) == 3, results
    assert len(refused) == 47
    assert all(status == 403 and LIMIT_MESSAGE in m for _, status, m in refused), refused[:3]
    for name in started:
        hub.wait_ready(alice, "alice", name)
    time.sleep(1)
    assert len(hub.app_processes()) == 3
    # /hub/metrics counts the refusals by the policy groups and reason, and spawn times by profile
    metrics = hub.api(hub.token("admin")).get(f"{hub.url}/hub/metrics", timeout=10).text
    refusals = [
        line
        for line in metrics.splitlines()
        if line.startswith('streamlit_hub_quota_refusals_total{groups="analysts",reason="running"}')
    ]
    assert refusals and float(refusals[0].split()[-1]) >= 47, refusals
    assert (
        'streamlit_hub_app_spawn_duration_seconds_count{outcome="started",profile="medium"}'
        in metrics
    )


def test_two_names_at_once_with_one_slot_left_start_exactly_one(hub, alice, clean):
    hub.start_app(alice, "alice", "one", DEMO)
    hub.start_app(alice, "alice", "two", DEMO)
    token = hub.token("alice")
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda n: _post_start(hub.url, token, n, DEMO), ["x1", "x2"]))
    assert sorted(status for _, status, _ in results)[0] in (201, 202)
    assert sorted(status for _, status, _ in results)[1] == 403, results


def test_every_start_path_is_checked(hub, alice, clean):
    for name in ("sales", "churn", "costs"):
        hub.start_app(alice, "alice", name, DEMO)
    expected = "analysts may run 3 apps at once; you are running churn, costs, sales. Stop one to start another."
    # REST API, no form involved
    r = alice.post(f"{hub.url}/hub/api/users/alice/servers/extra", json=DEMO, timeout=60)
    assert (r.status_code, r.json()["message"]) == (403, expected)
    # an admin starting on alice's behalf: the same rule, in words about alice
    admin = hub.login("admin")
    r = admin.post(f"{hub.url}/hub/api/users/alice/servers/byadmin", json=DEMO, timeout=60)
    assert (r.status_code, r.json()["message"]) == (
        403,
        "analysts may run 3 apps at once; alice is running churn, costs, sales already.",
    )
    # the options form shows the same words
    r = alice.post(
        f"{hub.url}/hub/spawn/alice/viaform",
        data={"path": "apps/demo/app.py", "_xsrf": alice.headers["X-XSRFToken"]},
        timeout=60,
    )
    assert r.status_code == 403 and "may run 3 apps at once" in r.text
    # a restart after a stop (what happens after the idle culler): the stored options are
    # reused, the policy is asked again
    hub.stop_app(alice, "alice", "costs")
    hub.start_app(alice, "alice", "fresh", DEMO)
    r = alice.post(f"{hub.url}/hub/api/users/alice/servers/costs", timeout=60)
    assert r.status_code == 403 and "churn, fresh, sales" in r.json()["message"]
    assert len(hub.app_processes()) == 3


def test_a_profile_outside_the_group_is_refused(hub, alice, clean):
    r = alice.post(
        f"{hub.url}/hub/api/users/alice/servers/big", json={**DEMO, "profile": "large"}, timeout=60
    )
    assert r.status_code == 403
    assert r.json()["message"] == (
        "analysts may use the profiles small, medium; 'Large: 4 CPU, 4 GB' is not one of them."
    )
    bob = hub.login("bob")
    hub.start_app(bob, "bob", "big", {**DEMO, "profile": "large"})
    hub.stop_app(bob, "bob", "big", remove=True)


def test_a_viewer_cannot_create_or_start_apps(hub):
    carol = hub.login("carol")
    r = carol.post(f"{hub.url}/hub/api/users/carol/servers/mine", json={}, timeout=30)
    assert r.status_code == 403
    assert "carol may open apps shared with them but not create apps." in r.json()["message"]
    home = carol.get(f"{hub.url}/hub/home", timeout=10).text
    assert 'id="no-start"' in home and "new-server-btn" not in home


def test_quota_endpoint_and_home_page_show_limits_and_use(hub, alice, clean):
    hub.start_app(alice, "alice", "sales", DEMO)
    q = alice.get(f"{hub.url}/hub/api/streamlit/quota", timeout=10).json()
    assert q["groups"] == ["analysts"] and q["running_apps"] == ["sales"]
    assert q["max_running_apps"] == 3 and q["max_apps"] == 60 and q["apps"] == 1
    assert [p["slug"] for p in q["profiles"]] == ["small", "medium"]
    assert q["default_profile"] == "medium" and q["may_start_apps"] is True
    assert q["line"] == "1 of 3 apps running; sizes: Small, Medium"
    home = alice.get(f"{hub.url}/hub/home", timeout=10).text
    assert "1 of 3 apps running; sizes: Small, Medium" in home
    assert requests.get(f"{hub.url}/hub/api/streamlit/quota", timeout=10).status_code == 403


def test_the_form_offers_only_allowed_profiles(hub, alice):
    form = alice.get(f"{hub.url}/hub/spawn/alice/pick", timeout=30).text
    assert 'value="small"' in form and 'value="medium"' in form and 'value="large"' not in form
    bob_form = hub.login("bob").get(f"{hub.url}/hub/spawn/bob/pick", timeout=30).text
    assert 'value="large"' in bob_form


HOG = """
import streamlit as st
st.title("hog")
hog = b"x" * (450 * 2**20)   # 450 MB, over the small profile's 300 MB
st.write(len(hog))
"""


def test_an_app_over_its_memory_limit_is_stopped_and_nothing_else(hub, alice, clean):
    hub.start_app(alice, "alice", "steady", DEMO)
    hub.add_app("alice", "hog", HOG)
    hub.start_app(alice, "alice", "hog", {"profile": "small"})
    hub.open_app(alice, "alice", "hog")
    try:
        session(
            ws_url(hub.app_origin("alice"), "/user/alice/hog/"),
            {"Cookie": hub.app_cookie_header(alice, "alice", "hog")},
            timeout=20,
        )
    except (WebsocketRefused, Exception):
        pass  # the app may die while we talk to it
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        servers = alice.get(f"{hub.url}/hub/api/users/alice", timeout=10).json()["servers"]
        if "hog" not in servers or not servers["hog"]["ready"]:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the hog app was not stopped")
    log = (hub.data_dir / "logs" / "alice" / "hog.log").read_text()
    assert "over the 300M limit of its profile 'small'" in log
    assert requests.get(hub.url + "/hub/api/", timeout=5).status_code == 200
    assert servers["steady"]["ready"]
    assert hub.open_app(alice, "alice", "steady").status_code == 200


def test_a_bad_policy_file_stops_the_hub_at_start_up(tmp_path):
    bad = POLICY.replace(
        "profiles: [small, medium], default_profile: medium",
        "profiles: [small, huge], default_profile: small",
    )
    h = Hub(tmp_path, policy=bad)
    with pytest.raises(RuntimeError) as e:
        h.start(timeout=30)
    assert "groups.analysts.profiles: no profile 'huge'" in str(e.value)
    assert h.stop() == []


def test_max_apps_limits_named_servers_kept(tmp_path):
    policy = POLICY.replace("max_running_apps: 3, max_apps: 60", "max_running_apps: 2, max_apps: 2")
    h = Hub(tmp_path, policy=policy).start()
    try:
        alice = h.login("alice")
        for name in ("one", "two"):
            assert (
                alice.put(
                    f"{h.url}/hub/api/users/alice/servers/{name}", json=DEMO, timeout=30
                ).status_code
                == 201
            )
        r = alice.put(f"{h.url}/hub/api/users/alice/servers/three", json=DEMO, timeout=30)
        assert r.status_code == 400
        assert "already has the maximum of 2 named servers" in r.json()["message"]
        alice.delete(f"{h.url}/hub/api/users/alice/servers/two", json={"remove": True}, timeout=30)
        assert (
            alice.put(
                f"{h.url}/hub/api/users/alice/servers/three", json=DEMO, timeout=30
            ).status_code
            == 201
        )
    finally:
        assert h.stop() == []
