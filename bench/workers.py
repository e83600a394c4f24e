"""Workers per app: 100 concurrent viewers (distinct sign-ins) on one app, workers=1 vs 2.

Rerun p99 (BackMsg rerun -> script_finished, the second rerun of each session, as the
many-viewers row) and reruns per second over the burst's wall time, rounds alternating
between the two apps on one hub. ``python -m bench.workers [--rounds 3] [--viewers 100]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench import viewers
from tests.helpers import localhost_names
from tests.helpers.hub import running_hub
from tests.helpers.streamlit_ws import ws_url

POLICY = """
profiles:
  small: {display_name: "Small", cpu_limit: 2, mem_limit: 8G}
groups:
  analysts: {profiles: [small], max_running_apps: 20, max_apps: 60, max_workers: 2}
defaults: {profiles: [], max_running_apps: 0, max_apps: 0}
"""


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]


def run(tmp: Path, rounds: int, n: int) -> dict:
    out: dict = {}
    with running_hub(tmp, policy=POLICY) as hub:
        alice = hub.login("alice")
        admin = hub.login("admin")
        tokens = []
        for _ in range(n):
            r = admin.post(
                f"{hub.url}/hub/api/users/alice/tokens", json={"expires_in": 3600}, timeout=10
            )
            r.raise_for_status()
            tokens.append({"Authorization": f"token {r.json()['token']}"})
        for workers in (1, 2):
            hub.start_app(
                alice, "alice", f"w{workers}", {"path": "apps/demo/app.py", "workers": workers}
            )
            url = ws_url(hub.app_origin("alice"), f"/user/alice/w{workers}/")
            viewers.many_viewers(url, tokens[:4], sessions=4)  # warm up every worker
            out[workers] = {"rerun_ms": [], "reruns_per_s": [], "errors": []}
        for _ in range(rounds):
            for workers in (1, 2):
                url = ws_url(hub.app_origin("alice"), f"/user/alice/w{workers}/")
                t0 = time.perf_counter()
                times, errors = viewers.many_viewers(url, tokens, sessions=n)
                wall = time.perf_counter() - t0
                row = out[workers]
                row["rerun_ms"] += times
                row["reruns_per_s"].append(2 * len(times) / wall)
                row["errors"] += errors
        for workers in (1, 2):
            hub.stop_app(alice, "alice", f"w{workers}", remove=True)
    return out


def summary(out: dict) -> dict:
    s = {}
    for workers, row in out.items():
        s[workers] = {
            "p50_ms": statistics.median(row["rerun_ms"]) if row["rerun_ms"] else None,
            "p99_ms": p99(row["rerun_ms"]) if row["rerun_ms"] else None,
            "reruns_per_s": statistics.median(row["reruns_per_s"]),
            "errors": len(row["errors"]),
            "first_errors": sorted(set(row["errors"]))[:3],
        }
    s["ratio_p99"] = s[2]["p99_ms"] / s[1]["p99_ms"]
    s["ratio_reruns_per_s"] = s[2]["reruns_per_s"] / s[1]["reruns_per_s"]
    return s


def main(argv=None) -> int:
    localhost_names.install()
    ap = argparse.ArgumentParser(prog="python -m bench.workers")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--viewers", type=int, default=100)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        out = run(Path(tmp), args.rounds, args.viewers)
    print(json.dumps(summary(out), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
