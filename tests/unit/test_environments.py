"""Per-app environments (spawner/environments.py, #14): built with uv, layered over the platform.

Hermetic: uv runs ``--offline --no-index --find-links <tmp>`` with its cache in the test's tmp
dir, on wheels written by hand (tests/helpers/wheels.py); the platform is the checkout's real
``.venv-app`` (Streamlit and all), which is never written to. A build takes ~0.3-0.6 s here.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spawner.environments import (
    LAST_USED_NAME,
    LOG_NAME,
    META_NAME,
    PTH_NAME,
    BuildFailed,
    EnvironmentStore,
    Platform,
    PlatformConflict,
    RequirementsRefused,
    parse_requirements,
    probe_platform,
)
from tests.helpers.procs import wait_gone
from tests.helpers.wheels import build_wheel

REPO = Path(__file__).resolve().parents[2]
APP_PYTHON = REPO / ".venv-app" / "bin" / "python"
APP_SITE = REPO / ".venv-app" / "lib"

pytestmark = pytest.mark.skipif(
    not APP_PYTHON.exists(), reason="the platform's app environment (.venv-app) is not built"
)


@pytest.fixture(scope="module")
def platform() -> Platform:
    return probe_platform(str(APP_PYTHON))


@pytest.fixture(scope="module")
def wheels(tmp_path_factory, platform) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    build_wheel(folder, "tinyapp", requires=["tornado>=6"])
    build_wheel(folder, "helper-lib", "2.0")
    build_wheel(folder, "uses-helper", requires=["helper-lib>=2"])
    build_wheel(folder, "oldtornado", requires=["tornado<6"])
    build_wheel(folder, "streamlit", "0.1")  # what an index may offer; the platform has 1.67
    build_wheel(folder, "tornado", "5.0")
    # another distribution shipping a module named like a platform package
    build_wheel(folder, "tornado-shadow", module="tornado", source='version = "shadowed"\n')
    for n in range(3):
        build_wheel(folder, f"bulky{n}", padding=200_000)
    return folder


@pytest.fixture
def make_store(tmp_path, wheels, platform):
    def make(**kwargs) -> EnvironmentStore:
        options = {
            "find_links": [str(wheels)],
            "no_index": True,
            "offline": True,
            "platform": platform,
        }
        options.update(kwargs)
        return EnvironmentStore(tmp_path / "environments", str(APP_PYTHON), **options)

    return make


@pytest.fixture
def store(make_store) -> EnvironmentStore:
    return make_store()


def run_in(env_python: Path, code: str) -> str:
    result = subprocess.run(
        [str(env_python), "-c", code], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def leftovers(store: EnvironmentStore) -> list[str]:
    """What builds left outside published environments (temp folders, half-built venvs)."""
    return (
        sorted(p.name for p in store.building_dir.glob("*")) if store.building_dir.exists() else []
    )


# ---- a requirement installs, the platform wins ------------------------------------------------
def test_a_requirement_installs_and_the_platforms_streamlit_is_still_the_platforms(store, platform):
    events = []
    env = asyncio.run(store.ensure("tinyapp\n", progress=lambda p, m: events.append((p, m))))

    assert env.installed == ("tinyapp==1.0",)  # tornado (a dependency) is the platform's
    assert env.path == store.envs_dir / env.key and env.python.exists()
    out = run_in(
        env.python,
        "import json, importlib.util, streamlit, tinyapp, tornado; print(json.dumps(["
        "tinyapp.__version__, streamlit.__version__, streamlit.__file__, tornado.version, "
        "importlib.util.find_spec('spawner.app_server') is not None]))",
    )
    tiny, st_version, st_file, tornado_version, app_server = json.loads(out)
    assert tiny == "1.0"
    assert st_version == platform.pins["streamlit"]
    assert st_file.startswith(str(APP_SITE))
    assert tornado_version == platform.pins["tornado"]
    assert app_server  # the app server itself (the editable project) runs from this env
    percents = [p for p, _ in events]
    assert percents == sorted(percents) and percents[-1] == 100
    assert any("Installing 1 package" in m for _, m in events)
    assert leftovers(store) == []


def test_a_dependency_the_platform_lacks_is_installed_with_the_requirement(store):
    env = asyncio.run(store.ensure("uses-helper"))
    assert env.installed == ("helper-lib==2.0", "uses-helper==1.0")
    assert run_in(env.python, "import helper_lib; print(helper_lib.__version__)") == "2.0"


def test_the_platform_comes_first_even_over_a_module_of_the_same_name(store, platform):
    """A distribution the platform lacks ships a module ``tornado``: the platform's wins."""
    env = asyncio.run(store.ensure("tornado-shadow"))
    assert env.installed == ("tornado-shadow==1.0",)
    assert run_in(env.python, "import tornado; print(tornado.version)") == platform.pins["tornado"]
    site = next(env.path.glob("lib/python*/site-packages"))
    assert (site / PTH_NAME).exists()


