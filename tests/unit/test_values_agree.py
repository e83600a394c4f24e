"""helm-values/ set nothing the streamlit-kube spawner owns.

The chart's hub configuration (``files/hub/jupyterhub_config.py``) sets KubeSpawner traits from
``singleuser.*`` values whenever they are not null, and configuration beats a subclass's
``@default``: a value there silently replaces the spawner's own setting (the app server's
command, its user, its volume group). So for every trait the spawner gives a default of its
own, the value the chart reads it from must be null (Helm then drops the chart's default too),
unless the spawner keeps its value over configuration by itself. The first tests read the
chart's own code to know which values feed which traits; the last one runs the chart's hub
configuration with the rendered values (tests/helpers/chart_hub.py) and compares the spawner
it configures with one configured by nothing.
"""

from __future__ import annotations

import ast
import json

import pytest

from tests.helpers.chart_hub import SPAWNER_TRAITS, site_objects, through_chart
from tests.helpers.helm import LOCAL_VALUES, REPO, VALUES, chart_dir, render

# (spawner.kube from there: that module gives kubernetes_asyncio a KUBECONFIG before import)
from tests.unit.test_kube_manifest import StreamlitKubeSpawner, make

NS = "streamlit-hub"
POLICY = REPO / "hub_config" / "policy.yaml"
# The spawner's own settings it keeps over configuration by itself: StreamlitKubeSpawner's
# __init__ puts the group policy's profiles back (a configured non-empty list with a warning).
KEPT_OVER_CONFIGURATION = {"profile_list"}


def spawner_own_defaults() -> set[str]:
    """Traits the spawner (its own classes, not KubeSpawner's) gives a default of its own."""
    return {
        name
        for cls in StreamlitKubeSpawner.__mro__
        if cls.__module__.startswith("spawner.")
        for name in cls.__dict__.get("_trait_default_generators", {})
    }


DYNAMIC_STORAGE = "storage_type == 'dynamic'"


def chart_spawner_settings() -> list[tuple[str, str | None, str | None]]:
    """(trait, value key, condition) for every spawner trait the chart's hub configuration
    sets, read from its code: ``set_config_if_not_none`` (the loop and single calls: set when
    the ``singleuser`` value is not null), assignments to ``c.KubeSpawner``/``c.Spawner`` (value
    key None), each with the ``if`` around it (None: always)."""
    source = (chart_dir() / "files" / "hub" / "jupyterhub_config.py").read_text()
    tree = ast.parse(source)
    namespace: dict = {"re": __import__("re")}
    (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "camelCaseify"]
    exec(compile(ast.Module([fn], []), "camelCaseify", "exec"), namespace)
    camel = namespace["camelCaseify"]
    spawners = ("c.KubeSpawner", "c.Spawner")

    def walk(node, cond):
        if isinstance(node, ast.If):
            test = ast.unparse(node.test)
            for n in node.body:
                yield from walk(n, test if cond is None else f"{cond} and {test}")
            for n in node.orelse:
                yield from walk(n, f"not ({test})" if cond is None else f"{cond} and not {test}")
            return
        yield node, cond
        for child in ast.iter_child_nodes(node):
            yield from walk(child, cond)

    out = []
    for node, cond in walk(tree, None):
        if isinstance(node, ast.For) and "set_config_if_not_none(c.KubeSpawner" in ast.unparse(
            node
        ):
            for pair in node.iter.elts:
                trait, key = ast.literal_eval(pair)
                out.append((trait, "singleuser." + (key or camel(trait)), cond))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", "") == "set_config_if_not_none"
            and ast.unparse(node.args[0]) in spawners
            and all(isinstance(a, ast.Constant) for a in node.args[1:])
        ):
            out.append((node.args[1].value, node.args[2].value, cond))
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Attribute) and ast.unparse(target.value) in spawners:
                    out.append((target.attr, None, cond))
    # Spawner.cmd is set from singleuser.cmd whenever that key is there, null included
    assert 'specified_cmd = get_config("singleuser.cmd", _unspecified)' in source
    return [(t, "singleuser.cmd" if t == "cmd" else k, c) for t, k, c in out]


