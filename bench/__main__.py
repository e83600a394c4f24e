"""``make bench``: the foundation's performance targets, measured side by side in one run.

Every row is a ratio to a reference measured in the same run on the same machine, with the
median and spread; absolute times alone mean little on a shared, noisy machine.

- spawn: POST start -> first app HTML through the hub, vs bare ``streamlit run`` launch ->
  first HTML (and both -> first ``script_finished`` on a websocket).
- health: GET ``/_stcore/health`` through the hub (CHP -> app server with hub auth), vs the
  same GET through CHP straight to the same Streamlit with no auth and TCP_NODELAY fixed
  (the limit); bare ``streamlit run`` direct (TCP_NODELAY not fixed) is shown for reference.
- memory: RSS of one app server idle and after one session, vs bare ``streamlit run``.
- audit: ingest events/s of the audit service; page-switch rerun latency with audit on vs off
  (``bench/audit.py``).
- the usual alternative: CHP -> jupyter-server-proxy standalone -> Streamlit, from a bench-only
  venv (``bench/jsp_reference.py``): health, req/s, websocket, RSS of its process tree.
- many apps: 200 named servers across 100 users started in bursts through the REST API, with
  the hub API's p95 while they run vs with none (``bench/many_apps.py``).
- publishing: deploy (cold build vs ``uv pip install``, warm vs the upload), first render on a
  per-app environment vs the platform's, disk per app sharing one (``bench/publish.py``).
- start in the browser: headless Chromium, press Start -> the app's first element visible,
  vs a bare ``streamlit run`` in ``.venv-app``; where the hub's time goes
  (``bench/browser_start.py``).

It also writes ``<date>.svg``, the latency distributions as box plots (``bench/plot.py``).

Options: ``--rounds N`` (spawn/memory rounds, default 5), ``--requests N`` (health requests per
target per round, default 200), ``--out DIR`` (default bench-results/).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import requests

from bench import results, streamlit_flags
from tests.helpers import localhost_names
from tests.helpers.hub import REPO, Hub, free_port
from tests.helpers.procs import processes_mentioning
from tests.helpers.streamlit_ws import session, ws_url

CHP = REPO / "node_modules" / ".bin" / "configurable-http-proxy"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no RSS for {pid}")


@contextmanager
def process(cmd, **kw):
    p = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, **kw
    )
    try:
        yield p
    finally:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(5)


def wait_for_html(get, deadline: float) -> float:
    while time.monotonic() < deadline:
        try:
            if get():
                return time.perf_counter()
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.01)
    raise TimeoutError("no HTML before the deadline")


def bare_streamlit(entry: Path, port: int):
    return process(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(entry),
            *streamlit_flags(port),
        ],
        cwd=entry.parent,
    )


def result_row(label, mine, ref, ref_name, ratio, target) -> dict:
    """One measure as the JSON results keep it."""
    return {
        "measure": label,
        "value": mine,
        "reference": ref,
        "reference_name": ref_name,
        "ratio": ratio,
        "target": target,
    }


def app_pid(hub: Hub, server: str) -> int:
    pids = [
        p
        for p in processes_mentioning(f"JUPYTERHUB_SERVER_NAME={server}\0")
        if p in hub.app_processes()
    ]
    if len(pids) != 1:
        raise RuntimeError(f"expected one process for {server}, found {pids}")
    return pids[0]


@contextmanager
def limit_stack(entry: Path, prefix: str):
    """The reference "limit": the same st.App with no auth layer, behind its own CHP.

    Yields (chp_port, direct_port) once the app answers through that proxy.
    """
    direct_port, chp_port, chp_api = free_port(), free_port(), free_port()
    with (
        process(
            [sys.executable, "-m", "bench.bare_app_server", str(entry), str(direct_port), prefix],
            cwd=REPO,
        ),
        process(
            [
                str(CHP),
                "--ip",
                "127.0.0.1",
                "--port",
                str(chp_port),
                "--api-ip",
                "127.0.0.1",
                "--api-port",
                str(chp_api),
                "--default-target",
                f"http://127.0.0.1:{direct_port}",
            ]
        ),
    ):
        wait_for_html(
            lambda: (
                requests.get(f"http://127.0.0.1:{chp_port}{prefix}_stcore/health", timeout=2).text
                == "ok"
            ),
            time.monotonic() + 60,
        )
        yield chp_port, direct_port


def summary(values: list[float]) -> dict:
    v = sorted(values)
    return {
        "n": len(v),
        "median": statistics.median(v),
        "min": v[0],
        "max": v[-1],
        "p99": v[min(len(v) - 1, int(len(v) * 0.99))],
    }


# ---- parts ------------------------------------------------------------------------------
def bench_spawn_and_memory(hub, alice, entry, rounds):
    out = {
        k: []
        for k in (
            "hub_html",
            "hub_render",
            "bare_html",
            "bare_render",
            "hub_rss_idle",
            "hub_rss_session",
            "bare_rss_idle",
            "bare_rss_session",
        )
    }
    for i in range(rounds):
        # bare streamlit run
        port = free_port()
        t0 = time.perf_counter()
        with bare_streamlit(entry, port) as p:
            url = f"http://127.0.0.1:{port}/"
            t_html = wait_for_html(
                lambda url=url: '<div id="root">' in requests.get(url, timeout=2).text,
                time.monotonic() + 60,
            )
            r = session(ws_url(f"http://127.0.0.1:{port}", "/"))
            t_render = time.perf_counter()
            assert r["finished"] == 1
            out["bare_html"].append(t_html - t0)
            out["bare_render"].append(t_render - t0)
            out["bare_rss_session"].append(rss_mb(p.pid))
        with bare_streamlit(entry, free_port()) as p:
            time.sleep(3)
            out["bare_rss_idle"].append(rss_mb(p.pid))

        # the same app through the hub
        name = f"bench{i}"
        app_url = f"{hub.app_origin('alice')}/user/alice/{name}/"

        def hub_html(app_url=app_url):
            r = alice.get(app_url, timeout=5)
            return r.url == app_url and '<div id="root">' in r.text

        t0 = time.perf_counter()
        r = alice.post(
            f"{hub.url}/hub/api/users/alice/servers/{name}",
            json={"path": "apps/demo/app.py"},
            timeout=60,
        )
        assert r.status_code in (201, 202), r.text
        t_html = wait_for_html(hub_html, time.monotonic() + 60)
        res = session(
            ws_url(hub.app_origin("alice"), f"/user/alice/{name}/"),
            {"Cookie": hub.app_cookie_header(alice, "alice", name)},
        )
        t_render = time.perf_counter()
        assert res["finished"] == 1
        out["hub_html"].append(t_html - t0)
        out["hub_render"].append(t_render - t0)
        out["hub_rss_session"].append(rss_mb(app_pid(hub, name)))
        hub.stop_app(alice, "alice", name, remove=True)

        idle = f"idle{i}"
        hub.start_app(alice, "alice", idle, {"path": "apps/demo/app.py"})
        time.sleep(3)
        out["hub_rss_idle"].append(rss_mb(app_pid(hub, idle)))
        hub.stop_app(alice, "alice", idle, remove=True)
    return out


def timed_gets(host: str, port: int, path: str, headers: dict, n: int) -> list[float]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            times.append((time.perf_counter() - t0) * 1000)
            ok = (
                body == b"ok"
                if path.endswith("/_stcore/health")
                else b"<!doctype html>" in body[:4096].lower()
            )
            if resp.status != 200 or not ok:
                raise RuntimeError(f"GET {path}: {resp.status} {body[:80]!r}")
    finally:
        conn.close()
    return times


def started_app(hub, alice, name: str) -> tuple[str, str]:
    """Start alice's demo as ``name``, sign in to it; return its prefix and Cookie header."""
    hub.start_app(alice, "alice", name, {"path": "apps/demo/app.py"})
    hub.open_app(alice, "alice", name)
    return f"/user/alice/{name}/", hub.app_cookie_header(alice, "alice", name)