def test_requirements_the_platform_already_satisfies_install_nothing(store):
    env = asyncio.run(store.ensure("streamlit\ntornado>=6\nJinja2"))
    assert env.installed == ()


# ---- conflicts with the platform's pins --------------------------------------------------
@pytest.mark.parametrize(
    ("requirement", "package"),
    [("streamlit==0.1", "streamlit"), ("oldtornado", "tornado"), ("tornado<6", "tornado")],
)
def test_a_requirement_conflicting_with_a_platform_pin_is_refused_naming_it(
    store, platform, requirement, package
):
    with pytest.raises(PlatformConflict) as caught:
        asyncio.run(store.ensure(requirement))
    error = caught.value
    assert error.packages == (package,)
    assert f"{package}=={platform.pins[package]}" in str(error)
    assert str(error).startswith(f"Refused: the requirements need another version of {package}")
    assert "unsatisfiable" in error.log
    assert store.list() == [] and leftovers(store) == []


# ---- content addressing -------------------------------------------------------------------
def test_the_same_requirements_reuse_the_same_environment(store):
    first = asyncio.run(store.ensure("tinyapp\nuses-helper\n"))
    built = (first.path / META_NAME).stat().st_mtime_ns
    # order, case, spacing, comments and duplicates do not make another environment
    again = asyncio.run(
        store.ensure("# my app\nUses_Helper  \n\nTinyApp # the app\ntinyapp\n", progress=None)
    )
    assert again.key == first.key and again.path == first.path
    assert store.builds == 1
    assert (again.path / META_NAME).stat().st_mtime_ns == built
    assert again.last_used >= first.last_used
    other = asyncio.run(store.ensure("tinyapp"))
    assert other.key != first.key and store.builds == 2


def test_the_key_covers_the_platform_pins_and_python(store, platform):
    requirements = parse_requirements("tinyapp")
    key = store.key(requirements)
    bumped = Platform(**{**platform.__dict__, "pins": {**platform.pins, "tornado": "6.6.2"}})
    other_python = Platform(**{**platform.__dict__, "python_id": "cpython-3.12.0-linux-x86_64"})
    assert EnvironmentStore(store.root, "x", uv="uv", platform=bumped).key(requirements) != key
    assert EnvironmentStore(store.root, "x", uv="uv", platform=other_python).key(requirements) != (
        key
    )


def test_concurrent_builds_of_the_same_requirements_build_once(store):
    async def both():
        return await asyncio.gather(store.ensure("tinyapp"), store.ensure("tinyapp"))

    first, second = asyncio.run(both())
    assert first.key == second.key and store.builds == 1


