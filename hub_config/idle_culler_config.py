# Config of the idle culler service (jupyterhub-idle-culler), started by the hub.
# Per-app timeouts from the group policy: see spawner/culling.py.
from spawner.culling import cull_arbiter

c.IdleCuller.cull_arbiter_hook = cull_arbiter  # noqa: F821 - `c` is the culler's config
