"""Bench parts about the audit trail.

- ingest: events/s the audit service stores, posted in batches of 1,000 with the hub
  recorder's token (the real service of the bench hub, real hub token check, sqlite WAL);
- viewer latency with audit on vs off: the same demo app on two hubs that differ only in
  ``STREAMLIT_HUB_AUDIT``; each rerun switches page, so each is a recorded page view.
  Rounds alternate between the two hubs so drift on a shared machine hits both alike.

``python -m bench.audit`` runs only this part.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import requests

from tests.helpers.hub import Hub
from tests.helpers.procs import processes_mentioning
from tests.helpers.streamlit_ws import run_session, ws_url


def _writer_token(hub) -> str:
    for pid in processes_mentioning("spawner.audit.service"):
        env = open(f"/proc/{pid}/environ", "rb").read()
        if str(hub.data_dir).encode() in env:
            return next(
                e.split(b"=", 1)[1].decode()
                for e in env.split(b"\0")
                if e.startswith(b"JUPYTERHUB_API_TOKEN=")
            )
    raise RuntimeError("the audit service of the bench hub is not running")


def _batch(n: int) -> list[dict]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return [
        {
            "id": uuid.uuid4().hex,
            "time": now,
            "type": "page_view",
            "owner": "alice",
            "app": "bench",
            "viewer": f"viewer{i % 50}",
            "viewer_groups": ["viewers"],
            "page": "Details",
            "session": "s" * 32,
            "client": "127.0.0.1",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) bench",
        }
        for i in range(n)
    ]


def ingest(hub, batches: int = 20, size: int = 1000, senders: int = 2) -> dict:
    """Stored events per second, over ``batches`` POSTs from ``senders`` concurrent senders."""
    url = f"http://127.0.0.1:{hub.audit_port}/services/audit/api/events"
    token = _writer_token(hub)
    bodies = [json.dumps({"events": _batch(size)}) for _ in range(batches)]
    session = requests.Session()
    session.post(
        url,
        data=json.dumps({"events": _batch(10)}),  # warm the token cache
        headers={"Authorization": f"token {token}"},
        timeout=30,
    ).raise_for_status()

    def post(body):
        t0 = time.perf_counter()
        r = requests.post(
            url,
            data=body,
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
            timeout=60,
        )
        r.raise_for_status()
        assert r.json()["stored"] == size, r.text
        return size / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(senders) as pool:
        per_batch = list(pool.map(post, bodies))
    total = batches * size / (time.perf_counter() - t0)
    return {
        "events_per_s_overall": total,
        "events_per_s_per_batch": per_batch,
        "batches": batches,
        "batch_size": size,
        "senders": senders,
    }


def page_switch_times(hub, alice, name: str, reruns: int) -> list[float]:
    """ms per rerun (rerun -> script_finished), each rerun on the other page of the demo."""
    prefix = f"/user/alice/{name}/"
    headers = {"Cookie": hub.app_cookie_header(alice, "alice", name)}
    pages = ["", "Details"] * (reruns // 2 + 1)
    result = asyncio.run(
        run_session(
            ws_url(hub.app_origin("alice"), prefix), headers, pages=pages[: reruns + 1], timeout=60
        )
    )
    return [t * 1000 for t in result["times"][1:]]  # the first run imports the app's modules


def latency_on_off(hub_on, workdir: Path, rounds: int = 5, reruns: int = 20) -> dict:
    hub_off = Hub(workdir / "audit-off", env={"STREAMLIT_HUB_AUDIT": "off"}).start()
    try:
        apps = []
        for hub in (hub_on, hub_off):
            alice = hub.login("alice")
            hub.start_app(alice, "alice", "benchaudit", {"path": "apps/demo/app.py"})
            hub.open_app(alice, "alice", "benchaudit")
            apps.append((hub, alice))
        out = {"on": [], "off": []}
        for _ in range(rounds):
            for key, (hub, alice) in zip(("on", "off"), apps, strict=False):
                out[key] += page_switch_times(hub, alice, "benchaudit", reruns)
        for hub, alice in apps:
            hub.stop_app(alice, "alice", "benchaudit", remove=True)
    finally:
        left = hub_off.stop()
    out["left_behind"] = left
    return out


def run(hub, workdir: Path, rounds: int = 5) -> dict:
    return {"ingest": ingest(hub), "latency": latency_on_off(hub, workdir, rounds)}


def table(result: dict) -> list[str]:
    ing = result["ingest"]
    per = ing["events_per_s_per_batch"]
    rows = [
        f"| audit ingest, events/s ({ing['senders']} senders, batches of {ing['batch_size']}) | "
        f"{ing['events_per_s_overall']:.0f} | per batch {min(per):.0f}–{max(per):.0f} | "
        f"2000 (target) | {ing['events_per_s_overall'] / 2000:.2f}× | ≥2000/s "
        f"{'met' if ing['events_per_s_overall'] >= 2000 else 'MISSED'} |"
    ]
    lat = result["latency"]
    # Reruns alternate Details / main page (each a page view); the two pages' times differ
    # tenfold, so each page is compared with itself.
    for label, start in (("Details page", 0), ("main page (dataframe + chart)", 1)):
        on, off = lat["on"][start::2], lat["off"][start::2]
        ratio = statistics.median(on) / statistics.median(off)
        rows.append(
            f"| rerun switching to the {label}, audit on (ms) | {statistics.median(on):.1f} | "
            f"{min(on):.1f}–{max(on):.1f} | {statistics.median(off):.1f} (audit off) | "
            f"{ratio:.3f}× | ≤1.05× {'met' if ratio <= 1.05 else 'MISSED'} |"
        )
    return rows


def main() -> int:
    from tests.helpers import localhost_names

    localhost_names.install()  # apps live on <analyst>.localhost
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        hub = Hub(Path(tmp) / "on").start()
        try:
            result = run(hub, Path(tmp))
        finally:
            left = hub.stop()
    print("\n".join(table(result)))
    return 1 if left or result["latency"]["left_behind"] else 0


if __name__ == "__main__":
    sys.exit(main())
