import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# The machines that run this suite are shared and noisy: no per-example deadlines and no
# "input generation is slow" check (both are timing assertions). Every other health check,
# and the number of examples each test asks for, stay as they are.
settings.register_profile("project", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("project")

from tests.helpers import localhost_names  # noqa: E402

# Apps live on *.localhost hosts (one per analyst): resolve them to loopback in this process.
localhost_names.install()

REPO = Path(__file__).resolve().parents[1]

# Run as root, the hub checks at start-up (configure(), unit tests included) that the
# per-analyst app accounts can reach the app environment: open the way to this checkout's
# .venv-app (o+x on the folders above it; a fresh clone may sit in a private folder).
from tests.helpers.hub import let_app_accounts_pass  # noqa: E402

let_app_accounts_pass(REPO / ".venv-app")
OUTPUT = Path(os.environ.get("TEST_OUTPUT_DIR", REPO / "test-output"))


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server (Debian package) on a free loopback port, for the session."""
    from tests.helpers.hub import free_port
    from tests.helpers.postgres import postgres_server

    with postgres_server(free_port()) as url:
        yield url


from tests.helpers.hub import have_proxy  # noqa: E402,F401  (kept importable from here)


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = str(item.fspath)
        if "/integration/" in path or "/security/" in path:
            item.add_marker(pytest.mark.integration)
        if "/browser/" in path:
            item.add_marker(pytest.mark.browser)
