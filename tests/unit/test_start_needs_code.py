"""Starting needs code (issue #15): the checks before a start, without a hub.

- The mixin (``checked_before_start``, the default ``apply_user_options`` every start path
  runs; ``options_from_form``): an app whose own ``apps/<app>/app.py`` is missing is refused
  with where its code goes; the group policy is asked first; an explicit ``path`` is the
  caller's choice; a refusal is in the audit trail; a start that fails stops counting.
- The app server's look at the code before Streamlit (``launcher.code_problem``): a syntax
  error, or a top-level import the environment does not have, found without importing.
- What the hub makes of the app server's output (``launch_refusal``, ``app_problem``).
- Runtime errors (``launcher.script_error_handler``): the owner sees the exception, everyone
  else one sentence.

tests/browser/test_app_experience.py shows the same to a person on a real hub.
"""

import asyncio
import logging
import sys
from types import SimpleNamespace

import pytest
from jupyterhub.spawner import SpawnException

import spawner.audit.hub_recorder as hub_recorder
from spawner.app_server import launcher
from spawner.app_server.launcher import (
    APP_ERROR,
    CANNOT_START,
    VIEWER_ERROR_TEXT,
    code_problem,
    script_error_handler,
    shown_path,
    streamlit_options,
    top_level_imports,
)
from spawner.mixin import RUN_MARKER, app_problem, launch_refusal
from spawner.names import resolve_entry
from tests.helpers.app_settings import demo_settings
from tests.unit.test_spawner_policy import POLICY, AppSpawner, Recorder, User, person


class HomeSpawner(AppSpawner):
    """The mixin with a real home: its entry is resolved as the local spawner does."""

    home = ""

    def resolve_app_entry(self, options):
        return str(resolve_entry(self.home, options.path or f"apps/{self.name}/app.py"))


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    (h / "apps" / "demo").mkdir(parents=True)
    (h / "apps" / "demo" / "app.py").write_text("import streamlit as st\n")
    return h


@pytest.fixture
def recorder(monkeypatch):
    r = Recorder()
    monkeypatch.setattr(hub_recorder, "_recorder", r)
    return r


@pytest.fixture
def policy_file(tmp_path):
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    return str(p)


def app(name, home, options=None, groups=("analysts",), policy_file="", by=None):
    user = User("alice", list(groups))
    sp = HomeSpawner(
        user=user,
        orm_spawner=SimpleNamespace(name=name, user_options=options, state=None, server=None),
        policy_file=policy_file,
    )
    sp.home = str(home)
    sp.user_options = options or {}
    sp.handler = SimpleNamespace(current_user=by or person("alice"))
    user.spawners[name] = sp
    return sp


def apply(sp):
    """What the hub runs on every start path before pre_spawn_hook and start."""
    return sp.apply_user_options(sp, sp.user_options)


# ---- the mixin ---------------------------------------------------------------------------------
def test_an_app_without_its_own_code_is_refused_with_where_the_code_goes(home, recorder):
    sp = app("charts", home)
    with pytest.raises(SpawnException) as e:
        apply(sp)
    where = home.resolve() / "apps" / "charts" / "app.py"
    assert e.value.status_code == 400 and e.value.reason == "no_code"
    assert e.value.message == (
        f"The app charts has no code yet: put its Streamlit script in apps/charts/app.py in "
        f"your home ({where}), then start it again."
    )
    # what JupyterHub's pages show: the sentence, not "400 SpawnException(reason=...)"
    assert e.value.jupyterhub_message == e.value.message
    ((kind, fields),) = recorder.events
    assert (kind, fields["outcome"], fields["app"]) == ("app_start", "failed", "charts")
    assert fields["reason"].startswith("The app charts has no code yet")


def test_the_same_refusal_inside_start_and_nothing_is_launched(home, recorder):
    sp = app("charts", home, {"path": "apps/charts/app.py"})  # the default, said explicitly
    with pytest.raises(SpawnException, match="has no code yet"):
        asyncio.run(sp.start())
    assert getattr(sp, "launched", 0) == 0


def test_an_app_with_its_own_code_passes(home):
    sp = app("demo", home)
    assert apply(sp).path is None
    assert asyncio.run(sp.start()) == "http://127.0.0.1:1"
    assert sp.app_entry == str((home / "apps" / "demo" / "app.py").resolve())


def test_an_explicit_path_is_the_callers_choice_and_a_missing_one_is_named(home):
    # the REST API may name any file in the home (several apps can share one script)
    assert apply(app("copy", home, {"path": "apps/demo/app.py"})).path == "apps/demo/app.py"
    with pytest.raises(SpawnException) as e:
        apply(app("copy", home, {"path": "apps/nope/app.py"}))
    assert e.value.reason == "entry_path"
    assert e.value.message.startswith("No file apps/nope/app.py in your home (")


def test_the_policy_is_asked_before_the_code(home, policy_file, recorder):
    # someone who may start no apps hears that, not where code would go
    sp = app("charts", home, groups=(), policy_file=policy_file)
    with pytest.raises(SpawnException) as e:
        apply(sp)
    assert e.value.reason.startswith("quota_") and "no code" not in e.value.message
    assert recorder.events[0][1]["outcome"] == "refused"


