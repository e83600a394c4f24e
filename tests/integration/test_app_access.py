"""An analyst's app behind the real hub, proxy and Streamlit: who gets in, and what the app sees.

Each refusal test attacks the app server; the allowed path is shown beside it.
"""

import json
import time

import pytest
import requests

from tests.helpers.streamlit_ws import WebsocketRefused, session, ws_url

PROBE = """
import json, os, pathlib
import streamlit as st

seen = {
    "headers": {k.lower(): v for k, v in st.context.headers.items()},
    "cookies": dict(st.context.cookies),
    "env": dict(os.environ),
    "user": {k: st.user.get(k) for k in ("name", "groups")},
}
pathlib.Path("probe-out.json").write_text(json.dumps(seen))
st.title("Probe page")
"""


@pytest.fixture(scope="module")
def demo(hub, alice):
    hub.start_app(alice, "alice", "demo")
    return "/user/alice/demo/"


@pytest.fixture(scope="module")
def probe(hub, alice):
    folder = hub.add_app("alice", "probe", PROBE)
    hub.start_app(alice, "alice", "probe")
    return folder


def test_owner_gets_app_html_through_the_proxy_after_hub_oauth(hub, alice, demo):
    r = hub.open_app(alice, "alice", "demo")
    assert r.status_code == 200
    assert r.url == hub.app_origin("alice") + demo
    assert '<div id="root">' in r.text
    visited = [h.url for h in r.history]
    assert any("/hub/api/oauth2/authorize" in u for u in visited), visited
    assert any(u.startswith(hub.app_origin("alice") + demo + "oauth_callback") for u in visited), (
        visited
    )


def test_browser_holds_only_a_random_session_id_not_a_token(hub, alice, demo):
    hub.open_app(alice, "alice", "demo")
    cookie = next(c for c in alice.cookies if c.name == "streamlit-hub-session")
    assert cookie.path == demo
    assert cookie.has_nonstandard_attr("HttpOnly")
    # The hub does not accept the session id as a token: it is not one.
    r = requests.get(
        hub.url + "/hub/api/user", headers={"Authorization": f"token {cookie.value}"}, timeout=10
    )
    assert r.status_code == 403


def test_websocket_session_runs_the_script(hub, alice, demo):
    hub.open_app(alice, "alice", "demo")
    result = session(
        ws_url(hub.app_origin("alice"), demo),
        {"Cookie": hub.app_cookie_header(alice, "alice", "demo")},
    )
    assert result["finished"] == 1
    assert any("Sales demo" in t for t in result["texts"])


def test_anonymous_browser_is_sent_to_the_hub_login(hub, demo):
    r = requests.get(hub.app_origin("alice") + demo, timeout=30)
    assert r.status_code == 200
    assert r.url.startswith(hub.url + "/hub/login")


def test_anonymous_websocket_is_refused(hub, demo):
    with pytest.raises(WebsocketRefused):
        session(ws_url(hub.app_origin("alice"), demo))


def test_anonymous_non_get_is_refused_with_401(hub, demo):
    r = requests.post(
        hub.app_origin("alice") + demo + "_stcore/upload_file/x/y", data=b"x", timeout=10
    )
    assert r.status_code == 401
    assert "Sign in" in r.json()["message"]


