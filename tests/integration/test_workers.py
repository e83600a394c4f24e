"""Workers per app: N Streamlit processes behind one auth layer, on the real hub and proxy.

The app shows the pid of the process running it and an image (a media file, kept by that
process only). A viewer stays on one worker over HTTP and websocket; two viewers spread over
two workers; a killed worker comes back while other viewers keep their sessions; a revoked
viewer is refused at the front; a worker count beyond the policy is refused with the reason;
the workers' sockets are out of another Unix user's reach.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from tests.helpers.hub import REPO, running_hub
from tests.helpers.streamlit_ws import session, ws_url

APP_PYTHON = REPO / ".venv-app" / "bin" / "python"  # app accounts may run it
WINDOW = 2.0  # auth_cache_seconds: how long a revoked viewer may keep going
POLICY = """
profiles:
  small: {display_name: "Small", cpu_limit: 1, mem_limit: 4G}
groups:
  analysts: {profiles: [small], max_running_apps: 20, max_apps: 60, max_workers: 2}
defaults: {profiles: [], max_running_apps: 0, max_apps: 0}
"""
APP = "/user/alice/pids/"
SCRIPT = """
import io, os
import streamlit as st
from PIL import Image

st.write(f"worker pid {os.getpid()}")
buf = io.BytesIO()
Image.new("RGB", (4, 4), (os.getpid() % 256, 0, 0)).save(buf, format="PNG")
st.image(buf.getvalue())
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    extra = f"""
c.StreamlitSpawnerMixin.auth_cache_seconds = {WINDOW}
c.Authenticator.allowed_users = {{"alice", "bob", "carol", "admin"}}
"""
    with running_hub(tmp_path_factory.mktemp("workers"), extra_config=extra, policy=POLICY) as h:
        yield h


@pytest.fixture(scope="module")
def alice(hub):
    s = hub.login("alice")
    hub.add_app("alice", "pids", SCRIPT)
    hub.start_app(s, "alice", "pids", {"workers": 2})
    return s


def viewer(hub, user="alice"):
    """A browser of its own (its own sign-in, so its own pin), signed in to the app."""
    s = hub.login(user)
    r = hub.open_app(s, "alice", "pids")
    assert r.status_code == 200 and '<div id="root">' in r.text, (r.status_code, r.text[:300])
    return s


def cookie(hub, s) -> str:
    return hub.app_cookie_header(s, "alice", "pids")


def front_and_workers(hub) -> tuple[int, list[int]]:
    """The app server's front process and its worker processes (its children)."""
    pids = [p for p in hub.app_processes() if "pids" in _environ_entry(p)]
    children = {p: _ppid(p) for p in pids}
    (front,) = [p for p in pids if children[p] not in pids]
    return front, sorted(p for p in pids if children[p] == front)


def _environ_entry(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return ""
    m = re.search(rb"STREAMLIT_HUB_ENTRY=([^\0]*)", raw)
    return m.group(1).decode() if m else ""


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


class Tab:
    """One open Streamlit session (a browser tab): rerun it, read what it shows."""

    def __init__(self, hub, s):
        self.hub, self.s = hub, s
        self.ws = None

    async def __aenter__(self):
        self.ws = await websockets.connect(
            ws_url(self.hub.app_origin("alice"), APP),
            subprotocols=["streamlit"],
            additional_headers={"Cookie": cookie(self.hub, self.s)},
            max_size=None,
        )
        return self

    async def __aexit__(self, *exc):
        await self.ws.close()

    async def rerun(self, timeout=30.0) -> tuple[int, str]:
        """(pid shown, the image's media path) of one run."""
        msg = BackMsg()
        msg.rerun_script.query_string = ""
        await self.ws.send(msg.SerializeToString())
        texts = []
        deadline = time.monotonic() + timeout
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), max(0.1, deadline - time.monotonic()))
            fwd = ForwardMsg()
            fwd.ParseFromString(raw)
            if fwd.WhichOneof("type") == "delta":
                texts.append(str(fwd.delta))
            if fwd.WhichOneof("type") == "script_finished":
                break
        blob = "\n".join(texts)
        pid = re.search(r"worker pid (\d+)", blob)
        media = re.search(r"media/([0-9a-f]+\.[a-z]+)", blob)
        assert pid and media, blob[:2000]
        return int(pid.group(1)), "media/" + media.group(1)

    async def get(self, path: str) -> requests.Response:
        url = self.hub.app_origin("alice") + APP + path
        headers = {"Cookie": cookie(self.hub, self.s)}
        return await asyncio.to_thread(requests.get, url, headers=headers, timeout=30)


