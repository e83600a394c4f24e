"""The app status and output APIs (spawner/app_output.py) and the spawner's public progress
snapshot they read (StreamlitSpawnerMixin.progress_snapshot), with stand-ins for the hub's
handler and user; tests/integration/test_app_access.py asks a real hub."""

import asyncio
import json
from types import SimpleNamespace

import pytest
from tornado import web

from spawner.app_output import AppOutputAPIHandler, AppStatusAPIHandler
from spawner.mixin import StartProgress
from tests.unit.test_spawner_policy import AppSpawner, User


class Spawner(AppSpawner):
    ready = False  # the hub's view of the server, set by each test

    def app_failure_details(self):
        return "line 1\nTraceback: boom"


def app(**attrs):
    sp = Spawner(
        user=User("alice", []),
        orm_spawner=SimpleNamespace(name="demo", user_options=None, state=None, server=None),
    )
    for k, v in attrs.items():
        setattr(sp, k, v)
    return sp


LOOP = asyncio.new_event_loop()


def future(outcome):
    f = LOOP.create_future()
    if outcome == "failed":
        f.set_exception(RuntimeError("boom"))
    elif outcome == "cancelled":
        f.cancel()
    elif outcome == "done":
        f.set_result(None)
    return f


# ---- the snapshot -----------------------------------------------------------------------------
def test_nothing_started_yet():
    assert app().progress_snapshot() == StartProgress(None, None, False)


def test_a_start_the_hub_asked_for_that_has_not_begun():
    sp = app(_spawn_pending=True)
    assert sp.progress_snapshot() == StartProgress(2, "Preparing to start", False)


def test_the_latest_step_of_a_start():
    sp = app(_spawn_pending=True)
    sp._emit(10, "Validating the app and its options")
    sp._emit(30, "Starting Streamlit for demo")
    assert sp.progress_snapshot() == StartProgress(30, "Starting Streamlit for demo", False)
    sp._spawn_pending = False  # the steps stay until the next start or stop
    assert sp.progress_snapshot() == StartProgress(30, "Starting Streamlit for demo", False)


def test_a_stop_forgets_the_steps():
    sp = app()
    sp._emit(100, "App is ready")
    asyncio.run(sp.stop())
    assert sp.progress_snapshot() == StartProgress(None, None, False)


@pytest.mark.parametrize(
    "outcome, ready, failed",
    [
        ("failed", False, True),
        ("failed", True, False),  # running after all (a later start): not failed
        ("cancelled", False, False),
        ("done", False, False),
        ("pending", False, False),
    ],
)
def test_a_failed_start(outcome, ready, failed):
    sp = app(_spawn_future=future(outcome), ready=ready)
    sp._emit(60, "Waiting for the app to answer")
    assert sp.progress_snapshot() == StartProgress(60, "Waiting for the app to answer", failed)


# ---- the APIs ---------------------------------------------------------------------------------
class Handler:
    """The hub's side of the two handlers: who asks, with which scopes, and the answer."""

    current_user = None  # the hub's property, replaced by a plain attribute

    def __init__(self, scopes=(), users=None, signed_in=True):
        self.current_user = SimpleNamespace(name="carol") if signed_in else None
        self._granted, self._known = set(scopes), users or {}
        self.asked, self.headers, self.body = [], {}, []

    def has_scope(self, scope):
        self.asked.append(scope)
        return scope in self._granted

    def find_user(self, name):
        return self._known.get(name)

    def set_header(self, name, value):
        self.headers[name] = value

    def write(self, chunk):
        self.body.append(chunk)


class Status(Handler, AppStatusAPIHandler):
    pass


class Output(Handler, AppOutputAPIHandler):
    pass


def owner_of(sp):
    return SimpleNamespace(orm_spawners={"demo": object()}, spawners={"demo": sp})


def answer(handler):
    (body,) = handler.body
    assert handler.headers == {"Content-Type": "application/json", "Cache-Control": "no-store"}
    return json.loads(body)


def test_the_status_of_a_starting_app_for_a_viewer_who_may_start_it():
    sp = app(_spawn_pending=True)
    sp._emit(30, "Starting Streamlit for demo")
    h = Status(["start:servers!server=alice/demo"], {"alice": owner_of(sp)})
    asyncio.run(h.get("alice", "demo"))
    assert answer(h) == {
        "app": "demo",
        "owner": "alice",
        "ready": False,
        "pending": "spawn",
        "progress": 30,
        "message": "Starting Streamlit for demo",
        "failed": False,
    }


def test_the_status_of_a_failed_app_for_its_owner():
    sp = app(_spawn_future=future("failed"))
    h = Status(["read:servers!server=alice/demo"], {"alice": owner_of(sp)})
    asyncio.run(h.get("alice", "demo"))
    assert answer(h) == {
        "app": "demo",
        "owner": "alice",
        "ready": False,
        "pending": None,
        "progress": None,
        "message": None,
        "failed": True,
    }


def test_the_output_for_its_owner():
    sp = app(last_exit=3, stop_reason="out of memory")
    h = Output(["read:servers!server=alice/demo"], {"alice": owner_of(sp)})
    asyncio.run(h.get("alice", "demo"))
    assert answer(h) == {
        "app": "demo",
        "owner": "alice",
        "running": False,
        "exit_status": 3,
        "stop_reason": "out of memory",
        "lines": ["line 1", "Traceback: boom"],
        "problem": None,
    }
    assert h.asked == ["read:servers!server=alice/demo"]


def test_the_output_of_a_running_app_polls_it():
    sp = app(ready=True, last_exit=3)
    h = Output(["read:servers!server=alice/demo"], {"alice": owner_of(sp)})
    asyncio.run(h.get("alice", "demo"))
    a = answer(h)
    assert a["running"] is True and a["exit_status"] is None and a["stop_reason"] is None


STATUS_REFUSAL = "No such app, or you may not start it."
OUTPUT_REFUSAL = "No such app, or it is not yours."


@pytest.mark.parametrize(
    "handler, scopes, refusal",
    [
        (Status, ["access:servers!server=alice/demo"], STATUS_REFUSAL),
        (Status, ["start:servers!server=alice/other"], STATUS_REFUSAL),
        (Output, ["start:servers!server=alice/demo"], OUTPUT_REFUSAL),  # a viewer who may wake it
        (Output, ["access:servers!server=alice/demo"], OUTPUT_REFUSAL),
    ],
)
def test_without_the_scope_the_app_does_not_exist(handler, scopes, refusal):
    h = handler(scopes, {"alice": owner_of(app())})
    with pytest.raises(web.HTTPError) as e:
        asyncio.run(h.get("alice", "demo"))
    assert (e.value.status_code, e.value.log_message) == (404, refusal)
    assert h.body == []


@pytest.mark.parametrize("handler, scope", [(Status, "start:servers"), (Output, "read:servers")])
def test_an_unknown_app_or_owner_or_nobody_signed_in_is_a_404(handler, scope):
    scopes = [f"{scope}!server=alice/demo", f"{scope}!server=ghost/demo"]
    users = {"alice": SimpleNamespace(orm_spawners={}, spawners={})}
    for h, owner in (
        (handler(scopes, users), "alice"),  # no such app
        (handler(scopes, users), "ghost"),  # no such user
        (handler(scopes, users, signed_in=False), "alice"),
    ):
        with pytest.raises(web.HTTPError) as e:
            asyncio.run(h.get(owner, "demo"))
        assert e.value.status_code == 404
