"""The hub's page overrides (hub_config/templates/) rendered as JupyterHub 6.1 renders them
(its loader: our folder first, its own under ``templates/``), for the pages a browser test
cannot easily catch: the words are the app's, never "server".

tests/browser/test_app_experience.py looks at the same pages on a real hub.
"""

import re
from pathlib import Path
from types import SimpleNamespace

import jupyterhub
import pytest
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader

OURS = Path(__file__).resolve().parents[2] / "hub_config" / "templates"
THEIRS = Path(jupyterhub.__file__).resolve().parents[4] / "share" / "jupyterhub" / "templates"


@pytest.fixture(scope="module")
def env():
    if not THEIRS.is_dir():  # pragma: no cover - an unusual install layout
        pytest.skip(f"JupyterHub's templates are not at {THEIRS}")
    loader = ChoiceLoader(
        [PrefixLoader({"templates": FileSystemLoader([str(THEIRS)])}, "/"), FileSystemLoader(OURS)]
    )
    return Environment(loader=loader, autoescape=True)


def page(env, name, **ns):
    alice = SimpleNamespace(name="alice", admin=False, spawner=SimpleNamespace(options_form=""))
    base = {
        "base_url": "/hub/",
        "prefix": "/",
        "user": alice,
        "static_url": lambda path, **kw: f"/hub/static/{path}",
        "version_hash": "",
        "services": [],
        "parsed_scopes": {},
        "expanded_scopes": set(),
        "xsrf": "x",
        "login_url": "/hub/login",
        "logout_url": "/hub/logout",
        "streamlit_me": alice,
    }
    return env.get_template(name).render(**{**base, **ns})


def words(html):
    body = html.split("<body", 1)[1]
    body = re.sub(r"<script.*?</script>", "", body, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


def test_stop_pending_says_app(env):
    text = words(page(env, "stop_pending.html", spawner=SimpleNamespace(name="demo")))
    assert "The app “demo” is stopping" in text
    assert not re.search(r"\bserver\b", text, re.I), text


def test_spawn_pending_says_app_and_cancels_this_app(env):
    html = page(
        env,
        "spawn_pending.html",
        spawner=SimpleNamespace(name="demo"),
        progress_url="/hub/api/users/alice/servers/demo/progress",
    )
    text = words(html)
    assert "Starting the app “demo”" in text and "Cancel the start" in text
    assert not re.search(r"\bserver\b", text, re.I), text
    assert 'data-stop="/hub/api/users/alice/servers/demo"' in html
    # an admin looking at alice's start sees whose app it is
    html = page(
        env,
        "spawn_pending.html",
        spawner=SimpleNamespace(name="demo"),
        progress_url="/p",
        streamlit_me=SimpleNamespace(name="root", admin=True),
    )
    assert "Starting alice’s app “demo”" in words(html)


def test_spawn_page_heading_and_error(env):
    html = page(
        env,
        "spawn.html",
        for_user=SimpleNamespace(name="alice"),
        spawner_options_form='<p id="streamlit-app-path">Runs …</p>',
        error_message="The app demo stopped while starting (exit code 1). Its last output:\nboom",
        url="/hub/spawn/alice/demo?_xsrf=x",
    )
    text = words(html)
    assert "Start the app “demo”" in text and "Not started." in text
    assert not re.search(r"\bservers?\b", text, re.I) and "Options" not in text
    assert '<button type="submit"' in html
    no_code = page(
        env,
        "spawn.html",
        for_user=SimpleNamespace(name="alice"),
        spawner_options_form='<div id="streamlit-app-path" data-streamlit-no-code="1"></div>',
        url="/hub/spawn/alice/charts?_xsrf=x",
    )
    assert '<button type="submit"' not in no_code
    assert 'id="check-again" role="button" class="btn btn-jupyter form-control"' in no_code
    assert 'href="/hub/spawn/alice/charts"' in no_code  # no _xsrf: a GET with it would start


def test_a_viewer_waiting_for_a_start_gets_no_cancel_button(env):
    html = page(
        env,
        "spawn_pending.html",
        spawner=SimpleNamespace(name="demo"),
        progress_url="/p",
        streamlit_me=SimpleNamespace(name="carol", admin=False),
    )
    assert "Starting alice’s app “demo”" in words(html)
    assert 'id="cancel-start-btn"' not in html and 'id="back-home"' in html
