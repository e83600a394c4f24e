"""Prometheus metrics of the hub side, registered in the hub's own registry (``/hub/metrics``).

- ``streamlit_hub_quota_refusals_total{groups, reason}``: starts the group policy refused.
  ``groups`` is the user's groups named in the policy, sorted and comma-joined (``defaults``
  when none is), so the rule that applied is visible; ``reason`` is the decision code
  (``no_apps``, ``profile``, ``running``, ``cpu``, ``memory``).
- ``streamlit_hub_app_spawn_duration_seconds{profile, outcome}``: from the start request
  reaching the spawner to the app answering (``outcome`` ``started``) or the start failing.

JupyterHub's own metrics (``jupyterhub_server_spawn_duration_seconds`` …) stay as they are.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

QUOTA_REFUSALS = Counter(
    "streamlit_hub_quota_refusals",
    "App starts refused by the group policy, by the user's policy groups and the reason.",
    ["groups", "reason"],
)

SPAWN_DURATION = Histogram(
    "streamlit_hub_app_spawn_duration_seconds",
    "Seconds from an app start request reaching the spawner to the app answering (or failing).",
    ["profile", "outcome"],
    buckets=(0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, float("inf")),
)


def policy_groups_label(policy, groups) -> str:
    named = sorted(g for g in groups if g in policy.groups)
    return ",".join(named) if named else "defaults"
