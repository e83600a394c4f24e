"""Publishing wired together (spawner/publishing.py) and its policy keys, without a hub.

Bundles and versions are the real stores on a temporary folder; environments are left out
(``environments=None``) except where a test says so: the uv builds are tested in
tests/unit/test_environments.py and, end to end, tests/integration/test_publish.py.
"""

from __future__ import annotations

import asyncio
import os
import re

import pytest
import yaml

from spawner.bundles import BundleLimitError
from spawner.policy import PolicyError, limits_for, parse_policy
from spawner.publishing import (
    DeployError,
    Publisher,
    PublishLimits,
    check_run,
    forget_app,
    prepare_run,
    read_requirements,
    run_folder,
)
from spawner.versions import Source, VersionError
from tests.helpers.bundles import tar_gz as bundle


def deploy(pub: Publisher, files, app="sales", **kw):
    return asyncio.run(
        pub.deploy("alice", app, bundle(files), by="alice", source=Source.upload(), **kw)
    )


@pytest.fixture
def pub(tmp_path):
    return Publisher(tmp_path / "publish", None)


def test_a_deploy_records_an_active_version_and_says_each_step(pub):
    steps = []
    done = deploy(pub, {"app.py": "print(1)"}, progress=lambda p, m: steps.append((p, m)))
    assert done.version.id == "v1" and done.activated and done.previous is None
    assert pub.versions.active_id("alice", "sales") == "v1"
    assert [p for p, _ in steps] == sorted(p for p, _ in steps)
    assert steps[0] == (5, "Checking the bundle")
    assert steps[-1][1].startswith("Deployed v1 (sha256:")
    assert "no requirements.txt" in pub.last_build_log("alice", "sales")


def test_a_second_deploy_remembers_the_one_it_replaced(pub):
    deploy(pub, {"app.py": "1"})
    done = deploy(pub, {"app.py": "2"})
    assert (done.version.id, done.previous) == ("v2", "v1")
    kept = deploy(pub, {"app.py": "3"}, activate=False)
    assert not kept.activated and pub.versions.active_id("alice", "sales") == "v2"


def test_requirements_without_an_environment_store_are_refused_and_nothing_is_recorded(pub):
    with pytest.raises(DeployError, match="builds no per-app environments") as e:
        deploy(pub, {"app.py": "1", "requirements.txt": "humanize\n"})
    assert e.value.http_status == 400
    assert pub.versions.versions("alice", "sales") == []


def test_limits_apply_to_the_upload(pub):
    limits = PublishLimits(bundle=PublishLimits().bundle.__class__(max_archive_bytes=1000))
    with pytest.raises(BundleLimitError):
        deploy(pub, {"app.py": "1", "data.bin": os.urandom(5000)}, limits=limits)
    assert pub.versions.versions("alice", "sales") == []


def test_two_deploys_of_one_app_at_once_are_both_recorded_one_after_the_other(pub):
    steps = []

    async def both():
        return await asyncio.gather(
            *(
                pub.deploy(
                    "alice",
                    "sales",
                    bundle({"app.py": str(i)}),
                    by="alice",
                    source=Source.upload(),
                    progress=lambda p, m: steps.append(m),
                )
                for i in range(2)
            )
        )

    first, second = asyncio.run(both())
    assert {first.version.id, second.version.id} == {"v1", "v2"}
    assert "Waiting for another deploy of this app to finish" in steps


def test_requirements_are_read_from_the_bundle_top_level_only(pub):
    info = pub.bundles.add(bundle({"app.py": "1", "sub/requirements.txt": "x\n"}))
    assert read_requirements(pub.bundles, info.digest) is None
    info = pub.bundles.add(bundle({"app.py": "1", "requirements.txt": "humanize>=4\n"}))
    assert read_requirements(pub.bundles, info.digest) == "humanize>=4\n"
    info = pub.bundles.add(bundle({"app.py": "1", "requirements.txt": b"\xff\xfe"}))
    with pytest.raises(DeployError, match="not UTF-8"):
        read_requirements(pub.bundles, info.digest)


def test_a_run_is_extracted_read_only_and_older_ones_are_removed(pub):
    deploy(pub, {"app.py": "1", "pages/1_A.py": "a"})
    root = pub.root
    first = prepare_run(root, "alice", "sales")
    assert first.entry.read_text() == "1" and first.python is None
    assert first.folder == run_folder(root, "alice", "sales", first.version)
    assert oct(first.folder.stat().st_mode & 0o777) == oct(0o555)
    assert oct(first.entry.stat().st_mode & 0o777) == oct(0o444)
    assert oct((root / "runs").stat().st_mode & 0o777) == oct(0o711)
    deploy(pub, {"app.py": "2"})
    second = prepare_run(root, "alice", "sales")
    assert second.entry.read_text() == "2" and not first.folder.exists()
    again = prepare_run(root, "alice", "sales", "v1")
    assert again.version.id == "v1" and again.entry.read_text() == "1"


