"""The idle culler with the group policy's timeout: an app nobody uses is stopped, an app a
viewer is reading is not; the stop is in the audit trail as the culler's."""

import asyncio
import threading
import time

import pytest
import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg

from tests.helpers.hub import running_hub
from tests.helpers.streamlit_ws import ws_url

pytestmark = pytest.mark.integration

POLICY = """
profiles:
  small: {display_name: "Small", cpu_limit: 1, mem_limit: 2G}
groups:
  analysts: {profiles: [small], max_running_apps: 5, max_apps: 10, idle_timeout: 30}
defaults: {profiles: [], max_running_apps: 0, max_apps: 0}
"""
TINY = "import streamlit as st\nst.write('hello')\n"


class Reader(threading.Thread):
    """A viewer with the app open in a tab: one Streamlit session held open until stopped."""

    def __init__(self, url, headers):
        super().__init__(daemon=True)
        self.url, self.headers = url, headers
        self.stop = threading.Event()
        self.opened = threading.Event()

    def run(self):
        async def hold():
            async with websockets.connect(
                self.url, subprotocols=["streamlit"], additional_headers=self.headers
            ) as ws:
                msg = BackMsg()
                msg.rerun_script.query_string = ""
                await ws.send(msg.SerializeToString())
                self.opened.set()
                while not self.stop.is_set():
                    try:
                        await asyncio.wait_for(ws.recv(), 0.5)
                    except TimeoutError:
                        pass

        asyncio.run(hold())


def test_an_unused_app_is_culled_and_a_read_one_is_not(tmp_path):
    with running_hub(tmp_path, policy=POLICY) as hub:
        hub.add_app("alice", "idle", TINY)
        alice = hub.login("alice")
        hub.start_app(alice, "alice", "idle", {"path": "apps/idle/app.py"})
        hub.start_app(alice, "alice", "read", {"path": "apps/idle/app.py"})
        started = time.monotonic()
        hub.open_app(alice, "alice", "read")
        reader = Reader(
            ws_url(hub.app_origin("alice"), "/user/alice/read/"),
            {"Cookie": hub.app_cookie_header(alice, "alice", "read")},
        )
        reader.start()
        assert reader.opened.wait(30)
        try:
            deadline = started + 90
            while time.monotonic() < deadline:
                servers = alice.get(f"{hub.url}/hub/api/users/alice", timeout=10).json()["servers"]
                if "idle" not in servers or not servers["idle"].get("ready"):
                    break
                time.sleep(1)
            culled_after = time.monotonic() - started
            servers = alice.get(f"{hub.url}/hub/api/users/alice", timeout=10).json()["servers"]
            print(f"idle app culled after {culled_after:.0f} s (policy idle_timeout 30 s)")
            assert "idle" not in servers or not servers["idle"].get("ready"), (
                "the unused app was not culled"
            )
            assert culled_after >= 30
            assert servers["read"]["ready"], "the app a viewer is reading was culled"
        finally:
            reader.stop.set()
            reader.join(10)
        admin = hub.api(hub.token("admin"))
        deadline = time.monotonic() + 20
        while True:
            stops = admin.get(
                f"{hub.url}/services/audit/api/events",
                params={"app": "idle", "type": "app_stop"},
                timeout=10,
            ).json()["events"]
            if stops or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert [(e["actor"], e["reason"]) for e in stops] == [("idle-culler", "culler")]
