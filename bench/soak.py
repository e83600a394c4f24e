"""``make soak``: many viewers for minutes on a few apps through the hub (opt-in, bounded).

Defaults: 200 concurrent viewers, 300 s, 3 apps. Each viewer holds a Streamlit websocket
session through the hub and reruns the app every ``--every`` seconds, with an HTTP health
check in between. Reports failed requests (must be 0), rerun latency, and each app server's
RSS at the start, the middle and the end. Everything stops by itself at the deadline.

    python -m bench.soak [--viewers 200] [--seconds 300] [--apps 3] [--every 15]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.__main__ import app_pid, rss_mb
from tests.helpers.hub import Hub
from tests.helpers.streamlit_ws import ws_url

LIGHT_APP = """
import streamlit as st
st.title("Soak")
st.write("Hello, viewer.")
"""


async def viewer(url, health, cookie, deadline, every, stats):
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    rerun = BackMsg()
    rerun.rerun_script.query_string = ""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(random.uniform(0, every))  # spread the connects
    try:
        async with websockets.connect(
            url, subprotocols=["streamlit"], additional_headers={"Cookie": cookie}, open_timeout=30
        ) as ws:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                await ws.send(rerun.SerializeToString())
                while True:
                    msg = ForwardMsg()
                    msg.ParseFromString(await asyncio.wait_for(ws.recv(), 60))
                    if msg.WhichOneof("type") == "script_finished":
                        break
                stats["reruns"].append((time.perf_counter() - t0) * 1000)
                r = await loop.run_in_executor(
                    None, lambda: requests.get(health, headers={"Cookie": cookie}, timeout=30)
                )
                stats["requests"] += 2
                if (r.status_code, r.text) != (200, "ok"):
                    stats["failures"].append(f"health {r.status_code}")
                await asyncio.sleep(every * random.uniform(0.8, 1.2))
    except Exception as e:  # counted: the report says what failed
        stats["failures"].append(repr(e)[:160])


async def run(hub, alice, names, viewers, seconds, every):
    deadline = time.monotonic() + seconds
    stats = {"reruns": [], "requests": 0, "failures": []}
    cookies = {n: hub.app_cookie_header(alice, "alice", n) for n in names}
    tasks = []
    for i in range(viewers):
        n = names[i % len(names)]
        tasks.append(
            viewer(
                ws_url(hub.app_origin("alice"), f"/user/alice/{n}/"),
                f"{hub.app_origin('alice')}/user/alice/{n}/_stcore/health",
                cookies[n],
                deadline,
                every,
                stats,
            )
        )
    rss = {"start": {n: rss_mb(app_pid(hub, n)) for n in names}}

    async def midpoint():
        await asyncio.sleep(seconds / 2)
        rss["middle"] = {n: rss_mb(app_pid(hub, n)) for n in names}

    await asyncio.gather(midpoint(), *tasks)
    rss["end"] = {n: rss_mb(app_pid(hub, n)) for n in names}
    return stats, rss


def main(argv=None) -> int:
    from tests.helpers import localhost_names

    localhost_names.install()  # apps live on <analyst>.localhost
    ap = argparse.ArgumentParser(prog="python -m bench.soak")
    ap.add_argument("--viewers", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--apps", type=int, default=3)
    ap.add_argument("--every", type=float, default=15)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        hub = Hub(Path(tmp)).start()
        try:
            alice = hub.login("alice")
            names = [f"soak{i}" for i in range(args.apps)]
            for n in names:
                hub.add_app("alice", n, LIGHT_APP)
                hub.start_app(alice, "alice", n)
                hub.open_app(alice, "alice", n)
            stats, rss = asyncio.run(run(hub, alice, names, args.viewers, args.seconds, args.every))
        finally:
            left = hub.stop()
    reruns = sorted(stats["reruns"])
    p99 = reruns[int(len(reruns) * 0.99) - 1] if reruns else float("nan")
    print(
        f"soak: {args.viewers} viewers, {args.seconds:.0f} s, {args.apps} apps, rerun every ~{args.every:.0f} s"
    )
    print(
        f"requests: {stats['requests']} (reruns {len(reruns)} + health checks), "
        f"failed: {len(stats['failures'])}"
    )
    if reruns:
        print(
            f"rerun ms: median {statistics.median(reruns):.1f}, p99 {p99:.1f}, max {reruns[-1]:.1f}"
        )
    for n in rss["start"]:
        print(
            f"RSS {n}: start {rss['start'][n]:.1f} MB, middle {rss['middle'][n]:.1f} MB, "
            f"end {rss['end'][n]:.1f} MB (growth {rss['end'][n] - rss['start'][n]:+.1f} MB)"
        )
    for f in sorted(set(stats["failures"]))[:10]:
        print("failure:", f)
    return 0 if not stats["failures"] and not left else 1


if __name__ == "__main__":
    sys.exit(main())
