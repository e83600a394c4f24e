"""What a person waits for (#17.4): press Start -> the app's first element visible, in Chromium.

Both sides run in the same headless Chromium (Debian's, through Playwright), in one run, in
alternating order, each round in a fresh browser context (no cache, no cookies):

- **via the hub**: alice, signed in, on the start form of a new app of hers (a copy of the
  demo, so the form shows: a restart from the hub's pages starts without one), on a real hub
  with the real proxy in local mode (the app server runs in ``.venv-app``). The clock starts
  at the form's ``submit`` event (``Date.now()`` in the page) and stops when the app's first
  element, the ``<h1>`` "Sales demo", is in the page with a size (``performance.timeOrigin +
  performance.now()``, a MutationObserver). In between: the start POST (JupyterHub holds it
  up to 1 s for the start to finish), the progress page if the start took longer, the
  redirects to the app and through OAuth, Streamlit's page, its scripts, its websocket and
  the first script run.
- **bare**: ``streamlit run`` of the same file with ``.venv-app``'s Python (the lean app
  environment: Streamlit and the app server's few needs, no JupyterHub), on 127.0.0.1. The
  clock starts just before the process is launched; the bench asks ``/_stcore/health`` every
  10 ms (as ``streamlit run`` opens a browser once it listens) and then opens the page.

Two more, per round, on the same hub: an app whose start the hub holds 1.5 s (as an image
pull would), so the progress page shows: from the spawn's end to the browser asking for the
app (the progress page's redirect); and carol waking alice's stopped app from the page for a
stopped shared app: from the start request's 201 to her browser asking for the app.

Both clocks are the machine's wall clock (the page's and Python's), so they compare.

Where the hub's time goes is taken from the same round: the browser's own request timings
(``Request.timing``: every navigation, redirect, the event stream) and the hub's log (the
spawner's steps, the proxy route). ``phases()`` lays them out, relative to the click.

Also measured: the wall time of ``python -c "import …"`` of Streamlit and of the app server
in ``.venv-app``, less a bare interpreter's: the most a warm process that forks app servers
(a zygote) would save per start.

``BENCH_BROWSER_TRACE=1`` prints every round's timeline (requests, hub log steps, marks).

``python -m bench.browser_start --rounds 5`` runs it alone; ``make bench`` runs it too.
Bounded: at most ``MAX_ROUNDS`` rounds and ``deadline`` seconds; every process it starts is
stopped (the hub's ``stop()`` reports any left behind).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench import results, streamlit_flags
from tests.helpers.hub import REPO, Hub, free_port

MAX_ROUNDS = 10
APP_PYTHON = REPO / ".venv-app" / "bin" / "python"
HEADING = "Sales demo"

# In every page of the context: the form's submit time, and when the app's first element
# (its <h1>) is in the page with a size. Both as wall-clock milliseconds.
MARKS = """
(() => {
  document.addEventListener('submit', () => window.benchMark('submit', Date.now(), ''), true);
  let seen = false;
  const look = () => {
    if (seen) return;
    for (const h of document.getElementsByTagName('h1')) {
      if (h.textContent.includes(HEADING) && h.getBoundingClientRect().height > 0) {
        seen = true;
        window.benchMark('visible', performance.timeOrigin + performance.now(), location.href);
        return;
      }
    }
  };
  new MutationObserver(look).observe(document, {childList: true, subtree: true});
})();
""".replace("HEADING", json.dumps(HEADING))

# Apps named slow*: the hub holds their start 1.5 s before the spawner runs, as a slow image
# pull or pod scheduling would, so the progress page shows (JupyterHub shows it only for
# starts slower than 1 s) and its redirect once the app is ready can be timed.
SLOW_APPS = """
import asyncio

async def _bench_hold_slow_apps(spawner):
    if spawner.name.startswith("slow"):
        await asyncio.sleep(1.5)