def test_the_options_form_refuses_at_once(home):
    with pytest.raises(SpawnException, match="has no code yet"):
        app("charts", home).options_from_form({"profile": ["small"]})
    assert app("demo", home).options_from_form({"profile": ["small"]}) == {"profile": "small"}
    # options the parser refuses are left to the start, which says the same words
    assert app("charts", home).options_from_form({"source": ["ftp"]}) == {"source": "ftp"}


def test_a_start_that_fails_stops_counting_against_the_quota(home, policy_file):
    sp = app("demo", home, policy_file=policy_file)

    async def fails(url):
        raise SpawnException("boom", reason="app_exited")

    sp.wait_until_ready = fails
    with pytest.raises(SpawnException):
        asyncio.run(sp.start())
    # the hub calls stop() after a failed start only if the process still runs
    assert not sp._quota_admitted


def test_the_ready_event_says_app():
    sp = app("demo", "/nowhere")
    event = sp.progress_ready_hook(sp, {"url": "/user/alice/demo/", "message": "Server ready"})
    assert event["message"] == "App ready at /user/alice/demo/"
    assert "Server" not in event["html_message"]


# ---- what the hub reads in the app server's output --------------------------------------------
def test_the_reason_of_this_run_only():
    old = f"{CANNOT_START}apps/x/app.py imports plotly, which ..."
    assert launch_refusal(f"{RUN_MARKER}\n{old}") == "apps/x/app.py imports plotly, which ..."
    # a later run that got further: the old reason is not this run's
    assert launch_refusal(f"{RUN_MARKER}\n{old}\n{RUN_MARKER}\nTraceback ...") is None
    assert launch_refusal("no marker at all\n" + old) == "apps/x/app.py imports plotly, which ..."
    assert launch_refusal("") is None


def test_the_problem_an_owner_is_told_of():
    run = f"{RUN_MARKER}\nuvicorn started\n{APP_ERROR}KeyError: 'x' (viewer carol)\nmore"
    assert app_problem(run) == "KeyError: 'x' (viewer carol)"
    assert app_problem(f"{run}\n{RUN_MARKER}\nuvicorn started") is None  # restarted since
    assert app_problem(f"{RUN_MARKER}\n{CANNOT_START}why") == "why"


# ---- the app server's look at the code --------------------------------------------------------
def test_top_level_imports_only_unconditional_ones():
    import ast

    tree = ast.parse(
        "from __future__ import annotations\n"
        "import os, plotly.express as px\n"
        "from a.b import c\n"
        "from . import sibling\n"
        "try:\n    import optional\nexcept ImportError:\n    optional = None\n"
        "if False:\n    import never\n"
        "def f():\n    import inside\n"
        "import os\n"
    )
    assert top_level_imports(tree) == ["os", "plotly", "a"]