# ---- refused before any build ---------------------------------------------------------------
HOSTILE = [
    ("--index-url https://evil.example/simple", "package index"),
    ("-i https://evil.example/simple", "package index"),
    ("--extra-index-url=https://evil.example/simple", "package index"),
    ("-e .", "editable install"),
    ("--editable git+https://example.com/x.git", "editable install"),
    ("git+https://example.com/x.git", "version-control"),
    ("pkg @ git+https://example.com/x.git", "version-control"),
    ("pkg @ https://example.com/pkg-1.0.whl", "file or URL"),
    ("https://example.com/pkg-1.0.tar.gz", "file or URL"),
    ("./vendor/pkg", "file or URL"),
    ("/tmp/pkg-1.0-py3-none-any.whl", "file or URL"),
    ("pkg-1.0-py3-none-any.whl", "file or URL"),
    ("file:///tmp/pkg", "file or URL"),
    ("pkg @ file:///tmp/pkg", "file or URL"),
    ("-r other.txt", "includes another file"),
    ("--requirement=other.txt", "includes another file"),
    ("-c constraints.txt", "includes another file"),
    ("--find-links /tmp/wheels", "option (--find-links)"),
    ("--trusted-host evil.example", "option (--trusted-host)"),
    ("--no-index", "option (--no-index)"),
    ("pkg==1.0 --hash=sha256:abcd", "option after the requirement"),
    ("pkg==${PKG_VERSION}", "environment variable"),
    ("this is not a requirement", "is not a requirement"),
]


@pytest.mark.parametrize(("line", "says"), HOSTILE)
def test_hostile_requirement_lines_are_refused_with_a_sentence(line, says):
    with pytest.raises(RequirementsRefused) as caught:
        parse_requirements(f"streamlit\n# a comment\n{line}\n")
    assert says in str(caught.value)
    assert str(caught.value).startswith("Line 3 of requirements.txt")
    assert caught.value.line == 3


def test_a_refusal_happens_before_any_build(store):
    with pytest.raises(RequirementsRefused):
        asyncio.run(store.ensure("tinyapp\n--index-url https://evil.example/simple\n"))
    assert store.builds == 0 and not store.envs_dir.exists()


def test_the_allowed_index_may_be_named_and_credentials_never_show():
    index = "https://builder:s3cret@pypi.internal.example/simple"
    assert parse_requirements(f"--index-url {index}/\npandas", index_url=index).lines == ("pandas",)
    with pytest.raises(RequirementsRefused) as caught:
        parse_requirements("-i https://me:hunter2@evil.example/simple\npandas", index_url=index)
    assert "hunter2" not in str(caught.value) and "s3cret" not in str(caught.value)
    assert "https://****@evil.example/simple" in str(caught.value)
    assert "https://****@pypi.internal.example/simple" in str(caught.value)


def test_requirements_are_normalized():
    parsed = parse_requirements(
        "Pandas >= 2.2 ; python_version >= '3.11'\nscikit_learn[extra]==1.5\npandas>=2.2\n"
        "requests \\\n    >=2.0\n"
    )
    assert parsed.lines == (
        "pandas>=2.2",
        'pandas>=2.2; python_version >= "3.11"',
        "requests>=2.0",
        "scikit-learn[extra]==1.5",
    )
    assert not parse_requirements("# nothing\n\n")


# ---- failures leave nothing -------------------------------------------------------------------
def test_a_missing_package_fails_with_the_log_and_leaves_nothing(store):
    with pytest.raises(BuildFailed) as caught:
        asyncio.run(store.ensure("tinyapp\nno-such-package==1.0\n"))
    error = caught.value
    assert "no-such-package" in str(error) and "could not be resolved" in str(error)
    assert "no-such-package" in error.log and "$ " in error.log  # the commands and their output
    key = store.key(store.parse("tinyapp\nno-such-package==1.0\n"))
    assert store.failed_log(key) == error.log  # kept
    assert store.get(key) is None and store.list() == [] and leftovers(store) == []


def test_an_environment_over_the_size_limit_is_refused_and_deleted(make_store):
    store = make_store(max_env_bytes=150_000)
    with pytest.raises(BuildFailed) as caught:
        asyncio.run(store.ensure("bulky0"))
    assert "more than the 150.0 KB allowed" in str(caught.value)
    assert store.list() == [] and leftovers(store) == []


@pytest.fixture
def slow_uv(tmp_path):
    """A stand-in uv that hangs (its marker lets the test find its processes)."""
    marker = f"slow-uv-{os.getpid()}-{time.monotonic_ns()}"
    script = tmp_path / marker
    script.write_text(
        f"#!/bin/sh\n{sys.executable} -c 'import time; time.sleep(60)' {marker} &\nwait\n"
    )
    script.chmod(0o755)
    return str(script), marker


