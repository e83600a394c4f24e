"""A start refused for someone other than the app's owner speaks of the owner (issue #15.7).

The admin panel shows the hub's sentence when it starts alice's app
(hub_config/templates/admin.html): "you are running sales" there would read as the admin's
own apps. An admin reads "alice is running churn, sales already."; a viewer waking a shared
app reads the count only (not the names of the owner's other apps); the owner reads "you",
as before. The admin panel's Start All starts everyone's unnamed server: an admin gets one
sentence, the same for everyone, which the panel shows once.
"""

import asyncio

import pytest
import yaml
from jupyterhub.spawner import SpawnException

from spawner.policy import RunningApp, decide_start
from spawner.policy import parse_policy as parse_data
from tests.unit.test_spawner_policy import User, app, person, running

POLICY = """
profiles:
  small: {display_name: "Small", cpu_limit: 1, mem_limit: 1G}
groups:
  analysts: {profiles: [small], max_running_apps: 2, max_apps: 5}
defaults: {profiles: [], max_running_apps: 0, max_apps: 0}
"""


def parse_policy(text):
    return parse_data(yaml.safe_load(text))


TWO = [RunningApp("sales", "small"), RunningApp("churn", "small")]


def test_the_owner_reads_you_and_the_names():
    d = decide_start(parse_policy(POLICY), ["analysts"], TWO, None, "new")
    assert d.reason == (
        "analysts may run 2 apps at once; you are running churn, sales. Stop one to start another."
    )


def test_an_admin_reads_the_owner_and_the_names():
    d = decide_start(parse_policy(POLICY), ["analysts"], TWO, None, "new", owner="alice")
    assert d.reason == "analysts may run 2 apps at once; alice is running churn, sales already."


def test_a_viewer_reads_the_owner_and_a_count_only():
    d = decide_start(
        parse_policy(POLICY), ["analysts"], TWO, None, "new", owner="alice", name_running=False
    )
    assert d.reason == "analysts may run 2 apps at once; alice is running 2 already."


def test_no_apps_for_someone_else_names_the_owner():
    policy = parse_policy(POLICY)
    assert decide_start(policy, ["viewers"], [], None).reason.endswith(
        "Ask an admin to add you to an analysts group."
    )
    d = decide_start(policy, ["viewers"], [], None, owner="carol")
    assert d.reason == (
        "Users in no app-building group may open apps shared with them but not start apps. "
        "carol would have to be in an analysts group."
    )


@pytest.fixture
def policy_file(tmp_path):
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    return str(p)


@pytest.mark.parametrize(
    ("by", "words"),
    [
        (None, "you are running churn, sales. Stop one to start another."),
        (person("root", admin=True), "alice is running churn, sales already."),
        (person("carol"), "alice is running 2 already."),
    ],
)
def test_the_spawner_words_a_quota_refusal_for_whoever_asked(policy_file, by, words):
    alice = User("alice", ["analysts"])
    running(alice, "sales")
    running(alice, "churn")
    extra = app(alice, "extra", policy_file, by=by)
    with pytest.raises(SpawnException) as e:
        asyncio.run(extra.start())
    assert e.value.jupyterhub_message == f"analysts may run 2 apps at once; {words}"


def test_an_admin_starting_an_unnamed_server_gets_one_sentence_for_everyone(policy_file):
    for owner in ("alice", "bob", "root"):  # root: the admin's own unnamed server too
        unnamed = app(User(owner, ["analysts"]), "", policy_file, by=person("root", admin=True))
        with pytest.raises(SpawnException) as e:
            asyncio.run(unnamed.start())
        assert e.value.jupyterhub_message == (
            "Every app on this hub has a name; there is no unnamed app to start."
        )


def test_the_owner_starting_an_unnamed_server_is_told_where_apps_start(policy_file):
    unnamed = app(User("alice", ["analysts"]), "", policy_file)
    with pytest.raises(SpawnException) as e:
        asyncio.run(unnamed.start())
    assert "/hub/spawn/alice/<app-name>" in e.value.jupyterhub_message