def test_code_problem_names_the_missing_packages(tmp_path, monkeypatch):
    entry = tmp_path / "app.py"
    (tmp_path / "helpers.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))  # the launcher puts the script's folder first
    entry.write_text("import sys, json\nimport helpers\nimport tornado\n")
    assert code_problem(entry, "apps/x/app.py") is None
    entry.write_text("import nope_pkg_a\nimport json\nfrom nope_pkg_b.sub import y\n")
    assert code_problem(entry, "apps/x/app.py") == (
        "apps/x/app.py imports nope_pkg_a and nope_pkg_b, which the app environment does not "
        "have. Ask an admin to add them to the app environment, or remove the import."
    )
    entry.write_text("import plotly_nope\n")
    assert code_problem(entry, "apps/x/app.py").startswith(
        "apps/x/app.py imports plotly_nope, which the app environment does not have. "
        "Ask an admin to add it"
    )


def test_code_problem_finds_without_importing(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "loud.py").write_text("raise SystemExit('imported!')\n")
    entry = tmp_path / "app.py"
    entry.write_text("import loud\n")
    assert code_problem(entry, "app.py") is None and "loud" not in sys.modules


def test_code_problem_reports_a_syntax_error(tmp_path):
    entry = tmp_path / "app.py"
    entry.write_text("import json\nst.write('x'))\n")
    assert code_problem(entry, "apps/x/app.py") == (
        "apps/x/app.py has a syntax error on line 2: unmatched ')'."
    )


def test_the_entry_is_shown_as_its_owner_knows_it(tmp_path):
    home = tmp_path / "home"
    (home / "apps" / "x").mkdir(parents=True)
    entry = home / "apps" / "x" / "app.py"
    assert shown_path(entry, str(home)) == "apps/x/app.py"
    assert shown_path(entry, str(tmp_path / "other")) == str(entry)
    assert shown_path(entry, None) == str(entry)


def test_the_launcher_refuses_before_streamlit_with_one_line(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    (home / "apps" / "x").mkdir(parents=True)
    entry = home / "apps" / "x" / "app.py"
    entry.write_text("import nope_pkg_c\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(launcher, "from_environ", lambda: demo_settings(entry=str(entry)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)  # main() sets the app server's level
    assert launcher.main() == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"{CANNOT_START}apps/x/app.py imports nope_pkg_c, which")
    monkeypatch.setattr(
        launcher, "from_environ", lambda: demo_settings(entry=str(home / "apps/y/app.py"))
    )
    assert launcher.main() == 2
    assert capsys.readouterr().err.strip() == f"{CANNOT_START}there is no file apps/y/app.py."


# ---- errors while the app runs ----------------------------------------------------------------
class FakeStreamlit:
    def __init__(self):
        self.shown = []

    def error(self, text):
        self.shown.append(("error", text))

    def exception(self, exc):
        self.shown.append(("exception", exc))


@pytest.mark.parametrize("viewer", ["carol", None])
def test_a_viewer_sees_one_sentence(monkeypatch, capsys, viewer):
    st = FakeStreamlit()
    monkeypatch.setitem(sys.modules, "streamlit", st)
    handler = script_error_handler("alice", viewer=lambda: viewer)
    assert handler(ModuleNotFoundError("No module named 'plotly'")) is True
    assert st.shown == [("error", VIEWER_ERROR_TEXT)]
    line = capsys.readouterr().err.strip()
    assert line == (
        f"{APP_ERROR}ModuleNotFoundError: No module named 'plotly' (viewer {viewer or 'unknown'})"
    )


def test_the_owner_sees_the_exception(monkeypatch):
    st = FakeStreamlit()
    monkeypatch.setitem(sys.modules, "streamlit", st)
    exc = KeyError("region")
    assert script_error_handler("alice", viewer=lambda: "alice")(exc) is True
    assert st.shown[0][0] == "error" and "Your app raised an error" in st.shown[0][1]
    assert st.shown[1] == ("exception", exc)


def test_viewers_browsers_get_no_error_details():
    assert streamlit_options(demo_settings())["client.showErrorDetails"] == "none"


def test_the_viewer_name_outside_a_script_run_is_nobody():
    assert launcher._viewer_name() is None


# ---- a viewer waking a shared app hears less than its owner -----------------------------------
def test_a_viewer_waking_an_app_without_code_is_not_told_about_the_owners_home(home):
    sp = app("charts", home, by=person("carol"))
    with pytest.raises(SpawnException) as e:
        apply(sp)
    assert e.value.message == (
        "The app charts has no code yet; alice has to put it in place before it can start."
    )
    # an admin starting it for alice is told where the code goes
    with pytest.raises(SpawnException, match=r"put its Streamlit script in apps/charts/app\.py"):
        apply(app("charts", home, by=person("root", admin=True)))


class Exited(HomeSpawner):
    server = SimpleNamespace(base_url="/user/alice/broken/")

    def app_exit_status(self):
        return 3

    def app_failure_details(self):
        return f"{RUN_MARKER}\n{CANNOT_START}apps/broken/app.py imports plotly, which ..."


@pytest.mark.parametrize(
    "by, message",
    [
        (person("alice"), "apps/broken/app.py imports plotly, which ..."),
        (person("carol"), "The app broken has an error and cannot start; alice has been told."),
    ],
)
def test_the_app_servers_reason_is_the_refusal(home, by, message):
    from spawner.mixin import StreamlitSpawnerMixin

    sp = Exited(
        user=User("alice", ["analysts"]),
        orm_spawner=SimpleNamespace(name="broken", user_options={}, state=None, server=None),
    )
    sp.handler = SimpleNamespace(current_user=by)
    with pytest.raises(SpawnException) as e:
        asyncio.run(StreamlitSpawnerMixin.wait_until_ready(sp, "http://127.0.0.1:1"))
    assert (e.value.status_code, e.value.reason, e.value.message) == (400, "app_code", message)


def test_a_viewer_waking_an_app_that_crashes_while_starting_sees_no_output(home):
    from spawner.mixin import StreamlitSpawnerMixin

    class Crashed(Exited):
        def app_failure_details(self):
            return f'{RUN_MARKER}\nTraceback: File "/home/alice/apps/broken/app.py"\nKeyError'

    sp = Crashed(
        user=User("alice", ["analysts"]),
        orm_spawner=SimpleNamespace(name="broken", user_options={}, state=None, server=None),
    )
    sp.handler = SimpleNamespace(current_user=person("carol"))
    with pytest.raises(SpawnException) as e:
        asyncio.run(StreamlitSpawnerMixin.wait_until_ready(sp, "http://127.0.0.1:1"))
    assert e.value.message == "The app broken stopped while starting; alice has been told."
    sp.handler = SimpleNamespace(current_user=person("alice"))
    with pytest.raises(SpawnException) as e:
        asyncio.run(StreamlitSpawnerMixin.wait_until_ready(sp, "http://127.0.0.1:1"))
    assert e.value.message.startswith("The app broken stopped while starting (exit code 3).")
    assert "KeyError" in e.value.message
