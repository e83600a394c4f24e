"""Faults against real processes: hub restart with apps running, proxy restart, app killed.

Each waits with a deadline; the measured recovery times are printed (run with -s to see them).
"""

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import have_proxy
from tests.helpers.hub import Hub
from tests.helpers.streamlit_ws import session, ws_url

DEMO = {"path": "apps/demo/app.py"}
APPS = [f"app{i}" for i in range(10)]


POLICY = """
profiles:
  small: {display_name: "Small", cpu_limit: 1, mem_limit: 2G}
  tiny: {display_name: "Tiny", cpu_limit: 1, mem_limit: 300M}
groups:
  analysts: {profiles: [small, tiny], default_profile: small, max_running_apps: 20, max_apps: 60}
defaults: {profiles: [], max_running_apps: 0, max_apps: 0}
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if not have_proxy():
        pytest.fail("configurable-http-proxy is not installed: run `make install`")
    # Apps and the proxy outlive the hub process, as on Kubernetes.
    extra = """
c.JupyterHub.cleanup_servers = False
c.JupyterHub.cleanup_proxy = False
c.Spawner.poll_interval = 1
c.ConfigurableHTTPProxy.check_running_interval = 1
"""
    h = Hub(tmp_path_factory.mktemp("faults"), extra_config=extra, policy=POLICY).start()
    yield h
    try:
        alice = h.login("alice")
        names = list(alice.get(f"{h.url}/hub/api/users/alice", timeout=10).json()["servers"])
        with ThreadPoolExecutor(8) as pool:  # stop them all at once, not one after another
            list(pool.map(lambda name: h.stop_app(alice, "alice", name), names))
    finally:
        chp = h.proxy_pid()  # cleanup_proxy = False: the proxy is expected to outlive the hub
        left = h.stop()
    assert set(left) <= {chp}, f"app processes left behind: {set(left) - {chp}}"


def app_pids(hub) -> dict:
    out = {}
    for pid in hub.app_processes():
        env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        name = next(
            e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"JUPYTERHUB_SERVER_NAME=")
        )
        out[name] = pid
    return out


def test_hub_restart_keeps_apps_serving_and_resumes_them(hub):
    alice = hub.login("alice")
    for name in APPS:
        hub.start_app(alice, "alice", name, DEMO)
    for name in APPS[:3]:
        hub.open_app(alice, "alice", name)
    cookies = {n: hub.app_cookie_header(alice, "alice", n) for n in APPS[:3]}
    before = app_pids(hub)
    assert sorted(before) == sorted(APPS)
    # A viewer goes from page to page on app0 all through the restart; every page view must
    # reach the audit trail exactly once (the app server spools while the hub and its audit
    # service are down, and resends).
    reader = PageViews(ws_url(hub.app_origin("alice"), "/user/alice/app0/"), cookies["app0"])
    reader.start()
    time.sleep(2)

    hub.interrupt()
    down = time.monotonic()
    # while the hub is down, viewers keep using their apps through the proxy
    extra_views = 0
    for name, cookie in cookies.items():
        assert (
            session(ws_url(hub.app_origin("alice"), f"/user/alice/{name}/"), {"Cookie": cookie})[
                "finished"
            ]
            == 1
        )
        extra_views += name == "app0"
        r = requests.get(
            f"{hub.app_origin('alice')}/user/alice/{name}/_stcore/health",
            headers={"Cookie": cookie},
            timeout=10,
        )
        assert (r.status_code, r.text) == (200, "ok")
    served_while_down = time.monotonic() - down

    # In local mode the starting hub replaces the proxy it finds (JupyterHub's own
    # behaviour; on Kubernetes the proxy is separate), which drops connections for a few
    # seconds: stop paging just before, resume once the hub is back.
    reader.stop.set()
    reader.join(60)
    hub.start()
    up = time.monotonic() - down
    alice = hub.login("alice")
    servers = alice.get(f"{hub.url}/hub/api/users/alice", timeout=10).json()["servers"]
    assert sorted(n for n, s in servers.items() if s["ready"]) == sorted(APPS)
    after = app_pids(hub)
    assert after == before, "apps were restarted or duplicated"
    assert hub.open_app(alice, "alice", "app9").status_code == 200
    after_restart = PageViews(ws_url(hub.app_origin("alice"), "/user/alice/app0/"), cookies["app0"])
    after_restart.start()
    time.sleep(3)
    after_restart.stop.set()
    after_restart.join(60)
    total = reader.views + after_restart.views + extra_views
    admin = hub.api(hub.token("admin"))
    deadline = time.monotonic() + 60
    while True:
        views = admin.get(
            f"{hub.url}/services/audit/api/events",
            params={"app": "app0", "type": "page_view", "viewer": "alice", "limit": 1000},
            timeout=10,
        ).json()["events"]
        if len(views) >= total or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert reader.views > 10 and after_restart.views > 0
    assert reader.errors == after_restart.errors == 0, getattr(reader, "last_error", "")
    assert len(views) == total and len({v["id"] for v in views}) == total
    print(
        f"hub restart: viewers served for {served_while_down:.1f} s while down; "
        f"hub back after {up:.1f} s; {len(after)} apps resumed, same PIDs; "
        f"{total} page views ({reader.views} before and while the hub was down), all in the audit trail once"
    )


class PageViews(threading.Thread):
    """Sessions that alternate between the demo's two pages until stopped; counts the views."""

    def __init__(self, url, cookie):
        super().__init__(daemon=True)
        self.url, self.cookie = url, cookie
        self.stop = threading.Event()
        self.views = 0
        self.errors = 0

    def run(self):
        while not self.stop.is_set():
            try:
                self.views += session(self.url, {"Cookie": self.cookie}, pages=["", "Details"])[
                    "finished"
                ]
            except Exception as e:
                self.errors += 1
                self.last_error = repr(e)
                time.sleep(0.2)


