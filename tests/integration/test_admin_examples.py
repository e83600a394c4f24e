"""The README's admin curl examples, run exactly as written (with real curl, against a real hub)."""

import json
import re
import shutil
import subprocess

import pytest

from tests.helpers.hub import REPO

DEMO = {"path": "apps/demo/app.py"}


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("### Admins by REST", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.startswith("curl ")]


def run(cmd: str, hub, token) -> object:
    if not shutil.which("curl"):
        pytest.fail("curl is needed to run the README examples")
    out = subprocess.run(
        ["bash", "-c", cmd],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "HUB": hub.url, "TOKEN": token},
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else None


def test_readme_admin_examples_work_as_written(hub, alice):
    commands = readme_commands()
    assert len(commands) == 8, commands
    hub.start_app(alice, "alice", "demo", DEMO)
    token = hub.token("admin")
    users = run(commands[0], hub, token)
    assert "demo" in next(u for u in users if u["name"] == "alice")["servers"]
    assert run(commands[1], hub, token)["user"]["name"] == "carol"
    assert run(commands[2], hub, token)["group"]["name"] == "data-scientists"
    listed = run(commands[3], hub, token)["items"]
    assert {(i["kind"], (i["user"] or i["group"])["name"]) for i in listed} == {
        ("user", "carol"),
        ("group", "data-scientists"),
    }
    code = run(commands[4], hub, token)
    assert re.search(r"accept-share\?code=", code["accept_url"])
    run(commands[5], hub, token)
    assert [i["kind"] for i in run(commands[3], hub, token)["items"]] == ["group"]
    run(commands[6], hub, token)
    run(commands[7], hub, token)
    assert run(commands[3], hub, token)["items"] == []
    codes = hub.api(token).get(f"{hub.url}/hub/api/share-codes/alice/demo", timeout=10).json()
    assert codes["items"] == []