def bench_health(hub, alice, entry, rounds, n):
    name = "benchhealth"
    prefix, cookie = started_app(hub, alice, name)
    app_host = hub.app_host("alice")
    plain_port = free_port()
    results = {
        "hub": [],
        "chp_limit": [],
        "bare_unfixed_direct": [],
        "hub_index": [],
        "chp_limit_index": [],
    }
    with limit_stack(entry, prefix) as (chp_port, _), bare_streamlit(entry, plain_port):
        wait_for_html(
            lambda: (
                requests.get(f"http://127.0.0.1:{plain_port}/_stcore/health", timeout=2).text
                == "ok"
            ),
            time.monotonic() + 60,
        )
        targets = {
            # through the proxy to the app's own host (alice.localhost), as a browser asks
            "hub": (hub.port, prefix + "_stcore/health", {"Cookie": cookie, "Host": app_host}),
            "chp_limit": (chp_port, prefix + "_stcore/health", {}),
            "bare_unfixed_direct": (plain_port, "/_stcore/health", {}),
            # the app's index page (Streamlit's HTML shell), the other request every visit makes
            "hub_index": (hub.port, prefix, {"Cookie": cookie, "Host": app_host}),
            "chp_limit_index": (chp_port, prefix, {}),
        }
        for port, path, headers in targets.values():
            timed_gets("127.0.0.1", port, path, headers, 20)  # warm up
        for _ in range(rounds):
            for key, (port, path, headers) in targets.items():
                count = n if key != "bare_unfixed_direct" else max(10, n // 10)
                results[key] += timed_gets("127.0.0.1", port, path, headers, count)
    hub.stop_app(alice, "alice", name, remove=True)
    return results


def bench_viewers(hub, alice, entry, rounds, n):
    """Websocket reruns via the hub vs direct; req/s with 10 connections; 100 viewers."""
    from bench import viewers

    name = "benchviewers"
    prefix, cookie_header = started_app(hub, alice, name)
    cookie = {"Cookie": cookie_header}
    out = {"ws_hub": [], "ws_direct": [], "rps_hub": [], "rps_limit": []}
    with limit_stack(entry, prefix) as (chp_port, direct_port):
        for _ in range(rounds):
            out["ws_hub"] += viewers.ws_rerun_times(
                ws_url(hub.app_origin("alice"), prefix), cookie, 11
            )
            out["ws_direct"] += viewers.ws_rerun_times(
                f"ws://127.0.0.1:{direct_port}{prefix}_stcore/stream", {}, 11
            )
            rps, errors = viewers.concurrent_gets(
                hub.port,
                prefix + "_stcore/health",
                {**cookie, "Host": hub.app_host("alice")},
                10,
                n // 2,
            )
            out["rps_hub"].append(rps)
            out.setdefault("rps_hub_errors", []).extend(errors)
            rps, errors = viewers.concurrent_gets(
                chp_port, prefix + "_stcore/health", {}, 10, n // 2
            )
            out["rps_limit"].append(rps)
            out.setdefault("rps_limit_errors", []).extend(errors)
    one_times, _ = viewers.many_viewers(ws_url(hub.app_origin("alice"), prefix), cookie, sessions=1)
    many_times, many_errors = viewers.many_viewers(
        ws_url(hub.app_origin("alice"), prefix), cookie, sessions=100
    )
    out["one_viewer_rerun"] = one_times
    out["hundred_viewers_rerun"] = many_times
    out["hundred_viewers_errors"] = many_errors
    hub.stop_app(alice, "alice", name, remove=True)
    return out


def main(argv=None) -> int:
    localhost_names.install()  # apps live on <analyst>.localhost
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--out", default=str(REPO / "bench-results"))
    ap.add_argument(
        "--only",
        choices=["policy", "publish", "browser"],
        default=None,
        help="run one part only (policy: the quota decision cost, a few seconds; publish: "
        "deploys, per-app environments, bench/publish.py; browser: press Start -> first "
        "element visible in Chromium, bench/browser_start.py)",
    )
    args = ap.parse_args(argv)
    from bench import publish

    if args.only == "publish":
        return publish.main(["--rounds", str(args.rounds), "--out", args.out])
    from bench import browser_start

    if args.only == "browser":
        return browser_start.main(["--rounds", str(args.rounds), "--out", args.out])
    from bench import policy_cost

    policy_rows = policy_cost.run()
    policy_table = [
        "",
        "Quota decision cost (pure, in-process; flat means independent of hub size):",
        "",
        "| users in the hub | median µs per decision | min–max µs |",
        "|---|---|---|",
    ]
    policy_table += [
        f"| {r['users']} | {r['median_us']:.1f} | {r['min_us']:.1f}–{r['max_us']:.1f} |"
        for r in policy_rows
    ]
    if args.only == "policy":
        print("\n".join(policy_table))
        return 0

    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        hub = Hub(Path(tmp)).start()
        try:
            alice = hub.login("alice")
            entry = hub.home("alice") / "apps" / "demo" / "app.py"
            spawn = bench_spawn_and_memory(hub, alice, entry, args.rounds)
            health = bench_health(hub, alice, entry, args.rounds, args.requests)
            viewers_out = bench_viewers(hub, alice, entry, args.rounds, args.requests)
            from bench import audit as audit_bench

            audit_out = audit_bench.run(hub, Path(tmp), args.rounds)
        finally:
            left = hub.stop()
        from bench import many_apps

        many_out = many_apps.run(Path(tmp) / "many")  # its own hub: 200 apps, 100 users
        from bench import jsp_reference

        jsp = jsp_reference.run(
            Path(tmp) / "jsp",
            lambda h: h.home("alice") / "apps" / "demo" / "app.py",
            args.rounds,
            args.requests,
        )
        publish_out = publish.run(Path(tmp) / "publish", args.rounds)
        browser_out = browser_start.run(Path(tmp) / "browser", args.rounds)
    s = {k: summary(v) for k, v in spawn.items()}
    h = {k: summary(v) for k, v in health.items()}
    rows = [
        (
            "spawn: start -> first HTML (s)",
            s["hub_html"],
            s["bare_html"],
            "bare streamlit run",
            1.3,
        ),
        (
            "spawn: start -> first render (s)",
            s["hub_render"],
            s["bare_render"],
            "bare streamlit run",
            1.3,
        ),
        (
            "health p50 via hub (ms)",
            h["hub"],
            h["chp_limit"],
            "CHP -> Streamlit, NODELAY fixed",
            1.3,
        ),
        (
            "bare streamlit run direct, NODELAY not fixed (ms)",
            h["bare_unfixed_direct"],
            h["chp_limit"],
            "CHP -> Streamlit, NODELAY fixed",
            None,
        ),
        (
            "index page p50 via hub (ms)",
            h["hub_index"],
            h["chp_limit_index"],
            "CHP -> Streamlit, NODELAY fixed",
            1.3,
        ),
    ]
    table = [
        "| measure | median | min–max / p99 | reference median | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    result_rows = []
    for label, mine, ref, ref_name, target in rows:
        ratio = mine["median"] / ref["median"]
        met = "" if target is None else ("met" if ratio <= target else "MISSED")
        table.append(
            f"| {label} | {mine['median']:.3f} | {mine['min']:.3f}–{mine['max']:.3f} / "
            f"{mine['p99']:.3f} | {ref['median']:.3f} ({ref_name}) | {ratio:.2f}× | "
            f"{f'≤{target:.2f}× {met}' if target else 'info'} |"
        )
        result_rows.append(result_row(label, mine, ref, ref_name, ratio, target))
    v = {k: summary(viewers_out[k]) for k in ("ws_hub", "ws_direct", "rps_hub", "rps_limit")}
    for label, mine, ref, ref_name, target, higher_is_better in (
        (
            "websocket rerun -> script_finished via hub (ms)",
            v["ws_hub"],
            v["ws_direct"],
            "same app direct, no proxy",
            1.1,
            False,
        ),
        (
            "req/s, 10 keep-alive connections, /_stcore/health via hub",
            v["rps_hub"],
            v["rps_limit"],
            "CHP -> Streamlit, NODELAY fixed",
            0.75,
            True,
        ),
    ):
        ratio = mine["median"] / ref["median"]
        met = (ratio >= target) if higher_is_better else (ratio <= target)
        table.append(
            f"| {label} | {mine['median']:.1f} | {mine['min']:.1f}–{mine['max']:.1f} / "
            f"{mine['p99']:.1f} | {ref['median']:.1f} ({ref_name}) | {ratio:.2f}× | "
            f"{'≥' if higher_is_better else '≤'}{target:.2f}× {'met' if met else 'MISSED'} |"
        )
        result_rows.append(result_row(label, mine, ref, ref_name, ratio, target))
    rps_errors = viewers_out.get("rps_hub_errors", []) + viewers_out.get("rps_limit_errors", [])
    if rps_errors:
        table.append(
            f"| req/s runs: failed requests | {len(rps_errors)} | "
            f"{'; '.join(sorted(set(rps_errors))[:3])} | | | must be 0: MISSED |"
        )
    many = viewers_out["hundred_viewers_rerun"]
    one = viewers_out["one_viewer_rerun"]
    errors = viewers_out["hundred_viewers_errors"]
    if many and one:
        p99 = summary(many)["p99"]
        table.append(
            f"| 100 concurrent viewers, rerun p99 (ms) | {summary(many)['median']:.0f} | "
            f"{summary(many)['min']:.0f}–{summary(many)['max']:.0f} / {p99:.0f} | "
            f"{one[0]:.0f} (1 viewer) | {p99 / one[0]:.1f}× | errors: {len(errors)} "
            f"{'(must be 0) met' if not errors else 'MISSED'} |"
        )
    extra = s["hub_rss_idle"]["median"] - s["bare_rss_idle"]["median"]
    table.append(
        f"| RSS idle (MB) | {s['hub_rss_idle']['median']:.1f} | "
        f"{s['hub_rss_idle']['min']:.1f}–{s['hub_rss_idle']['max']:.1f} | "
        f"{s['bare_rss_idle']['median']:.1f} (bare streamlit run) | {extra:+.1f} MB | "
        f"≤ +10 MB {'met' if extra <= 10 else 'MISSED'} |"
    )
    extra2 = s["hub_rss_session"]["median"] - s["bare_rss_session"]["median"]
    table.append(
        f"| RSS after one session (MB) | {s['hub_rss_session']['median']:.1f} | "
        f"{s['hub_rss_session']['min']:.1f}–{s['hub_rss_session']['max']:.1f} | "
        f"{s['bare_rss_session']['median']:.1f} (bare streamlit run) | {extra2:+.1f} MB | info |"
    )
    js = {k: summary(jsp[k]) for k in ("health", "rps", "ws")}
    for label, mine, ref, higher in (
        (
            "health p50 via hub vs CHP -> jupyter-server-proxy -> Streamlit (ms)",
            h["hub"],
            js["health"],
            False,
        ),
        (
            "req/s, 10 connections, via hub vs via jupyter-server-proxy",
            v["rps_hub"],
            js["rps"],
            True,
        ),
        ("websocket rerun via hub vs via jupyter-server-proxy (ms)", v["ws_hub"], js["ws"], False),
    ):
        ratio = mine["median"] / ref["median"]
        table.append(
            f"| {label} | {mine['median']:.1f} | {mine['min']:.1f}–{mine['max']:.1f} / "
            f"{mine['p99']:.1f} | {ref['median']:.1f} (jupyter-server-proxy {jsp_reference.JSP_VERSION}) | "
            f"{ratio:.2f}× | info ({'higher' if higher else 'lower'} is better) |"
        )
    table.append(
        f"| RSS idle, app server vs jupyter-server-proxy + Streamlit (MB) | "
        f"{s['hub_rss_idle']['median']:.1f} | | {jsp['rss_idle_mb']:.1f} (its process tree) | "
        f"{s['hub_rss_idle']['median'] - jsp['rss_idle_mb']:+.1f} MB | info |"
    )
    table.append(
        f"| RSS after one session, vs jupyter-server-proxy + Streamlit (MB) | "
        f"{s['hub_rss_session']['median']:.1f} | | {jsp['rss_session_mb']:.1f} | "
        f"{s['hub_rss_session']['median'] - jsp['rss_session_mb']:+.1f} MB | info |"
    )
    if jsp["rps_errors"]:
        table.append(
            f"| jupyter-server-proxy req/s runs: failed requests | {len(jsp['rps_errors'])} | | | | info |"
        )
    table += audit_bench.table(audit_out)
    table += many_apps.table(many_out) + publish.table(publish_out)
    table += browser_start.table(browser_out)
    machine = results.machine()
    stamp = dt.datetime.now(dt.UTC)
    md = "\n".join(
        [
            f"# Benchmarks {stamp:%Y-%m-%d %H:%M} UTC",
            "",
            f"Machine: {machine}. Command: `make bench` (rounds={args.rounds}, "
            f"requests={args.requests}). Took {time.time() - started:.0f} s.",
            "",
            *table,
            *policy_table,
        ]
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stamp:%Y-%m-%d}.json").write_text(
        json.dumps(
            {
                "time": stamp.isoformat(),
                "machine": machine,
                "args": vars(args),
                "rows": result_rows,
                "spawn": spawn,
                "health_ms": dict(health.items()),
                "rss_mb": {k: spawn[k] for k in spawn if "rss" in k},
                "policy_decision": policy_rows,
                "viewers": viewers_out,
                "audit": audit_out,
                "many_apps": many_out,
                "jupyter_server_proxy": jsp,
                "publish": publish_out,
                "browser_start": browser_out,
            },
            indent=1,
        )
    )
    (out / f"{stamp:%Y-%m-%d}.md").write_text(md + "\n")
    from bench.plot import latency_svg

    (out / f"{stamp:%Y-%m-%d}.svg").write_text(
        latency_svg(
            [
                (
                    "Spawn: start -> first HTML",
                    "s",
                    {"via the hub": spawn["hub_html"], "bare streamlit run": spawn["bare_html"]},
                ),
                (
                    "GET /_stcore/health, one keep-alive connection",
                    "ms",
                    {
                        "via the hub": health["hub"],
                        "CHP -> Streamlit, NODELAY fixed": health["chp_limit"],
                        "CHP -> jupyter-server-proxy -> Streamlit": jsp["health"],
                    },
                ),
                (
                    "GET index page, one keep-alive connection",
                    "ms",
                    {
                        "via the hub": health["hub_index"],
                        "CHP -> Streamlit, NODELAY fixed": health["chp_limit_index"],
                    },
                ),
                (
                    "Websocket rerun -> script_finished",
                    "ms",
                    {
                        "via the hub": viewers_out["ws_hub"],
                        "same app direct": viewers_out["ws_direct"],
                        "via jupyter-server-proxy": jsp["ws"],
                    },
                ),
                (
                    "Page-switch rerun, audit on vs off",
                    "ms",
                    {
                        "audit on": audit_out["latency"]["on"],
                        "audit off": audit_out["latency"]["off"],
                    },
                ),
            ],
            caption=f"make bench, {stamp:%Y-%m-%d %H:%M} UTC, {machine}",
        )
    )
    print(md)
    left = left + audit_out["latency"]["left_behind"] + many_out["left_behind"] + jsp["left_behind"]
    left += publish_out["left_behind"]
    if left:
        print(f"WARNING: processes left behind: {left}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