c.Spawner.pre_spawn_hook = _bench_hold_slow_apps
"""

# JupyterHub's log line: "[I 2026-11-29 06:51:15.123 JupyterHub module:line] message"
LOG_LINE = re.compile(r"^\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) [^\]]*\] (.*)$")
LOG_STEPS = {
    "validating": "Validating the app and its options",
    "launching": "Starting Streamlit for",
    "waiting": "Waiting for the app to answer",
    "app ready": "App is ready",
    "hub took": "seconds to start",
    "route added": "Adding user alice to proxy",
}


def _marks(page) -> list:
    marks: list = []
    page.expose_function("benchMark", lambda kind, t, url: marks.append((kind, t / 1000, url)))
    page.add_init_script(MARKS)
    return marks


def _wait_mark(page, marks: list, kind: str, deadline: float) -> float:
    while time.monotonic() < deadline:
        for k, t, _ in marks:
            if k == kind:
                return t
        page.wait_for_timeout(10)
    raise TimeoutError(f"no {kind!r} mark before the deadline")


def _requests_log(context) -> list:
    """Every finished (or failed) request of the context, with the browser's own timings."""
    seen: list = []

    def done(r, failed=False):
        timing = r.timing
        start = timing.get("startTime", -1)
        end = timing.get("responseEnd", -1)
        first = timing.get("responseStart", -1)
        seen.append(
            {
                "url": r.url,
                "method": r.method,
                "type": r.resource_type,
                "start": start / 1000 if start > 0 else None,
                "end": (start + end) / 1000 if start > 0 and end >= 0 else None,
                "first_byte": (start + first) / 1000 if start > 0 and first >= 0 else None,
                "failed": failed,
            }
        )

    context.on("requestfinished", done)
    context.on("requestfailed", lambda r: done(r, failed=True))
    return seen


def hub_steps(log_path: Path, since: float) -> dict[str, float]:
    """Wall-clock times of the start's steps in the hub's log (the first after ``since``)."""
    steps: dict[str, float] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        m = LOG_LINE.match(line)
        if not m:
            continue
        t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        if t < since - 0.01:
            continue
        for key, needle in LOG_STEPS.items():
            if key not in steps and needle in m.group(2):
                steps[key] = t
    return steps


def phases(t0: float, visible: float, reqs: list, steps: dict) -> dict[str, float]:
    """The hub's round, laid out as seconds after the click (where the time went)."""
    out = {"visible": visible - t0}
    for key, t in steps.items():
        out[f"hub: {key}"] = t - t0
    first = {}
    for r in sorted((r for r in reqs if r["start"] and r["start"] >= t0), key=lambda r: r["start"]):
        path = re.sub(r"^https?://[^/]+", "", r["url"]).split("?")[0]
        for key, pattern in (
            ("POST /hub/spawn", r"^/hub/spawn/"),
            ("progress page", r"^/hub/spawn-pending/"),
            ("event stream", r"/progress$"),
            ("app, before sign-in", r"^/user/alice/[^/]+/$"),
            ("oauth authorize", r"/oauth2/authorize$"),
            ("oauth callback", r"/oauth_callback$"),
            ("streamlit js", r"^/user/.*/static/js/.*\.js$"),
            ("websocket", r"/_stcore/stream$"),
        ):
            if re.search(pattern, path) and (r["method"] == "POST") == key.startswith("POST"):
                n = sum(1 for k in first if k.startswith(key))
                name = key if n == 0 else f"{key} #{n + 1}"
                if key == "streamlit js" and n:
                    break
                first[name] = r
                break
    for name, r in first.items():
        out[f"{name} sent"] = r["start"] - t0
        if r["end"] is not None and name != "event stream":
            out[f"{name} answered"] = r["end"] - t0
    if "event stream" in first and first["event stream"]["end"] is not None:
        out["event stream closed"] = first["event stream"]["end"] - t0
    return dict(sorted(out.items(), key=lambda kv: kv[1]))