def test_proxy_killed_is_restarted_and_routes_restored(hub):
    alice = hub.login("alice")
    hub.start_app(alice, "alice", "survivor", DEMO)
    hub.open_app(alice, "alice", "survivor")
    cookie = hub.app_cookie_header(alice, "alice", "survivor")
    url = f"{hub.app_origin('alice')}/user/alice/survivor/_stcore/health"
    chp = hub.proxy_pid()
    assert chp and b"configurable-http-proxy" in open(f"/proc/{chp}/cmdline", "rb").read()
    os.kill(chp, signal.SIGKILL)
    killed = time.monotonic()
    while time.monotonic() - killed < 30:
        try:
            r = requests.get(url, headers={"Cookie": cookie}, timeout=2)
            if (r.status_code, r.text) == (200, "ok"):
                break
        except requests.RequestException:
            pass
        time.sleep(0.1)
    else:
        pytest.fail("routes not restored within 30 s")
    print(f"proxy restart: app reachable again {time.monotonic() - killed:.1f} s after SIGKILL")


def test_killed_app_is_marked_stopped_and_starts_again(hub):
    alice = hub.login("alice")
    hub.start_app(alice, "alice", "fragile", DEMO)
    pid = app_pids(hub)["fragile"]
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    while time.monotonic() - killed < 20:
        server = (
            alice.get(f"{hub.url}/hub/api/users/alice", timeout=10).json()["servers"].get("fragile")
        )
        if not server or not server["ready"]:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the hub did not notice the app died")
    print(f"app crash: marked stopped {time.monotonic() - killed:.1f} s after SIGKILL")
    hub.start_app(alice, "alice", "fragile", DEMO)
    assert hub.open_app(alice, "alice", "fragile").status_code == 200
    assert app_pids(hub)["fragile"] != pid


CRASHY = """
import os, sys, threading, time
import streamlit as st
st.title("crashy")
print("about to fail: KeyError('region') in load_sales()", file=sys.stderr, flush=True)
threading.Timer(0.5, lambda: os._exit(3)).start()
"""


