"""The app server's command, shared by both spawners (spawner/command.py): ``app_command`` is
the one setting; ``cmd`` follows it whatever was configured, and no notebook-server flags."""

import asyncio
import logging

import pytest
from traitlets.config import Config

# (spawner.kube from there: that module gives kubernetes_asyncio a KUBECONFIG before import)
from tests.unit.test_kube_manifest import StreamlitKubeSpawner


def local_spawner(config=None):
    from spawner.local import StreamlitLocalSpawner

    return StreamlitLocalSpawner(config=config or Config())


def kube_spawner(config=None):
    async def construct():  # KubeSpawner builds its API client on a running event loop
        return StreamlitKubeSpawner(_mock=True, config=config or Config())

    return asyncio.run(construct())


SPAWNERS = {"local": local_spawner, "kube": kube_spawner}


def test_local_apps_run_with_the_app_environments_python():
    config = Config()
    config.StreamlitLocalSpawner.app_python = "/opt/app-env/bin/python"
    sp = local_spawner(config)
    assert sp.cmd == sp.app_command == ["/opt/app-env/bin/python", "-m", "spawner.app_server"]


def test_kube_apps_run_with_the_app_images_python():
    assert kube_spawner().cmd == ["python", "-m", "spawner.app_server"]


@pytest.mark.parametrize("kind", SPAWNERS)
def test_configured_app_command_is_the_command_and_takes_no_flags(kind):
    config = Config()
    config.Spawner.app_command = ["/srv/app-server"]  # (any section the spawner reads)
    sp = SPAWNERS[kind](config)
    assert sp.cmd == ["/srv/app-server"] and sp.get_args() == []
    sp.app_command = ["/srv/other"]  # set later (a hook): the command follows
    assert sp.cmd == ["/srv/other"]


@pytest.mark.parametrize("kind", SPAWNERS)
@pytest.mark.parametrize(
    "cmd, warned",
    [
        (None, False),  # the chart's `singleuser.cmd: null`
        ("same", False),
        (["jupyterhub-singleuser"], True),  # JupyterHub's and the chart's default
    ],
)
def test_a_configured_cmd_is_replaced(kind, cmd, warned, caplog):
    default = SPAWNERS[kind]().app_command
    config = Config()
    config.Spawner.cmd = list(default) if cmd == "same" else cmd
    with caplog.at_level(logging.WARNING):
        sp = SPAWNERS[kind](config)
    assert sp.cmd == list(default)
    warnings = [r.getMessage() for r in caplog.records if "cmd is configured" in r.getMessage()]
    assert bool(warnings) is warned
    if warned:
        assert "jupyterhub-singleuser" in warnings[0] and "app_command" in warnings[0]
