"""The audit spool and sender: nothing is lost while the service is down, nothing is sent twice
once it answered, and a malformed batch cannot block the spool."""

import asyncio
import json
import socket

from tornado import web

from spawner.audit.client import AuditSender, AuditSpool, new_event


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Service(web.RequestHandler):
    """A tiny stand-in ingest endpoint that can be told to fail."""

    def post(self):
        state = self.settings["state"]
        state["calls"] += 1
        if state["fail"] > 0:
            state["fail"] -= 1
            raise web.HTTPError(503)
        if state.get("status"):
            self.set_status(state["status"])
            self.finish({"message": "refused"})
            return
        body = json.loads(self.request.body)
        assert self.request.headers["Authorization"] == "token secret-token"
        state["ids"].extend(e["id"] for e in body["events"])
        self.finish({"stored": len(body["events"]), "rejected": []})


def _serve(state):
    port = _port()
    app = web.Application([(r"/ingest", _Service)], state=state)
    server = app.listen(port, "127.0.0.1")
    return server, f"http://127.0.0.1:{port}/ingest"


def test_events_survive_outage_and_arrive_once(tmp_path):
    async def main():
        state = {"calls": 0, "fail": 3, "ids": []}
        server, url = _serve(state)
        sender = AuditSender(
            AuditSpool(tmp_path, segment_seconds=0.05), url, "secret-token", batch=50
        )
        sender.max_backoff = 0.2
        sent = [
            new_event("page_view", owner="a", app="b", viewer="c", page=f"p{i}") for i in range(300)
        ]
        for e in sent:
            sender.emit(e)
        for _ in range(200):
            await asyncio.sleep(0.05)
            if not sender.spool.ready() and sender.spool.pending() == 0:
                break
        server.stop()
        return state, [e["id"] for e in sent]

    state, ids = asyncio.run(main())
    assert state["calls"] >= 4  # three failures, then deliveries
    assert sorted(state["ids"]) == sorted(ids)  # every event, exactly once
    assert list(tmp_path.glob("*.jsonl")) == []


def test_a_crash_leaves_events_on_disk_and_the_next_run_sends_them(tmp_path):
    spool = AuditSpool(tmp_path)
    events = [new_event("session_start", owner="a", app="b", viewer="c") for _ in range(5)]
    for e in events:
        spool.append(e)
    spool._file.write(b'{"id": "torn')  # the process died mid-write
    # no rotate(): the process is gone. A new one finds the open segment.

    async def main():
        state = {"calls": 0, "fail": 0, "ids": []}
        server, url = _serve(state)
        sender = AuditSender(AuditSpool(tmp_path), url, "secret-token")
        sender.kick()
        for _ in range(100):
            await asyncio.sleep(0.05)
            if state["ids"]:
                break
        server.stop()
        return state

    state = asyncio.run(main())
    assert state["ids"] == [e["id"] for e in events]


def test_a_refused_batch_is_dropped_not_retried_forever(tmp_path):
    async def main():
        state = {"calls": 0, "fail": 0, "ids": [], "status": 400}
        server, url = _serve(state)
        sender = AuditSender(AuditSpool(tmp_path, segment_seconds=0.05), url, "secret-token")
        sender.emit(new_event("page_view", owner="a", app="b", viewer="c", page="x"))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if state["calls"] and not list(tmp_path.glob("*.jsonl")):
                break
        await asyncio.sleep(0.3)
        server.stop()
        return state

    state = asyncio.run(main())
    assert state["calls"] == 1
    assert list(tmp_path.glob("*.jsonl")) == []


def test_a_full_spool_drops_new_events_and_says_so(tmp_path, caplog):
    spool = AuditSpool(tmp_path, max_bytes=2000)
    kept = sum(
        spool.append(new_event("page_view", owner="a", app="b", viewer="c", page="p" * 50))
        for _ in range(100)
    )
    assert 0 < kept < 100
    assert spool.dropped == 100 - kept
    assert "is full" in caplog.text