def test_owner_sees_why_an_app_died_and_others_do_not(hub):
    alice = hub.login("alice")
    hub.add_app("alice", "crashy", CRASHY)
    hub.start_app(alice, "alice", "crashy")
    hub.open_app(alice, "alice", "crashy")
    try:
        session(
            ws_url(hub.app_origin("alice"), "/user/alice/crashy/"),
            {"Cookie": hub.app_cookie_header(alice, "alice", "crashy")},
            timeout=10,
        )
    except Exception:
        pass  # the app exits under us, as designed
    deadline = time.monotonic() + 20
    while alice.get(f"{hub.url}/hub/api/users/alice", timeout=10).json()["servers"].get("crashy"):
        assert time.monotonic() < deadline, "the crash was not noticed"
        time.sleep(0.2)
    # A crashed app is not restarted behind anyone's back (no tight restart loop): it stays
    # stopped until someone starts it, and the crash is in the audit trail.
    time.sleep(3)
    assert "crashy" not in app_pids(hub)
    assert (
        not alice.get(f"{hub.url}/hub/api/users/alice", timeout=10).json()["servers"].get("crashy")
    )
    stops = (
        hub.api(hub.token("admin"))
        .get(
            f"{hub.url}/services/audit/api/events",
            params={"app": "crashy", "type": "app_stop"},
            timeout=10,
        )
        .json()["events"]
    )
    assert [(e["reason"], e["extra"]["exit_status"]) for e in stops] == [("crash", 3)]
    url = f"{hub.url}/hub/api/streamlit/apps/alice/crashy/output"
    out = alice.get(url, timeout=10).json()
    assert out["running"] is False and out["exit_status"] == 3, out
    assert any("KeyError('region')" in line for line in out["lines"]), out
    admin = hub.api(hub.token("admin")).get(url, timeout=10)
    assert admin.status_code == 200
    # a viewer it is shared with, another user, and an anonymous client learn nothing
    alice.post(f"{hub.url}/hub/api/shares/alice/crashy", json={"user": "carol"}, timeout=10)
    for who in ("carol", "bob"):
        r = hub.api(hub.token(who)).get(url, timeout=10)
        assert r.status_code == 404 and "KeyError" not in r.text
    assert requests.get(url, timeout=10).status_code in (403, 404)


HUNGRY = """
import os, time
import streamlit as st
st.title("hungry")
flag = os.path.join(os.path.dirname(os.path.abspath(__file__)), "eat")
if os.path.exists(flag):
    hoard = bytearray(450 * 1024 * 1024)  # over the tiny profile's 300M
    time.sleep(30)
"""


def test_memory_limit_still_holds_after_a_hub_restart(hub):
    alice = hub.login("alice")
    folder = hub.add_app("alice", "hungry", HUNGRY)
    hub.start_app(alice, "alice", "hungry", {"path": "apps/hungry/app.py", "profile": "tiny"})
    before = app_pids(hub)
    hub.interrupt()
    hub.start()  # the restarted hub must watch the running app's memory again
    alice = hub.login("alice")
    hub.open_app(alice, "alice", "hungry")
    (folder / "eat").write_text("now")
    try:
        session(
            ws_url(hub.app_origin("alice"), "/user/alice/hungry/"),
            {"Cookie": hub.app_cookie_header(alice, "alice", "hungry")},
            timeout=10,
        )
    except Exception:
        pass  # killed under us, as designed
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "hungry" in app_pids(hub):
        time.sleep(0.2)
    assert "hungry" not in app_pids(hub), "the app over its memory limit was not stopped"
    out = alice.get(f"{hub.url}/hub/api/streamlit/apps/alice/hungry/output", timeout=10).json()
    assert "300M limit of its profile 'tiny'" in (out["stop_reason"] or "") + "\n".join(
        out["lines"]
    ), out
    after = app_pids(hub)
    assert {n: p for n, p in before.items() if n != "hungry"} == after  # only it died
