"""The real hub (``jupyterhub -f hub_config/jupyterhub_config.py``, as ``make run``), started
and stopped the ways a person does (issue #15, items 8 and 13):

- a wrong setting or policy stops it with one sentence naming the key, exit status 1, no
  traceback; the same through the chart's ``hub.extraConfig`` code (helm-values/values.yaml);
- Ctrl-C with apps running ends within 5 s, with no traceback and no process left;
- an audit service that cannot start (its port held) stops the hub, and everything it
  started with it;
- Ctrl-C while the hub waits for a service at start-up (before JupyterHub's own Ctrl-C
  handling exists) ends within 5 s, quietly, with no process left.

"No process left" counts the hub's children by what they carry: the data dir (apps), the
proxy's API port, and the hub's API URL (the audit service and the idle culler).
"""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers.hub import CONFIG, REPO, Hub, free_port
from tests.helpers.procs import processes_mentioning

DEMO = {"path": "apps/demo/app.py"}


def leftovers(hub: Hub) -> list[str]:
    needles = [
        str(hub.data_dir),
        f"--api-port\0{hub.proxy_api_port}",
        f"JUPYTERHUB_API_URL=http://127.0.0.1:{hub.hub_port}/hub/api",
    ]
    found = {pid for needle in needles for pid in processes_mentioning(needle)}
    out = []
    for pid in sorted(found):
        try:
            out.append(f"{pid} {Path(f'/proc/{pid}/cmdline').read_bytes()[:120]!r}")
        except OSError:
            pass
    return out