def import_seconds(rounds: int = 3) -> dict[str, list[float]]:
    """Wall time of importing Streamlit, and the app server, in a fresh ``.venv-app`` Python
    (the most a warm forking process could save per start), and of a bare interpreter."""
    out: dict[str, list[float]] = {"python": [], "streamlit": [], "app_server": []}
    code = {
        "python": "pass",
        "streamlit": "import streamlit, streamlit.web.bootstrap",
        "app_server": "import spawner.app_server.launcher, streamlit.web.bootstrap",
    }
    for _ in range(rounds):
        for key, c in code.items():
            t0 = time.perf_counter()
            subprocess.run([str(APP_PYTHON), "-c", c], cwd=REPO, check=True, capture_output=True,
                           timeout=120)  # fmt: skip
            out[key].append(time.perf_counter() - t0)
    return out


def trace(t0: float, reqs: list, steps: dict, marks: list) -> None:
    """Print one round's timeline (``BENCH_BROWSER_TRACE=1``), seconds after ``t0``."""
    lines = [(r["start"], f"{r['end'] - t0:6.3f}" if r["end"] else "   -  ",
              f"{r['method']} {r['type']} {r['url'][:110]}")
             for r in reqs if r["start"] and r["start"] >= t0 and "/static/" not in r["url"]]  # fmt: skip
    lines += [(t, "", f"hub log: {k}") for k, t in steps.items()]
    lines += [(t, "", f"mark {k} {url}") for k, t, url in marks]
    for t, end, what in sorted(lines):
        print(f"{t - t0:6.3f} {end:>6} {what}")


def bare_round(browser, entry: Path, deadline: float) -> float:
    from bench.__main__ import process

    port = free_port()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        marks = _marks(page)
        reqs = _requests_log(context)
        t0 = time.time()
        with process([str(APP_PYTHON), "-m", "streamlit", "run", str(entry),
                      *streamlit_flags(port)], cwd=entry.parent):  # fmt: skip
            health = f"http://127.0.0.1:{port}/_stcore/health"
            while True:
                try:
                    if requests.get(health, timeout=2).text == "ok":
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("bare streamlit run did not answer")
                time.sleep(0.01)
            t_health = time.time()
            page.goto(f"http://127.0.0.1:{port}/", wait_until="commit")
            visible = _wait_mark(page, marks, "visible", deadline)
            if os.environ.get("BENCH_BROWSER_TRACE"):
                page.wait_for_timeout(300)
                print(f"bare: health ok at {t_health - t0:.3f}")
                trace(t0, reqs, {}, marks)
            return visible - t0
    finally:
        context.close()


def new_app(hub: Hub, name: str) -> Path:
    """A new app of alice's, ``name``, a copy of the demo: its first start shows the form."""
    demo = hub.home("alice") / "apps" / "demo"
    folder = hub.home("alice") / "apps" / name
    shutil.copytree(demo, folder, ignore=shutil.ignore_patterns("__pycache__"))
    hub.hand_over("alice", folder)
    return folder / "app.py"


def hub_round(browser, hub: Hub, alice, name: str, deadline: float) -> tuple[float, dict]:
    from tests.browser.conftest import sign_in

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        marks = _marks(page)
        reqs = _requests_log(context)
        sign_in(page, hub, "alice")
        page.goto(f"{hub.url}/hub/spawn/alice/{name}")
        start = page.get_by_role("button", name="Start")
        try:
            start.wait_for(timeout=30_000)
        except Exception:
            print(page.url, page.inner_text("body")[:2000], file=sys.stderr)
            raise
        page.wait_for_timeout(200)  # let the form page settle, as a person reads it
        marks.clear()  # the sign-in form's submit is not the start
        start.click(no_wait_after=True)
        t0 = _wait_mark(page, marks, "submit", deadline)
        visible = _wait_mark(page, marks, "visible", deadline)
        page.wait_for_timeout(300)  # the last request timings arrive
        steps = hub_steps(hub.log_path, t0)
        if os.environ.get("BENCH_BROWSER_TRACE"):
            trace(t0, reqs, steps, marks)
        return visible - t0, phases(t0, visible, reqs, steps)
    finally:
        context.close()
        hub.stop_app(alice, "alice", name, remove=True)


