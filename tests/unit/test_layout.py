"""Each package's docstring lists every module it holds (the layout a reader starts from)."""

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "spawner"


@pytest.mark.parametrize("package", ["spawner", "spawner.app_server", "spawner.audit"])
def test_every_module_is_in_its_packages_layout_list(package):
    folder = ROOT.joinpath(*package.split(".")[1:])
    modules = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("__")}
    modules |= {p.name for p in folder.iterdir() if (p / "__init__.py").exists()}
    doc = importlib.import_module(package).__doc__
    missing = sorted(m for m in modules if f"``{m}``" not in doc)
    assert not missing, f"{package}'s docstring does not list {missing}"