def gone(hub: Hub, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = leftovers(hub)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def ctrl_c(hub: Hub, timeout: float = 30.0) -> float:
    """SIGINT the hub as a terminal's Ctrl-C does; seconds until it exited."""
    started = time.monotonic()
    hub.proc.send_signal(signal.SIGINT)
    hub.proc.wait(timeout)
    return time.monotonic() - started


def log_of(hub: Hub) -> str:
    return hub.log_path.read_text(errors="replace")


def run_config(config: Path, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("STREAMLIT_HUB_", "JUPYTERHUB_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "jupyterhub", "-f", str(config)],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "setting, words",
    [
        (
            {"STREAMLIT_HUB_PORT": "80a"},
            "STREAMLIT_HUB_PORT='80a': expected a TCP port number from 1 to 65535",
        ),
        ({"STREAMLIT_HUB_POLICY": "BAD"}, "groups.analysts.profiles: no profile 'huge'"),
        ({"STREAMLIT_HUB_PROT": "8000", "STREAMLIT_HUB_AUDIT": "maybe"}, "STREAMLIT_HUB_AUDIT"),
    ],
    ids=["setting", "policy", "audit"],
)
def test_a_wrong_setting_stops_the_hub_with_one_sentence(tmp_path, setting, words):
    if setting.get("STREAMLIT_HUB_POLICY") == "BAD":
        (tmp_path / "policy.yaml").write_text("groups: {analysts: {profiles: [huge]}}\n")
        setting = {"STREAMLIT_HUB_POLICY": str(tmp_path / "policy.yaml")}
    r = run_config(
        CONFIG,
        {"STREAMLIT_HUB_DATA_DIR": str(tmp_path / "data"), "STREAMLIT_HUB_PORT": "8000", **setting},
        tmp_path,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "jupyterhub-streamlit: the hub cannot start: " in r.stderr
    assert words in r.stderr
    assert "Traceback" not in out and 'File "' not in out


def test_the_charts_extra_config_stops_with_one_sentence(tmp_path):
    values = yaml.safe_load((REPO / "helm-values/values.yaml").read_text())
    (code,) = values["hub"]["extraConfig"].values()
    # what the chart's jupyterhub_config.py does with each hub.extraConfig entry
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(f"c = get_config()\nexec({code!r})\n")
    r = run_config(
        config,
        {
            "STREAMLIT_HUB_MODE": "kubernetes",
            "STREAMLIT_HUB_AUTH": "demo",
            "STREAMLIT_HUB_DEMO_PASSWORD": "pw",
            "STREAMLIT_HUB_APP_ORIGINS": "shared",
            "STREAMLIT_HUB_POLICY": str(tmp_path / "no-policy.yaml"),
        },
        tmp_path,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert (
        f"jupyterhub-streamlit: the hub cannot start: STREAMLIT_HUB_POLICY="
        f"'{tmp_path / 'no-policy.yaml'}': no such file" in r.stderr
    )
    assert "Traceback" not in out


def test_ctrl_c_with_apps_running_is_quick_and_leaves_nothing(tmp_path):
    hub = Hub(tmp_path).start()
    try:
        for user in ("alice", "bob"):
            hub.start_app(hub.login(user), user, "demo", DEMO)
        assert len(hub.app_processes()) == 2
        took = ctrl_c(hub)
        assert took < 5, f"Ctrl-C took {took:.1f} s"
        assert hub.proc.returncode == 0
        assert gone(hub) == []
        log = log_of(hub)
        assert "Traceback" not in log and "AttributeError" not in log
        assert "Cleaning up 2 services" in log
    finally:
        hub.stop()


def test_an_audit_service_that_cannot_start_stops_the_hub_and_everything_with_it(tmp_path):
    # The port is free where the hub checks it (127.0.0.1) and held where the audit service
    # listens (127.0.0.2): the service fails to bind, as with a port taken after the check.
    port = free_port()
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.2", port))
    holder.listen()
    hub = Hub(tmp_path, env={"STREAMLIT_HUB_AUDIT_BIND": "127.0.0.2"})
    hub.audit_port = port
    try:
        with pytest.raises(RuntimeError, match="hub exited with"):
            hub.start(timeout=60)
        assert hub.proc.returncode == 1
        assert gone(hub) == []
        log = log_of(hub)
        assert "Service audit exited with status 2" in log
        # the service's own one sentence, no traceback (spawner/audit/service.py)
        assert f"streamlit-hub-audit: cannot listen on 127.0.0.2:{port}" in log
        assert "Traceback" not in log
        assert "stopped 2 processes the hub had started" in log  # the proxy, the culler
        assert "KeyboardInterrupt" not in log and "jupyterhub/app.py" not in log
    finally:
        holder.close()
        hub.stop()


def test_ctrl_c_while_the_hub_waits_for_a_service_is_quick_and_leaves_nothing(
    tmp_path, monkeypatch
):
    # The audit service listens where the hub does not look: the hub waits for it (30 s,
    # then gives up), its proxy, culler and audit service running, before JupyterHub handles
    # Ctrl-C. Hub.start() is told the hub is up once the audit service says it listens.
    hub = Hub(tmp_path, env={"STREAMLIT_HUB_AUDIT_BIND": "127.0.0.2"})
    import tests.helpers.hub as helper

    def up_when_waiting(url, timeout=None):
        if "streamlit_hub.audit.service] audit service on" not in log_of(hub):
            raise helper.requests.ConnectionError("not yet")
        return type("Answer", (), {"status_code": 200})()

    monkeypatch.setattr(helper.requests, "get", up_when_waiting)
    hub.start(timeout=60)
    assert "JupyterHub is now running" not in log_of(hub)
    try:
        took = ctrl_c(hub)
        assert took < 5, f"Ctrl-C took {took:.1f} s"
        assert hub.proc.returncode == 130
        assert gone(hub) == []
        log = log_of(hub)
        assert "Interrupted while the hub was starting." in log
        assert "stopped 3 processes the hub had started" in log  # proxy, culler, audit
        assert "Traceback" not in log and "KeyboardInterrupt" not in log
    finally:
        hub.stop()


def test_the_config_file_only_calls_the_package():
    code = [
        line
        for line in CONFIG.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert (
        code
        == textwrap.dedent(
            """\
        from spawner.startup import configure_or_exit
        c = get_config()  # noqa: F821 (provided by JupyterHub)
        configure_or_exit(c, extra_config=True)"""
        ).splitlines()
    )