def wake_round(browser, hub: Hub, alice, name: str, deadline: float) -> float:
    """Carol, who may wake alice's stopped app ``name``, presses its Start: seconds from the
    start request's answer arriving (201: it runs) to her browser asking for the app."""
    from tests.browser.conftest import sign_in

    r = alice.post(
        f"{hub.url}/hub/api/shares/alice/{name}",
        json={
            "user": "carol",
            "scopes": [f"access:servers!server=alice/{name}", f"start:servers!server=alice/{name}"],
        },
        timeout=30,
    )
    r.raise_for_status()
    hub.stop_app(alice, "alice", name)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        reqs = _requests_log(context)
        sign_in(page, hub, "carol")
        page.goto(f"{hub.url}/user/alice/{name}/")
        page.get_by_role("button", name="Start alice’s app").click()
        start_url = f"/hub/api/users/alice/servers/{name}"
        app_path = f"/user/alice/{name}/"
        while time.monotonic() < deadline:
            started = [q for q in reqs if q["method"] == "POST" and start_url in q["url"]]
            opened = [q for q in reqs if q["type"] == "document" and app_path in q["url"]
                      and started and q["start"] and q["start"] > started[0]["start"]]  # fmt: skip
            if started and started[0]["first_byte"] and opened:
                return opened[0]["start"] - started[0]["first_byte"]
            page.wait_for_timeout(20)
        raise TimeoutError(f"carol's browser did not open {name}")
    finally:
        context.close()
        hub.stop_app(alice, "alice", name, remove=True)


def run(workdir: Path, rounds: int = 5, deadline: float = 600) -> dict:
    from tests.helpers.chromium import launched_chromium

    rounds = max(1, min(rounds, MAX_ROUNDS))
    end = time.monotonic() + deadline
    out: dict = {"rounds": rounds, "hub_s": [], "bare_s": [], "phases": [], "load": [],
                 "slow_s": [], "slow_phases": [], "ready_to_app_s": [],
                 "wake_201_to_app_s": []}  # fmt: skip
    hub = Hub(workdir / "hub", extra_config=SLOW_APPS).start()
    try:
        alice = hub.login("alice")
        # not measured: the first start makes alice's home and app account, and warms the
        # disk cache for both sides
        hub.start_app(alice, "alice", "demo", {"path": "apps/demo/app.py"})
        hub.stop_app(alice, "alice", "demo")
        entry = hub.home("alice") / "apps" / "demo" / "app.py"
        with launched_chromium() as browser:
            bare_round(browser, entry, time.monotonic() + 60)
            for i in range(rounds):
                if time.monotonic() > end:
                    out["stopped_early"] = f"deadline {deadline} s reached after {i} rounds"
                    break
                out["load"].append(os.getloadavg()[0])

                name = f"cold{i}"
                new_app(hub, name)

                def on_hub(name=name):
                    took, ph = hub_round(browser, hub, alice, name, time.monotonic() + 90)
                    out["hub_s"].append(took)
                    out["phases"].append(ph)

                def on_bare():
                    out["bare_s"].append(bare_round(browser, entry, time.monotonic() + 90))

                for step in (on_hub, on_bare) if i % 2 == 0 else (on_bare, on_hub):
                    step()
                # the progress page: from the hub's "took … to start" (the route is added
                # next, then the ready event is sent) to the browser asking for the app
                slow = f"slow{i}"
                new_app(hub, slow)
                took, ph = hub_round(browser, hub, alice, slow, time.monotonic() + 90)
                out["slow_s"].append(took)
                out["slow_phases"].append(ph)
                if "hub: hub took" in ph and "app, before sign-in sent" in ph:
                    out["ready_to_app_s"].append(
                        ph["app, before sign-in sent"] - ph["hub: hub took"]
                    )
                # a viewer waking it (the page for a stopped shared app)
                wake = f"wake{i}"
                new_app(hub, wake)
                hub.start_app(alice, "alice", wake)
                out["wake_201_to_app_s"].append(
                    wake_round(browser, hub, alice, wake, time.monotonic() + 90)
                )
                print(
                    f"round {i + 1}/{rounds}: hub {out['hub_s'][-1]:.2f} s, bare "
                    f"{out['bare_s'][-1]:.2f} s (load {out['load'][-1]:.2f})",
                    flush=True,
                )
        out["imports_s"] = import_seconds()
    finally:
        out["left_behind"] = hub.stop(timeout=60)
    return out