def test_a_run_of_a_missing_version_or_environment_is_refused_with_a_sentence(pub):
    with pytest.raises(VersionError, match="sales has no active version: deploy one first"):
        check_run(pub.root, "alice", "sales")
    done = deploy(pub, {"app.py": "1"})
    pub.versions.set_environment("alice", "sales", done.version.id, "0" * 32)
    with pytest.raises(VersionError, match="environment is gone"):
        check_run(pub.root, "alice", "sales")
    with pytest.raises(VersionError, match="no version v7"):
        check_run(pub.root, "alice", "sales", "v7")


# ---- the policy's publishing keys --------------------------------------------------------
POLICY = """
profiles: {small: {cpu_limit: 1, mem_limit: 1G}}
groups:
  analysts: {profiles: [small], max_running_apps: 1, max_apps: 3, max_upload_size: 10M,
             max_environment_size: 1G, package_index: "https://pypi.example.com/simple"}
  heavy: {profiles: [small], max_running_apps: 1, max_apps: 3, max_upload_size: 50M,
          build_timeout: 1200, package_index: "https://other.example.com/simple"}
  readers: {may_publish: false}
defaults: {profiles: [], max_running_apps: 0, max_apps: 0, may_publish: false,
           max_bundle_size: 5M}
"""


def parse(text: str):
    return parse_policy(yaml.safe_load(text))


def rule(groups):
    return limits_for(parse(POLICY), groups).rule


def test_a_group_sets_the_publishing_limits_and_the_most_generous_group_wins():
    one = rule(["analysts"])
    assert (one.may_publish, one.max_upload_size, one.max_environment_size) == (
        True,
        10 * 2**20,
        2**30,
    )
    assert one.max_bundle_size == 5 * 2**20  # from defaults: no group sets it
    assert one.build_timeout is None and one.package_index == "https://pypi.example.com/simple"
    both = rule(["analysts", "heavy"])
    assert both.max_upload_size == 50 * 2**20 and both.build_timeout == 1200
    assert both.package_index == "https://pypi.example.com/simple"  # the first group's
    assert not rule(["readers"]).may_publish and not rule([]).may_publish
    assert rule(["readers", "analysts"]).may_publish


def test_publish_limits_come_from_the_rule_with_the_hubs_defaults_for_what_is_unset():
    limits = PublishLimits.of(rule(["analysts"]))
    assert limits.bundle.max_archive_bytes == 10 * 2**20
    assert limits.bundle.max_bundle_bytes == 5 * 2**20
    assert limits.bundle.max_files == PublishLimits().bundle.max_files
    assert limits.environment_bytes == 2**30 and limits.build_timeout is None


@pytest.mark.parametrize(
    "value",
    ["ftp://x.example.com/simple", "http://pypi.example.com/simple", "simple", 5, ""],
)
def test_a_package_index_must_be_an_https_url(value):
    text = POLICY.replace('"https://pypi.example.com/simple"', repr(value) if value else '""')
    with pytest.raises(
        PolicyError, match=re.escape("groups.analysts.package_index: expected the index")
    ):
        parse(text)


def test_http_is_allowed_on_loopback_only_and_timeouts_have_a_floor():
    text = POLICY.replace("https://pypi.example.com/simple", "http://127.0.0.1:3141/simple")
    assert parse(text).groups["analysts"].package_index.startswith("http://127.0.0.1")
    with pytest.raises(
        PolicyError, match=re.escape("groups.heavy.build_timeout: must be at least 10")
    ):
        parse(POLICY.replace("build_timeout: 1200", "build_timeout: 5"))
    with pytest.raises(
        PolicyError, match=re.escape("groups.readers.may_publish: expected true or false")
    ):
        parse(POLICY.replace("may_publish: false}", 'may_publish: "no"}', 1))


def test_a_deleted_app_takes_its_versions_build_log_and_runs_along(pub):
    deploy(pub, {"app.py": "1"})
    deploy(pub, {"app.py": "1"}, app="other")
    run = prepare_run(pub.root, "alice", "sales")
    forget_app(pub.root, "alice", "sales")
    assert pub.versions.versions("alice", "sales") == []
    assert pub.last_build_log("alice", "sales") is None
    assert not run.folder.exists()
    assert [a for _, a in pub.versions.apps()] == ["other"]
    assert pub.published_apps("alice") == {"other"} and pub.published_apps("bob") == set()
    forget_app(pub.root, "alice", "never-deployed")  # nothing to forget: no error
    forget_app(pub.root, "alice", "Bad Name")


def test_bundles_no_version_points_at_go_after_a_deploy(pub):
    kept = deploy(pub, {"app.py": "kept"}).version
    old = deploy(pub, {"app.py": "old"}).version
    pub.versions.activate("alice", "sales", kept.id)
    pub.versions.delete("alice", "sales", old.id)
    assert pub.bundles.has(old.digest)
    assert pub.collect_garbage(grace_seconds=0) == [old.digest]
    assert pub.bundles.has(kept.digest) and not pub.bundles.has(old.digest)
    deploy(pub, {"app.py": "new"})  # the deploy collects too, within the grace period: none
    assert pub.bundles.has(kept.digest)
