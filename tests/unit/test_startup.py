"""spawner/startup.py: a wrong setting is one sentence and exit status 1; a hub that stops
before it cleaned up leaves no process behind. The real hub is in
tests/integration/test_hub_start_stop.py."""

import os
import signal
import subprocess
import sys
import time

import pytest
from traitlets.config import Config

from spawner import startup
from spawner.startup import StartGuard, configure_or_exit, descendants, stop_processes


def test_a_wrong_setting_is_one_sentence_and_exit_status_1(tmp_path, capsys):
    env = {"STREAMLIT_HUB_DATA_DIR": str(tmp_path), "STREAMLIT_HUB_PORT": "80a"}
    with pytest.raises(SystemExit) as e:
        configure_or_exit(Config(), environ=env)
    assert e.value.code == 1
    assert e.value.__context__ is None or e.value.__suppress_context__
    err = capsys.readouterr().err
    assert err.strip() == (
        "jupyterhub-streamlit: the hub cannot start: STREAMLIT_HUB_PORT='80a': expected a TCP "
        "port number from 1 to 65535"
    )


def test_a_bad_policy_names_the_key(tmp_path, capsys):
    policy = tmp_path / "policy.yaml"
    policy.write_text("groups: {analysts: {profiles: [huge]}}\n")
    env = {
        "STREAMLIT_HUB_DATA_DIR": str(tmp_path / "d"),
        "STREAMLIT_HUB_DEMO_PASSWORD": "pw",
        "STREAMLIT_HUB_POLICY": str(policy),
    }
    with pytest.raises(SystemExit) as e:
        configure_or_exit(Config(), environ=env)
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "the hub cannot start: group policy:" in err
    assert "groups.analysts.profiles: no profile 'huge'" in err


def test_the_extra_config_runs_last_and_its_missing_file_is_a_sentence(tmp_path, capsys):
    env = {"STREAMLIT_HUB_DATA_DIR": str(tmp_path), "STREAMLIT_HUB_DEMO_PASSWORD": "pw"}
    extra = tmp_path / "extra.py"
    extra.write_text("c.JupyterHub.port = 8123\n")
    c = Config()
    configure_or_exit(
        c, extra_config=True, environ={**env, "STREAMLIT_HUB_EXTRA_CONFIG": str(extra)}
    )
    assert c.JupyterHub.port == 8123
    c = Config()
    configure_or_exit(c, environ={**env, "STREAMLIT_HUB_EXTRA_CONFIG": str(extra)})
    assert c.JupyterHub.port == 8000  # not asked to
    with pytest.raises(SystemExit):
        configure_or_exit(
            Config(),
            extra_config=True,
            environ={**env, "STREAMLIT_HUB_EXTRA_CONFIG": str(tmp_path / "nope.py")},
        )
    assert "STREAMLIT_HUB_EXTRA_CONFIG" in capsys.readouterr().err