def median_phases(all_phases: list[dict]) -> dict[str, float]:
    keys = {k for p in all_phases for k in p}
    med = {
        k: statistics.median([p[k] for p in all_phases if k in p])
        for k in keys
        if sum(1 for p in all_phases if k in p) * 2 > len(all_phases)
    }
    return dict(sorted(med.items(), key=lambda kv: kv[1]))


def table(r: dict) -> list[str]:
    hub, bare = r["hub_s"], r["bare_s"]
    ratio = statistics.median(hub) / statistics.median(bare)
    rows = [
        f"| Chromium: press Start -> first element visible, cold (s) | "
        f"{statistics.median(hub):.2f} | {min(hub):.2f}–{max(hub):.2f} | "
        f"{statistics.median(bare):.2f} (bare `streamlit run` in .venv-app, launch -> first "
        f"element) | {ratio:.2f}× | ≤1.30× {'met' if ratio <= 1.3 else 'MISSED'} |",
        f"| Chromium: the hub's share of that wait (s) | "
        f"{statistics.median(hub) - statistics.median(bare):+.2f} | | | | info |",
    ]
    if r.get("ready_to_app_s"):
        ready = [1000 * v for v in r["ready_to_app_s"]]
        rows.append(
            f"| progress page shown (start held 1.5 s): app ready -> the browser asks for the "
            f"app (ms) | {statistics.median(ready):.0f} | {min(ready):.0f}–{max(ready):.0f} | | "
            f"| info (start -> visible {statistics.median(r['slow_s']):.2f} s) |"
        )
    if r.get("wake_201_to_app_s"):
        wake = [1000 * v for v in r["wake_201_to_app_s"]]
        rows.append(
            f"| a viewer wakes a stopped app: the start request's 201 -> the browser asks for "
            f"the app (ms) | {statistics.median(wake):.0f} | {min(wake):.0f}–{max(wake):.0f} | "
            f"| | info |"
        )
    imp = {k: statistics.median(v) for k, v in r.get("imports_s", {}).items()}
    if imp:
        rows.append(
            f"| import in .venv-app: Streamlit / the app server, less a bare interpreter (s) | "
            f"{imp['streamlit'] - imp['python']:.2f} / {imp['app_server'] - imp['python']:.2f} | "
            f"| {imp['python']:.2f} (python -c pass) | | info: most a zygote could save |"
        )
    return rows


def phase_lines(r: dict) -> list[str]:
    return [f"- {v:6.2f} s  {k}" for k, v in median_phases(r["phases"]).items()]


def main(argv=None) -> int:
    from tests.helpers import localhost_names

    localhost_names.install()
    ap = argparse.ArgumentParser(prog="python -m bench.browser_start")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "bench-results"))
    args = ap.parse_args(argv)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-browser-") as tmp:
        r = run(Path(tmp), args.rounds)
    machine = results.machine()
    stamp = dt.datetime.now(dt.UTC)
    load = r["load"]
    md = "\n".join(
        [
            f"# Start in the browser {stamp:%Y-%m-%d %H:%M} UTC",
            "",
            f"Machine: {machine}. Command: `python -m bench --only browser --rounds "
            f"{args.rounds}`. Took {time.time() - t0:.0f} s. Load average (1 min) "
            f"{min(load):.1f}–{max(load):.1f}.",
            "",
            "| measure | median | min–max | reference median | ratio | target |",
            "|---|---|---|---|---|---|",
            *table(r),
            "",
            "Via the hub, median seconds after the click:",
            "",
            *phase_lines(r),
            "",
            "Progress page shown (start held 1.5 s), median seconds after the click:",
            "",
            *[f"- {v:6.2f} s  {k}" for k, v in median_phases(r["slow_phases"]).items()],
        ]
    )
    return results.write(args.out, "browser", stamp, md, r)


if __name__ == "__main__":
    sys.exit(main())