def test_the_app_runs_in_two_workers_behind_one_front(hub, alice):
    front, workers = front_and_workers(hub)
    assert len(workers) == 2, (front, workers)
    # the front serves the hub's port; the workers are the app's code (its owner's account)
    assert all(os.stat(f"/proc/{p}").st_uid == os.stat(f"/proc/{front}").st_uid for p in workers)


def test_a_viewer_stays_on_one_worker_over_http_and_websocket(hub, alice):
    s = viewer(hub)

    async def scenario():
        async with Tab(hub, s) as tab:
            runs = [await tab.rerun() for _ in range(3)]
            # the image lives in that worker's memory: the HTTP request reaches the same one
            r = await tab.get(runs[-1][1])
            assert r.status_code == 200 and r.headers["content-type"].startswith("image/"), r.text
        async with Tab(hub, s) as again:  # a reload: a new session, the same cookie
            runs.append(await again.rerun())
        return {pid for pid, _ in runs}

    pids = asyncio.run(scenario())
    assert len(pids) == 1, pids
    assert pids <= set(front_and_workers(hub)[1])


def test_two_viewers_spread_over_two_workers_and_media_stay_private_to_a_worker(hub, alice):
    one, two = viewer(hub), viewer(hub)

    async def scenario():
        async with Tab(hub, one) as a, Tab(hub, two) as b:
            (pid_a, media_a), (pid_b, _) = await a.rerun(), await b.rerun()
            # b's requests go to b's worker, which never made a's image
            missing = await b.get(media_a)
            return pid_a, pid_b, missing.status_code

    pid_a, pid_b, status = asyncio.run(scenario())
    assert pid_a != pid_b
    assert {pid_a, pid_b} == set(front_and_workers(hub)[1])
    assert status == 404


def test_a_killed_worker_comes_back_and_other_viewers_keep_their_sessions(hub, alice):
    one, two = viewer(hub), viewer(hub)

    async def scenario():
        async with Tab(hub, one) as a, Tab(hub, two) as b:
            (pid_a, _), (pid_b, _) = await a.rerun(), await b.rerun()
            assert pid_a != pid_b
            os.kill(pid_a, signal.SIGKILL)
            # b's open session goes on, on the same worker, undisturbed
            for _ in range(3):
                assert (await b.rerun())[0] == pid_b
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await a.rerun(timeout=10)
        # a's browser reconnects: it is served again, by a live worker
        async with Tab(hub, one) as a2:
            pid_a2, media = await a2.rerun()
            assert (await a2.get(media)).status_code == 200
        return pid_a, pid_b, pid_a2

    pid_a, pid_b, pid_a2 = asyncio.run(scenario())
    assert pid_a2 != pid_a
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = front_and_workers(hub)[1]
        if len(workers) == 2 and pid_a not in workers:
            break
        time.sleep(0.5)
    assert len(workers) == 2 and pid_b in workers and pid_a not in workers, workers


