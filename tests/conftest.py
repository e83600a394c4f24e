import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OUTPUT = Path(os.environ.get("TEST_OUTPUT_DIR", REPO / "test-output"))


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


def have_proxy() -> bool:
    return (REPO / "node_modules/.bin/configurable-http-proxy").exists() or bool(
        shutil.which("configurable-http-proxy")
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = str(item.fspath)
        if "/integration/" in path:
            item.add_marker(pytest.mark.integration)
        if "/browser/" in path:
            item.add_marker(pytest.mark.browser)
