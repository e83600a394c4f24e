"""Idle culling with the group policy's timeouts, through ``jupyterhub-idle-culler``.

The culler is one hub-managed service with one ``--timeout`` (the default). The timeout of
each app comes from its owner's groups (``idle_timeout`` in the policy, most permissive across
groups): the spawner stores it in the server's state when the app starts, and this arbiter
(``IdleCuller.cull_arbiter_hook``, set by ``hub_config/idle_culler_config.py``) reads it from
the server model (the culler holds ``admin:server_state`` for that).

"Idle" means no viewer used the app: app servers post activity only for real viewer traffic
and open sessions (``spawner/app_server/activity.py``), never a heartbeat.
"""

from __future__ import annotations


def idle_limit(server: dict, default: float) -> float:
    state = server.get("state") or {}
    limit = state.get("idle_timeout")
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0:
        return default
    return float(limit)


def cull_arbiter(*, inactive, inactive_limit, server, **_kwargs) -> bool:
    return inactive.total_seconds() >= idle_limit(server, inactive_limit)


def cull_every(policy, default_timeout: int) -> int:
    """How often the culler looks: a sixth of the shortest timeout, between 5 s and 5 min."""
    timeouts = [
        r.idle_timeout for r in [*policy.groups.values(), policy.defaults] if r.idle_timeout
    ]
    shortest = min([default_timeout, *timeouts])
    return int(max(5, min(300, shortest // 6)))