def test_a_revoked_viewer_is_refused_at_the_front_on_every_worker(hub, alice):
    alice.post(f"{hub.url}/hub/api/shares/alice/pids", json={"user": "bob"}, timeout=10)
    bob = hub.login("bob")
    r = hub.open_app(bob, "alice", "pids")
    if 'id="authorize-open-app"' in r.text:  # the hub's consent page, once
        fields = dict(re.findall(r'name="(_xsrf)" value="([^"]*)"', r.text))
        scopes = re.findall(r'name="scopes" value="([^"]*)"', r.text)
        r = bob.post(r.url, data={"_xsrf": fields["_xsrf"], "scopes": scopes}, timeout=30)
    assert r.status_code == 200 and r.url == hub.app_origin("alice") + APP

    async def scenario():
        async with Tab(hub, bob) as tab:
            _, media = await tab.rerun()
            assert (await tab.get(media)).status_code == 200
            r = alice.patch(
                f"{hub.url}/hub/api/shares/alice/pids", json={"user": "bob"}, timeout=10
            )
            assert r.status_code == 200, r.text
            await asyncio.sleep(WINDOW + 0.5)
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await tab.rerun(timeout=10)
            return media

    media = asyncio.run(scenario())
    for path in ("", media, "_stcore/health"):
        r = requests.get(
            hub.app_origin("alice") + APP + path,
            headers={"Cookie": cookie(hub, bob), "Accept": "text/html"},
            allow_redirects=False,
            timeout=30,
        )
        assert r.status_code in (302, 403), (path, r.status_code)
    with pytest.raises(Exception):  # noqa: B017 - refused: an HTTP status, not 101
        session(ws_url(hub.app_origin("alice"), APP), {"Cookie": cookie(hub, bob)})


def test_more_workers_than_the_policy_allows_are_refused_with_the_reason(hub, alice):
    before = len(hub.app_processes())
    r = alice.post(f"{hub.url}/hub/api/users/alice/servers/many", json={"workers": 3}, timeout=30)
    assert r.status_code == 403, r.text
    assert "analysts may run 2 workers per app; many asked for 3" in r.json()["message"]
    r = alice.post(
        f"{hub.url}/hub/api/users/alice/servers/many", json={"workers": "lots"}, timeout=30
    )
    assert r.status_code == 400 and "'workers' must be a whole number" in r.json()["message"]
    assert len(hub.app_processes()) == before
    alice.delete(f"{hub.url}/hub/api/users/alice/servers/many", json={"remove": True}, timeout=30)


def _worker_socket(pid: int) -> str:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return next(a.decode() for a in args if a.endswith(b".sock"))


@pytest.mark.skipif(os.geteuid() != 0, reason="per-analyst accounts need the hub to run as root")
def test_the_workers_sockets_are_out_of_reach_of_other_unix_users(hub, alice):
    front, workers = front_and_workers(hub)
    owner = os.stat(f"/proc/{front}").st_uid
    assert owner != 0  # the app runs as alice's account, not as the hub's root
    for pid in workers:
        path = _worker_socket(pid)
        folder = os.stat(os.path.dirname(path))
        assert (folder.st_uid, folder.st_mode & 0o777) == (owner, 0o700)
        assert os.stat(path).st_mode & 0o777 == 0o600
        # another account (nobody) cannot connect: no bypass of the front's auth
        probe = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(13)\n"
        )
        done = subprocess.run(
            [str(APP_PYTHON), "-c", probe, path],
            user="nobody",
            group="nogroup",  # not root's group: a real other user
            extra_groups=[],
            capture_output=True,
            timeout=30,
        )
        assert done.returncode == 13, (done.returncode, done.stderr)
        # root can (the check above is a real one)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)


def test_a_process_of_the_same_account_cannot_go_around_the_front(hub, alice):
    """The owner's other apps run as the same account and may open a worker's socket: without
    the front's secret, a request or websocket reaches nothing but a 403."""
    _, workers = front_and_workers(hub)
    path = _worker_socket(workers[0])
    request = (
        b"GET /user/alice/pids/ HTTP/1.1\r\nHost: localhost\r\n"
        b"X-Streamlit-Hub-Front: guessed\r\nConnection: close\r\n\r\n"
    )
    for probe in (request, request.replace(b"X-Streamlit-Hub-Front: guessed\r\n", b"")):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(probe)
            answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