def test_forged_session_cookie_is_refused(hub, demo):
    with pytest.raises(WebsocketRefused):
        session(ws_url(hub.app_origin("alice"), demo), {"Cookie": "streamlit-hub-session=forged"})
    r = requests.get(
        hub.app_origin("alice") + demo,
        cookies={"streamlit-hub-session": "forged"},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 302 and "/hub/api/oauth2/authorize" in r.headers["location"]


def test_other_signed_in_user_is_refused_at_the_hub(hub, demo):
    carol = hub.login("carol")
    r = hub.open_app(carol, "alice", "demo")
    assert r.status_code == 403
    assert 'id="app-access-refused"' in r.text
    assert "belongs to <strong>alice</strong>" in r.text and "(carol)" in r.text
    assert "Ask alice to share it" in r.text
    assert "streamlit-hub-session" not in {c.name for c in carol.cookies}


def test_other_user_token_is_refused_by_the_app_server_http_and_ws(hub, demo):
    token = hub.token("carol")
    r = requests.get(
        hub.app_origin("alice") + demo,
        headers={"Authorization": f"token {token}", "Accept": "text/html"},
        timeout=10,
    )
    assert r.status_code == 403
    assert "belongs to alice" in r.text and "carol" in r.text
    with pytest.raises(WebsocketRefused):
        session(ws_url(hub.app_origin("alice"), demo), {"Authorization": f"token {token}"})


def test_owner_token_is_accepted_http_and_ws(hub, demo):
    token = hub.token("alice")
    r = requests.get(
        hub.app_origin("alice") + demo + "_stcore/health",
        headers={"Authorization": f"token {token}"},
        timeout=10,
    )
    assert (r.status_code, r.text) == (200, "ok")
    assert (
        session(ws_url(hub.app_origin("alice"), demo), {"Authorization": f"token {token}"})[
            "finished"
        ]
        == 1
    )


def test_cross_origin_websocket_is_refused_even_for_the_owner(hub, alice, demo):
    hub.open_app(alice, "alice", "demo")
    with pytest.raises(WebsocketRefused):
        session(
            ws_url(hub.app_origin("alice"), demo),
            {"Cookie": hub.app_cookie_header(alice, "alice", "demo")},
            origin="http://evil.example",
        )


def test_app_sees_verified_identity_and_no_hub_secrets(hub, alice, probe):
    hub.open_app(alice, "alice", "probe")
    cookie = hub.app_cookie_header(alice, "alice", "probe")
    assert "jupyterhub-session-id=" in cookie and "streamlit-hub-session=" in cookie
    token = hub.token("alice")
    out = probe / "probe-out.json"
    out.unlink(missing_ok=True)
    result = session(
        ws_url(hub.app_origin("alice"), "/user/alice/probe/"),
        {
            "Cookie": cookie + "; _streamlit_xsrf=kept",
            "X-Hub-User": "mallory",
            "X-Hub-Groups": "admins",
            "Authorization": f"token {token}",
        },
    )
    assert result["finished"] == 1
    seen = json.loads(out.read_text())
    # identity: the forged headers were replaced by the verified ones
    assert seen["user"]["name"] == "alice"
    assert seen["headers"]["x-hub-user"] == "alice"
    assert "mallory" not in json.dumps(seen["headers"])
    assert seen["user"]["groups"] == "analysts"
    # no hub cookie, no session id, no Authorization header reach the app's code
    assert set(seen["cookies"]) == {"_streamlit_xsrf"}
    assert "authorization" not in seen["headers"]
    assert token not in json.dumps(seen)
    assert "jupyterhub-session-id" not in seen["headers"].get("cookie", "")
    # no hub secret in the app's environment; its own API token is not there either
    assert "JUPYTERHUB_API_TOKEN" not in seen["env"]
    cookie_secret = (hub.data_dir / "jupyterhub_cookie_secret").read_text().strip()
    env_blob = json.dumps(seen["env"])
    assert cookie_secret not in env_blob
    assert hub.password not in env_blob
    assert not [k for k in seen["env"] if "CRYPT_KEY" in k or "PROXY_AUTH" in k]


@pytest.mark.parametrize(
    "path, expected",
    [
        ("../bob/apps/demo/app.py", "must not contain '..'"),
        ("/etc/passwd.py", "must be relative"),
        ("apps/missing/app.py", "No file"),
        ("apps/demo/app.txt", "ending in '.py'"),
        ("apps/escape/app.py", "leads outside your home"),
    ],
)
def test_unsafe_or_missing_entry_path_is_refused_with_400(hub, alice, path, expected):
    escape = hub.home("alice") / "apps" / "escape"
    if not escape.exists():
        escape.mkdir(parents=True)
        (escape / "app.py").symlink_to(hub.home("bob") / "apps" / "demo" / "app.py")
    before = len(hub.app_processes())
    r = alice.post(f"{hub.url}/hub/api/users/alice/servers/bad", json={"path": path}, timeout=30)
    assert r.status_code == 400, r.text
    assert expected in r.json()["message"]
    assert len(hub.app_processes()) == before
    alice.delete(f"{hub.url}/hub/api/users/alice/servers/bad", json={"remove": True}, timeout=30)


def test_unknown_option_and_wrong_type_are_refused_with_400(hub, alice):
    for body, expected in [({"pth": "x"}, "Unknown option"), ({"path": 42}, "must be a string")]:
        r = alice.post(f"{hub.url}/hub/api/users/alice/servers/bad", json=body, timeout=30)
        assert r.status_code == 400 and expected in r.json()["message"], r.text
    alice.delete(f"{hub.url}/hub/api/users/alice/servers/bad", json={"remove": True}, timeout=30)


def test_start_from_the_options_form(hub, alice):
    form = alice.get(f"{hub.url}/hub/spawn/alice/viaform", timeout=30)
    assert form.status_code == 200
    # viaform has no code of its own: the form says where it goes, offers no other app's
    assert "apps/viaform/app.py" in form.text and "has no code yet" in form.text
    assert 'name="path"' not in form.text and "apps/demo/app.py" not in form.text
    # a client naming an entry file explicitly (as the REST API may) still starts it
    r = alice.post(
        f"{hub.url}/hub/spawn/alice/viaform",
        data={"path": "apps/demo/app.py", "_xsrf": alice.headers["X-XSRFToken"]},
        timeout=60,
    )
    assert r.status_code == 200
    hub.wait_ready(alice, "alice", "viaform")
    assert hub.open_app(alice, "alice", "viaform").status_code == 200
    hub.stop_app(alice, "alice", "viaform", remove=True)


def test_activity_is_posted_only_when_a_viewer_uses_the_app(hub, alice):
    hub.start_app(alice, "alice", "quiet", {"path": "apps/demo/app.py"})

    def last_activity():
        return alice.get(f"{hub.url}/hub/api/users/alice", timeout=10).json()["servers"]["quiet"][
            "last_activity"
        ]

    started = last_activity()
    time.sleep(3.0)  # three activity intervals with nobody there
    assert last_activity() == started
    hub.open_app(alice, "alice", "quiet")
    session(
        ws_url(hub.app_origin("alice"), "/user/alice/quiet/"),
        {"Cookie": hub.app_cookie_header(alice, "alice", "quiet")},
    )
    deadline = time.monotonic() + 10
    while last_activity() == started and time.monotonic() < deadline:
        time.sleep(0.2)
    assert last_activity() > started
    hub.stop_app(alice, "alice", "quiet", remove=True)


def test_stop_leaves_no_app_process(hub, alice):
    hub.start_app(alice, "alice", "shortlived", {"path": "apps/demo/app.py"})
    before = set(hub.app_processes())
    assert before
    hub.stop_app(alice, "alice", "shortlived", remove=True)
    deadline = time.monotonic() + 10
    while len(set(hub.app_processes())) >= len(before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(set(hub.app_processes())) == len(before) - 1


def test_form_refusal_is_shown_as_a_page_with_the_reason(hub, alice):
    r = alice.post(
        f"{hub.url}/hub/spawn/alice/badform",
        data={"path": "../bob/apps/demo/app.py", "_xsrf": alice.headers["X-XSRFToken"]},
        timeout=60,
    )
    assert r.status_code == 400
    assert "must not contain &#39;..&#39;" in r.text or "must not contain '..'" in r.text
    assert "Traceback" not in r.text
    alice.delete(
        f"{hub.url}/hub/api/users/alice/servers/badform", json={"remove": True}, timeout=30
    )


def _environ(pid: int) -> dict:
    raw = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    return dict(e.decode(errors="replace").split("=", 1) for e in raw if b"=" in e)


def _audit_service_pid(hub) -> int:
    from tests.helpers.procs import processes_mentioning

    (pid,) = [
        p
        for p in processes_mentioning("spawner.audit.service")
        if str(hub.data_dir).encode() in open(f"/proc/{p}/environ", "rb").read()
    ]
    return pid


def test_secrets_stay_out_of_app_env_cmdline_logs_and_pages(hub, alice, demo):
    viewer_token = hub.token("alice")
    r = requests.get(
        hub.app_origin("alice") + demo,
        headers={"Authorization": f"token {viewer_token}"},
        timeout=10,
    )
    assert r.status_code == 200
    served = (
        r.text
        + requests.get(
            hub.app_origin("alice") + demo + "_stcore/health",
            headers={"Authorization": f"token {viewer_token}"},
            timeout=10,
        ).text
    )
    proxy_env = _environ(hub.proxy_pid())  # the hub hands its proxy token to CHP by env
    hub_secrets = {
        "cookie secret": (hub.data_dir / "jupyterhub_cookie_secret").read_text().strip(),
        "proxy auth token": proxy_env["CONFIGPROXY_AUTH_TOKEN"],
        "demo password": hub.password,
        "viewer token": viewer_token,
        # the audit service's token: the hub's recorder writes any event with it
        "audit service token": _environ(_audit_service_pid(hub))["JUPYTERHUB_API_TOKEN"],
    }
    logs = hub.log_path.read_text(errors="replace") + "".join(
        p.read_text(errors="replace") for p in (hub.data_dir / "logs").rglob("*.log")
    )
    checked = 0
    for pid in hub.app_processes():
        env = _environ(pid)
        # its own scoped token reaches it through a pipe: not in its environment either
        assert "JUPYTERHUB_API_TOKEN" not in env and "JPY_API_TOKEN" not in env, sorted(env)
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        for what, secret in hub_secrets.items():
            assert secret not in json.dumps(env), f"{what} in an app server's environment"
            assert secret not in cmdline, f"{what} on an app server's command line"
        checked += 1
    assert checked >= 1
    for what, secret in hub_secrets.items():
        assert secret not in served, f"{what} served to a browser"
        if what != "demo password":
            assert secret not in logs, f"{what} written to a log"


def test_restart_skips_the_form_unless_the_stored_options_went_bad(hub, alice):
    folder = hub.add_app("alice", "again", "import streamlit as st\nst.title('again')\n")
    hub.start_app(alice, "alice", "again", {"path": "apps/again/app.py"})
    hub.stop_app(alice, "alice", "again")
    # no form: it just starts (a link on the hub's own home page: the browser says same-origin)
    r = alice.get(
        f"{hub.url}/hub/spawn/alice/again", headers={"Sec-Fetch-Site": "same-origin"}, timeout=60
    )
    assert 'name="path"' not in r.text
    hub.wait_ready(alice, "alice", "again")
    hub.stop_app(alice, "alice", "again")
    (folder / "app.py").unlink()  # the stored entry is gone: the form is back
    r = alice.get(f"{hub.url}/hub/spawn/alice/again", timeout=60)
    assert (
        'name="path"' in r.text
        or "You have no apps yet" in r.text
        or 'id="streamlit-app-path"' in r.text
    )
    alice.delete(f"{hub.url}/hub/api/users/alice/servers/again", json={"remove": True}, timeout=30)
