"""Many apps: 200 named servers across 100 users, started in bursts through the REST API.

A tiny app (one ``st.write``) so one machine holds them all. Reports the spawn throughput
(apps ready per second, per burst and overall) and the hub API's latency (``GET
/hub/api/users/{name}``, p50/p95) measured side by side with no app running and with all
of them running. Everything is bounded: each burst waits at most ``burst_timeout`` seconds,
the whole part stops starting apps at ``deadline`` seconds, and every app is stopped at the
end. ``python -m bench.many_apps [--users 100] [--per-user 2] [--burst 20]`` runs only this part.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.helpers.hub import Hub

TINY = "import streamlit as st\nst.write('tiny')\n"
POLICY = """
profiles:
  small: {display_name: "Small", cpu_limit: 1, mem_limit: 1G}
groups:
  analysts: {profiles: [small], max_running_apps: 5, max_apps: 10}
defaults: {profiles: [], max_running_apps: 0, max_apps: 0}
"""


def _pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def api_latency(hub, token, users, n=200) -> list[float]:
    s = requests.Session()
    s.headers["Authorization"] = f"token {token}"
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        r = s.get(f"{hub.url}/hub/api/users/{users[i % len(users)]}", timeout=30)
        times.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    return times


def run(
    workdir: Path,
    users: int = 100,
    per_user: int = 2,
    burst: int = 20,
    burst_timeout: float = 120,
    deadline: float = 900,
) -> dict:
    started_at = time.monotonic()
    hub = Hub(
        workdir,
        policy=POLICY,
        extra_config="c.JupyterHub.concurrent_spawn_limit = 200\nc.Spawner.poll_interval = 30\n",
    ).start()
    names = [f"user{i:03d}" for i in range(users)]
    out: dict = {"users": users, "apps_wanted": users * per_user, "bursts": []}
    try:
        admin = hub.api(hub.token("admin"))
        admin.post(
            f"{hub.url}/hub/api/users", json={"usernames": names}, timeout=60
        ).raise_for_status()
        admin.post(
            f"{hub.url}/hub/api/groups/analysts/users", json={"users": names}, timeout=60
        ).raise_for_status()
        for name in names:
            folder = hub.home(name) / "apps" / "tiny"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "app.py").write_text(TINY)
        token = hub.token("admin")
        out["api_ms_idle"] = api_latency(hub, token, names)
        targets = [(u, f"app{k}") for k in range(per_user) for u in names]

        def start(target):
            user, app = target
            r = admin.post(
                f"{hub.url}/hub/api/users/{user}/servers/{app}",
                json={"path": "apps/tiny/app.py"},
                timeout=burst_timeout,
            )
            return r.status_code

        def ready_count(batch) -> int:
            model = admin.get(
                f"{hub.url}/hub/api/users", params={"state": "ready", "limit": 1000}, timeout=60
            ).json()
            ready = {
                (u["name"], s)
                for u in model
                for s, srv in (u.get("servers") or {}).items()
                if srv.get("ready")
            }
            return sum(t in ready for t in batch)

        spawn_started = time.monotonic()
        ready_total = 0
        with ThreadPoolExecutor(burst) as pool:
            for i in range(0, len(targets), burst):
                if time.monotonic() - started_at > deadline:
                    out["stopped_early"] = f"deadline {deadline} s reached"
                    break
                batch = targets[i : i + burst]
                t0 = time.monotonic()
                codes = list(pool.map(start, batch))
                while ready_count(batch) < len(batch) and time.monotonic() - t0 < burst_timeout:
                    time.sleep(0.5)
                took = time.monotonic() - t0
                n_ready = ready_count(batch)
                ready_total += n_ready
                out["bursts"].append(
                    {
                        "apps": len(batch),
                        "ready": n_ready,
                        "seconds": took,
                        "statuses": sorted(set(codes)),
                    }
                )
                print(
                    f"burst {len(out['bursts'])}: {n_ready}/{len(batch)} ready in {took:.1f} s",
                    flush=True,
                )
        out["spawn_seconds"] = time.monotonic() - spawn_started
        out["apps_ready"] = ready_total
        out["api_ms_running"] = api_latency(hub, token, names)
        # stop everything, in bursts too
        running = [
            t for b in range(len(out["bursts"])) for t in targets[b * burst : (b + 1) * burst]
        ]

        def stop(target):
            user, app = target
            return admin.delete(
                f"{hub.url}/hub/api/users/{user}/servers/{app}", timeout=120
            ).status_code

        t0 = time.monotonic()
        with ThreadPoolExecutor(burst) as pool:
            list(pool.map(stop, running))
        out["stop_seconds"] = time.monotonic() - t0
    finally:
        out["left_behind"] = hub.stop(timeout=120)
    return out


def table(r: dict) -> list[str]:
    idle, busy = r["api_ms_idle"], r["api_ms_running"]
    per_burst = [b["ready"] / b["seconds"] for b in r["bursts"] if b["seconds"]]
    rate = r["apps_ready"] / r["spawn_seconds"] if r["spawn_seconds"] else 0
    return [
        f"| many apps: {r['apps_ready']} of {r['apps_wanted']} named servers across {r['users']} users "
        f"ready (bursts of {r['bursts'][0]['apps'] if r['bursts'] else 0}), apps/s | {rate:.2f} | "
        f"per burst {min(per_burst, default=0):.2f}–{max(per_burst, default=0):.2f} | | | "
        f"{'all ready' if r['apps_ready'] == r['apps_wanted'] else 'MISSED: not all ready'} |",
        f"| hub API `GET /users/{{name}}` p95 with {r['apps_ready']} apps running (ms) | "
        f"{_pct(busy, 0.95):.1f} | p50 {statistics.median(busy):.1f} | {_pct(idle, 0.95):.1f} "
        f"(p95, no app running) | {_pct(busy, 0.95) / _pct(idle, 0.95):.2f}× | info |",
    ]


def main(argv=None) -> int:
    from tests.helpers import localhost_names

    localhost_names.install()  # apps live on <analyst>.localhost
    ap = argparse.ArgumentParser(prog="python -m bench.many_apps")
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--per-user", type=int, default=2)
    ap.add_argument("--burst", type=int, default=20)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-many-") as tmp:
        r = run(Path(tmp), args.users, args.per_user, args.burst)
    print("\n".join(table(r)))
    print(
        json.dumps(
            {k: v for k, v in r.items() if k not in ("api_ms_idle", "api_ms_running")}, indent=1
        )
    )
    return 1 if r["left_behind"] else 0


if __name__ == "__main__":
    sys.exit(main())
