"""helm-values/*.yaml against the z2jh chart's own values schema (tests/reference/z2jh/),
alone and merged the way `helm -f values.yaml -f values-local.yaml` merges them."""

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((REPO / "tests/reference/z2jh/values.schema.yaml").read_text())
FILES = sorted((REPO / "helm-values").glob("*.yaml"))


def helm_merge(base, overlay):
    """Helm's rule: maps merge key by key; anything else (lists too) is replaced."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = helm_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def chart_values(*files):
    values = yaml.safe_load((REPO / "tests/reference/z2jh/values.yaml").read_text())
    for f in files:
        values = helm_merge(values, yaml.safe_load(f.read_text()))
    return values


def errors(values):
    validator = jsonschema.Draft7Validator(SCHEMA)
    return sorted(
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values)
    )


def test_there_are_values_files():
    assert {f.name for f in FILES} >= {"values.yaml", "values-local.yaml"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_each_file_is_valid_on_the_chart_defaults(path):
    assert errors(chart_values(path)) == []


def test_the_local_overlay_is_valid_on_top_of_production():
    merged = chart_values(REPO / "helm-values/values.yaml", REPO / "helm-values/values-local.yaml")
    assert errors(merged) == []
    assert merged["hub"]["extraEnv"]["STREAMLIT_HUB_AUTH"] == "demo"


def test_the_schema_catches_a_typo():
    bad = chart_values(REPO / "helm-values/values.yaml")
    bad["singleuser"]["networkPolicyy"] = {"enabled": True}
    assert any("networkPolicyy" in e for e in errors(bad))


def test_values_wire_the_platform_and_keep_logic_in_python():
    v = yaml.safe_load((REPO / "helm-values/values.yaml").read_text())
    (extra,) = v["hub"]["extraConfig"].values()
    code = [line for line in extra.splitlines() if line.strip()]
    # configure(c), a wrong setting stopping the hub with its sentence (spawner/startup.py)
    assert code == ["from spawner.startup import configure_or_exit", "configure_or_exit(c)"]
    assert v["hub"]["allowNamedServers"] is True
    assert v["hub"]["extraEnv"]["STREAMLIT_HUB_MODE"] == "kubernetes"
    # the app server's command, user and volume group are the spawner's: null (Helm then drops
    # the chart's defaults); tests/unit/test_values_agree.py checks every such value
    assert [v["singleuser"][k] for k in ("cmd", "uid", "fsGid")] == [None, None, None]
    assert v["singleuser"]["networkPolicy"]["enabled"] is True
    assert v["cull"]["enabled"] is False  # the platform's culler has the per-group timeouts
    assert v["prePuller"]["hook"]["enabled"] and v["prePuller"]["continuous"]["enabled"]
    assert v["scheduling"]["userPlaceholder"]["enabled"] is True
    # a start uses the image the pre-puller pulled, whatever the tag (docs/deploy.md)
    assert v["singleuser"]["image"]["pullPolicy"] == "IfNotPresent"


def test_a_placeholder_holds_room_for_one_app_of_the_smallest_profile():
    """Placeholders request what the smallest profile of the shipped policy guarantees: one
    evicted placeholder is room for one such app, and none holds room no app can use."""
    v = yaml.safe_load((REPO / "helm-values/values.yaml").read_text())
    policy = yaml.safe_load((REPO / "hub_config/policy.yaml").read_text())
    requests = v["scheduling"]["userPlaceholder"]["resources"]["requests"]
    smallest = min(policy["profiles"].values(), key=lambda p: p["cpu_guarantee"])
    assert float(requests["cpu"].removesuffix("m")) / 1000 == smallest["cpu_guarantee"]
    # JupyterHub reads "512M" as 512 × 1024² bytes (ByteSpecification): Kubernetes' 512Mi
    from jupyterhub.traitlets import ByteSpecification

    guarantee = ByteSpecification().validate(None, smallest["mem_guarantee"])
    assert requests["memory"].endswith("Mi")
    assert int(requests["memory"].removesuffix("Mi")) * 1024**2 == guarantee
    # secrets only by reference
    for name, value in v["hub"]["extraEnv"].items():
        if any(w in name for w in ("SECRET", "CRYPT", "DB_URL", "PASSWORD")):
            assert isinstance(value, dict) and "secretKeyRef" in value["valueFrom"], name