def lookup(values: dict, key: str):
    for level in key.split("."):
        if not isinstance(values, dict) or level not in values:
            return None
        values = values[level]
    return values


@pytest.fixture(scope="module", params=["production", "local"])
def values(request):
    files = [VALUES, *([LOCAL_VALUES] if request.param == "local" else [])]
    return render(*files, namespace=NS).values  # the chart's defaults with ours, as Helm merges


def test_the_chart_code_is_read_as_expected():
    settings = {t: (k, c) for t, k, c in chart_spawner_settings()}
    assert settings["uid"] == ("singleuser.uid", None)
    assert settings["fs_gid"] == ("singleuser.fsGid", None)
    assert settings["profile_list"] == ("singleuser.profileList", None)
    assert settings["default_url"] == ("singleuser.defaultUrl", None)  # a single call
    assert settings["volumes"] == (None, None)  # an assignment, always
    assert settings["storage_capacity"] == ("singleuser.storage.capacity", DYNAMIC_STORAGE)
    assert settings["cmd"][0] == "singleuser.cmd"
    assert {"uid", "cmd", "fs_gid", "profile_list"} <= spawner_own_defaults()
    assert "image" not in spawner_own_defaults()  # KubeSpawner's: the chart may set it


def test_the_values_set_nothing_the_spawner_owns(values):
    from spawner.kube import CHART_VALUES_LEFT_TO_THE_SPAWNER

    own = spawner_own_defaults() - KEPT_OVER_CONFIGURATION
    from_values, unchecked = {}, []
    for trait, key, cond in chart_spawner_settings():
        if trait not in own:
            continue
        if key and (cond is None or trait == "cmd"):
            from_values[key.removeprefix("singleuser.")] = trait
            assert lookup(values, key) is None, f"{key} sets {trait}, the spawner's own"
        elif cond and cond.startswith(DYNAMIC_STORAGE):
            assert values["singleuser"]["storage"]["type"] != "dynamic", trait
        else:
            unchecked.append((trait, key, cond))
    assert unchecked == []  # the chart sets one of the spawner's own some new way: look at it
    # the spawner's own list of them (its module docstring, the values' comment) is complete
    assert from_values == CHART_VALUES_LEFT_TO_THE_SPAWNER


def test_what_the_spawner_keeps_by_itself_is_left_empty(values):
    # a configured list would be ignored with a warning: the profiles are the group policy's
    assert values["singleuser"]["profileList"] == []
    # the spawner makes the home PVC (home-<user>) and mounts it itself; the chart's dynamic
    # storage would set pvc_name_template, storage_pvc_ensure and storage_capacity
    assert values["singleuser"]["storage"]["type"] == "none"


@pytest.fixture(scope="module")
def through(tmp_path_factory):
    start = {"user": "alice", "groups": ["analysts"], "options": {}, "name": "demo"}
    return through_chart(
        render(VALUES, namespace=NS),
        site_objects(POLICY.read_text()),
        tmp_path_factory.mktemp("agree"),
        [start],
        namespace=NS,
    )


def test_through_the_chart_the_spawner_keeps_its_own_settings(through):
    (start,) = through["starts"]
    plain = make(str(POLICY), "alice", ["analysts"])  # configured by nothing
    compared = sorted(spawner_own_defaults() & set(SPAWNER_TRAITS))
    assert {"cmd", "uid", "gid", "fs_gid", "pvc_name_template"} <= set(compared)
    assert {t: start["spawner"][t] for t in compared} == {
        t: json.loads(json.dumps(getattr(plain, t))) for t in compared
    }
    pod = start["pod"]
    (c,) = pod["spec"]["containers"]
    assert c["args"] == plain.app_command == ["python", "-m", "spawner.app_server"]
    assert c["securityContext"]["runAsUser"] == pod["spec"]["securityContext"]["runAsUser"] == 1000
    assert pod["spec"]["securityContext"]["fsGroup"] == 1000
    assert "is configured" not in through["stderr"]  # no configured cmd was set aside