def test_a_build_past_its_timeout_is_stopped_and_leaves_nothing(make_store, slow_uv):
    uv, marker = slow_uv
    store = make_store(uv=uv, build_timeout=1)
    started = time.monotonic()
    with pytest.raises(BuildFailed) as caught:
        asyncio.run(store.ensure("tinyapp"))
    assert time.monotonic() - started < 10
    assert "longer than the 1 s allowed" in str(caught.value)
    assert wait_gone(marker, timeout=5) == []  # the whole process group was killed
    assert store.list() == [] and leftovers(store) == []


def test_a_cancelled_build_is_stopped_and_leaves_nothing(make_store, slow_uv):
    uv, marker = slow_uv
    store = make_store(uv=uv)

    async def cancel_soon():
        task = asyncio.ensure_future(store.ensure("tinyapp"))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_soon())
    assert wait_gone(marker, timeout=5) == []
    assert store.list() == [] and leftovers(store) == []


def test_a_published_environment_is_readable_by_the_app_accounts(store):
    env = asyncio.run(store.ensure("tinyapp"))
    assert not (env.path / ".lock").exists()  # uv's lock file is world-writable
    for path in [env.path, *env.path.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        assert mode & stat.S_IROTH, path
        assert not mode & stat.S_IWOTH, path
        if path.is_dir():
            assert mode & stat.S_IXOTH, path
    assert (env.path / LOG_NAME).read_text().count("$ ") >= 3  # the build log is kept


# ---- eviction -----------------------------------------------------------------------------
def _age(store: EnvironmentStore, key: str, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    os.utime(store.envs_dir / key / LAST_USED_NAME, (when, when))


def test_lru_eviction_under_a_budget_keeps_environments_in_use(store):
    envs = [asyncio.run(store.ensure(f"bulky{n}")) for n in range(3)]
    for age, env in zip((300, 200, 100), envs, strict=True):
        _age(store, env.key, age)  # bulky0 is the least recently used
    one = max(env.size for env in envs)

    evicted = store.evict(in_use=[envs[0].key], budget=one + 1)

    assert evicted == [envs[1].key, envs[2].key]  # oldest first, skipping the one in use
    assert [env.key for env in store.list()] == [envs[0].key]
    assert store.evict(in_use=[], budget=10**12) == []


def test_a_build_evicts_down_to_the_budget_but_never_itself_or_one_in_use(make_store):
    store = make_store(disk_budget=10**12)
    old, used = (asyncio.run(store.ensure(f"bulky{n}")) for n in range(2))
    _age(store, old.key, 300)
    _age(store, used.key, 400)
    store.disk_budget = 1  # nothing fits: every environment would go, but for these two
    new = asyncio.run(store.ensure("bulky2", in_use=[used.key]))
    assert sorted(env.key for env in store.list()) == sorted([used.key, new.key])


def test_using_an_environment_makes_it_recent(store):
    env = asyncio.run(store.ensure("bulky0"))
    _age(store, env.key, 1000)
    store.touch(env.key)
    assert time.time() - store.get(env.key).last_used < 60


def test_uv_comes_from_the_hub_environment():
    from spawner.environments import _find_uv

    assert Path(_find_uv()).parent == Path(sys.executable).parent


def test_environments_outlive_a_cleaned_uv_cache(store):
    env = asyncio.run(store.ensure("tinyapp"))
    assert any(store.cache_dir.iterdir())
    store.clean_cache()
    assert not store.cache_dir.exists() or not any(store.cache_dir.rglob("*.py"))
    assert run_in(env.python, "import tinyapp; print(tinyapp.__version__)") == "1.0"


def test_index_credentials_never_reach_the_log(make_store):
    store = make_store(index_url="https://builder:s3cret-token@pypi.internal.example/simple")
    with pytest.raises(BuildFailed) as caught:
        asyncio.run(store.ensure("no-such-package"))
    assert "--index-url https://****@pypi.internal.example/simple" in caught.value.log
    assert "s3cret-token" not in caught.value.log + str(caught.value)
