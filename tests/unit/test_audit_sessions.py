"""Page views from the session websocket: one per page change, named as Streamlit names them."""

from types import SimpleNamespace

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from spawner.app_server.audit_sessions import SessionAudit


class Sender:
    def __init__(self):
        self.events = []

    def emit(self, event):
        self.events.append(event)


def _settings():
    return SimpleNamespace(owner="alice", server_name="demo", profile="small")


def _rerun() -> bytes:
    m = BackMsg()
    m.rerun_script.page_name = ""
    return m.SerializeToString()


def _new_session(page_hash, main_hash="h-main", path="/home/a/apps/demo/app.py") -> bytes:
    m = ForwardMsg()
    m.new_session.page_script_hash = page_hash
    m.new_session.main_script_hash = main_hash
    m.new_session.main_script_path = path
    return m.SerializeToString()


def _navigation(current) -> bytes:
    m = ForwardMsg()
    for h, name in (("h-main", "app"), ("h-details", "Details")):
        p = m.navigation.app_pages.add()
        p.page_script_hash, p.page_name = h, name
    m.navigation.page_script_hash = current
    return m.SerializeToString()


def _run(session, *server_frames):
    session.client_frame(_rerun())
    for f in server_frames:
        session.server_frame(f)


def test_pages_are_named_and_reruns_of_the_same_page_are_not_views():
    sender = Sender()
    viewer = SimpleNamespace(name="carol", groups=("viewers",))
    # the local proxy (the peer) appended the address it saw (tests/unit/test_client_address.py)
    scope = {
        "headers": [(b"x-forwarded-for", b"10.1.2.3"), (b"user-agent", b"UA")],
        "client": ("127.0.0.1", 5),
    }
    s = SessionAudit(_settings(), sender).open(viewer, scope)
    _run(s, _new_session("h-main"), _navigation("h-main"))
    _run(s, _new_session("h-details"), _navigation("h-details"))
    _run(s, _new_session("h-details"), _navigation("h-details"))  # a widget rerun
    _run(s, _new_session("h-main"))  # names already known: no navigation message needed
    s.end("closed")
    s.end("closed")  # idempotent
    kinds = [(e["type"], e.get("page")) for e in sender.events]
    assert kinds == [
        ("session_start", None),
        ("page_view", "app"),
        ("page_view", "Details"),
        ("page_view", "app"),
        ("session_end", None),
    ]
    first = sender.events[0]
    assert (
        first["owner"],
        first["app"],
        first["viewer"],
        first["client"],
        first["user_agent"],
    ) == ("alice", "demo", "carol", "10.1.2.3", "UA")
    assert sender.events[-1]["extra"] == {"page": "app"} and sender.events[-1]["duration_s"] >= 0


def test_a_single_page_app_is_named_after_its_entry_file():
    sender = Sender()
    s = SessionAudit(_settings(), sender).open(
        SimpleNamespace(name="c", groups=()), {"headers": []}
    )
    finished = ForwardMsg()
    finished.script_finished = 1
    _run(s, _new_session("h-main"), finished.SerializeToString())
    assert [e.get("page") for e in sender.events if e["type"] == "page_view"] == ["app"]


def test_garbage_frames_and_unwatched_frames_are_ignored():
    sender = Sender()
    s = SessionAudit(_settings(), sender).open(
        SimpleNamespace(name="c", groups=()), {"headers": []}
    )
    s.client_frame(b"\xff\x00garbage")
    s.server_frame(_new_session("h-main"))  # no rerun asked: not watched
    s.client_frame(_rerun())
    s.server_frame(b"\xff\xfe not protobuf")
    assert [e["type"] for e in sender.events] == ["session_start"]
