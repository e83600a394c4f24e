"""Bench parts about viewers: websocket reruns, concurrent HTTP, many sessions at once."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time

from tests.helpers.streamlit_ws import run_session


def ws_rerun_times(url: str, headers: dict, reruns: int) -> list[float]:
    """Milliseconds per rerun (BackMsg rerun -> script_finished) on one websocket session."""
    result = asyncio.run(run_session(url, headers, reruns=reruns, timeout=60))
    return [t * 1000 for t in result["times"][1:]]  # the first rerun imports the app's modules


def concurrent_gets(port: int, path: str, headers: dict, connections: int, per_connection: int):
    """req/s over ``connections`` keep-alive connections, each sending ``per_connection``."""
    errors = []

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for _ in range(per_connection):
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                if body != b"ok" or resp.status != 200:
                    errors.append(f"{resp.status} {body[:120]!r}")
        except OSError as e:
            errors.append(repr(e))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = time.perf_counter() - t0
    return connections * per_connection / elapsed, errors


async def _many(url: str, headers, sessions: int, timeout: float):
    async def one(h):
        try:
            r = await run_session(url, h, reruns=2, timeout=timeout)
            return r["times"][-1] * 1000, None
        except Exception as e:  # counted, not raised: the row reports errors
            return None, repr(e)[:120]

    each = headers if isinstance(headers, list) else [headers] * sessions
    return await asyncio.gather(*[one(each[i % len(each)]) for i in range(sessions)])


def many_viewers(url: str, headers, sessions: int = 100, timeout: float = 120):
    """``sessions`` websocket sessions at once on one app: rerun ms per session, and errors.
    ``headers``: one dict for all, or a list (one viewer each: distinct sign-ins, which an app
    with several workers spreads over them)."""
    results = asyncio.run(_many(url, headers, sessions, timeout))
    times = [t for t, e in results if t is not None]
    errors = [e for t, e in results if e is not None]
    return times, errors