def test_a_test_building_a_config_installs_no_guard(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    configure_or_exit(
        Config(),
        environ={"STREAMLIT_HUB_DATA_DIR": str(tmp_path), "STREAMLIT_HUB_DEMO_PASSWORD": "p"},
    )
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_while_starting_is_a_quiet_exit(capsys):
    guard = StartGuard()
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    guard.catch_signals()
    try:
        assert signal.getsignal(signal.SIGINT) == guard._interrupted
        with pytest.raises(SystemExit) as e:
            guard._interrupted(signal.SIGINT, None)
        assert e.value.code == 130
        with pytest.raises(SystemExit) as e:
            guard._interrupted(signal.SIGTERM, None)
        assert e.value.code == 143
        assert "Interrupted while the hub was starting." in capsys.readouterr().err
    finally:
        guard.release()
    assert {s: signal.getsignal(s) for s in before} == before


def test_release_leaves_a_handler_someone_else_installed():
    guard = StartGuard()
    before = signal.getsignal(signal.SIGTERM)
    guard.catch_signals()

    def theirs(*a):
        pass

    signal.signal(signal.SIGTERM, theirs)  # as JupyterHub's own, once it runs
    try:
        guard.release()
        assert signal.getsignal(signal.SIGTERM) is theirs
    finally:
        signal.signal(signal.SIGTERM, before)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_descendants_walks_the_tree():
    parents = {2: 1, 3: 2, 4: 3, 5: 1, 6: 99, 1: 0}
    assert sorted(descendants(1, parents)) == [2, 3, 4, 5]
    assert descendants(3, parents) == [4]
    assert descendants(6, parents) == []
    assert descendants(7, {7: 7, 8: 7}) == [8]  # a loop in a racing snapshot ends


# A stand-in hub: it starts two children (one of which starts its own), writes its pid file
# and waits. The guard, given its pid, must stop everything below it and only that.
FAKE_HUB = """
import subprocess, sys, time
kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]),
        subprocess.Popen(["sh", "-c", "sleep 60 & wait"])]
open(sys.argv[1], "w").write(str(__import__("os").getpid()))
print(" ".join(str(k.pid) for k in kids), flush=True)
time.sleep(60)
"""


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_dead(pids, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _config(tmp_path, cleanup_servers=True):
    c = Config()
    c.JupyterHub.pid_file = str(tmp_path / "jupyterhub.pid")
    c.ConfigurableHTTPProxy.pid_file = str(tmp_path / "proxy.pid")
    c.JupyterHub.cleanup_servers = cleanup_servers
    return c


@pytest.fixture
def fake_hub(tmp_path):
    hub = subprocess.Popen(
        [sys.executable, "-c", FAKE_HUB, str(tmp_path / "jupyterhub.pid")],
        stdout=subprocess.PIPE,
        text=True,
    )
    kids = [int(p) for p in hub.stdout.readline().split()]
    time.sleep(0.3)  # the shell's own child
    yield hub, kids
    for pid in descendants(hub.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    hub.kill()
    hub.wait()


def test_an_exit_before_clean_up_stops_everything_the_hub_started(
    tmp_path, fake_hub, capsys, monkeypatch
):
    hub, kids = fake_hub
    tree = descendants(hub.pid)
    assert set(kids) <= set(tree) and len(tree) >= 3  # the shell's sleep too
    # the proxy a previous run left, taken over by this one: not a child, named by its pid file
    proxy = subprocess.Popen(["configurable-http-proxy", "60"], executable="sleep")
    (tmp_path / "proxy.pid").write_text(str(proxy.pid))
    guard = StartGuard(pid=hub.pid)
    registered = []
    monkeypatch.setattr(startup.atexit, "register", registered.append)
    guard.clean_up_at_exit(_config(tmp_path))
    assert registered == [guard.at_exit]  # in the hub it runs at exit; here, now
    started = time.monotonic()
    guard.at_exit()
    assert time.monotonic() - started < 4
    assert _wait_dead(tree) == []
    assert proxy.wait(5) is not None
    assert hub.poll() is None  # the hub itself is the one exiting: not signalled
    assert not (tmp_path / "jupyterhub.pid").exists() and not (tmp_path / "proxy.pid").exists()
    err = capsys.readouterr().err
    assert f"stopped {len(tree) + 1} processes the hub had started" in err


def test_nothing_is_stopped_after_jupyterhubs_own_clean_up(tmp_path, fake_hub, capsys):
    hub, kids = fake_hub
    guard = StartGuard(pid=hub.pid)
    guard.config = _config(tmp_path)
    (tmp_path / "jupyterhub.pid").unlink()  # JupyterHub removes it last when it cleaned up
    guard.at_exit()
    assert all(_alive(k) for k in kids)
    # another process's pid file (`jupyterhub token` while the hub runs): not ours either
    (tmp_path / "jupyterhub.pid").write_text(str(hub.pid))
    other = StartGuard(pid=os.getpid())
    other.config = guard.config
    other.at_exit()
    assert all(_alive(k) for k in kids)
    assert capsys.readouterr().err == ""


def test_nothing_is_stopped_when_apps_are_kept_across_restarts(tmp_path, fake_hub):
    hub, kids = fake_hub
    guard = StartGuard(pid=hub.pid)
    guard.config = _config(tmp_path, cleanup_servers=False)
    guard.at_exit()
    assert all(_alive(k) for k in kids)


def test_a_pid_file_naming_something_else_is_not_the_proxy(tmp_path, fake_hub):
    hub, _ = fake_hub
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "proxy.pid").write_text(str(bystander.pid))
        guard = StartGuard(pid=hub.pid)
        guard.config = _config(tmp_path)
        assert bystander.pid not in guard.started_processes(str(tmp_path / "proxy.pid"))
        guard.at_exit()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_stop_processes_kills_what_ignores_sigterm():
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            "print(1, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    stubborn.stdout.readline()
    started = time.monotonic()
    assert stop_processes([stubborn.pid], timeout=0.5) == 1
    assert not _alive(stubborn.pid)  # killed, and collected (no zombie left)
    assert time.monotonic() - started < 3
    assert stop_processes([stubborn.pid]) == 0  # already gone


def test_the_parent_table_without_proc(monkeypatch):
    # where there is no /proc (macOS), `ps` answers
    real = startup.Path

    class NoProc(type(real())):
        def is_dir(self):
            return False if str(self) == "/proc" else super().is_dir()

    monkeypatch.setattr(startup, "Path", NoProc)
    parents = startup._parents()
    assert parents[os.getpid()] == os.getppid()
