"""Does a token's scope list grant access to this app server? (pure)

The hub expands a token's scopes in ``GET /hub/api/user`` (field ``scopes``). The app server
must admit a viewer when those scopes cover one of ``JUPYTERHUB_OAUTH_ACCESS_SCOPES``.
``jupyterhub.scopes.check_scopes`` does this, but importing it pulls in the hub's ORM and
SQLAlchemy (+47 MB in every app server), so this is the same rule, written small:

- ``access:servers`` (no filter) covers every server;
- ``access:servers!user=U`` covers every server of user U;
- ``access:servers!server=U/S`` covers exactly that server;
- any other filter (``!group=``) is not resolved here, as the hub's own helper does not
  resolve it either; the hub resolves group shares into the token's scopes itself.
"""

from __future__ import annotations

from collections.abc import Iterable

_SCOPE = "access:servers"


def _targets(scope: str, scope_name: str = _SCOPE) -> tuple[str, str] | None:
    """('all', '') | ('user', U) | ('server', 'U/S') for a ``scope_name`` scope, else None."""
    name, _, filt = scope.partition("!")
    if name != scope_name:
        return None
    if not filt:
        return ("all", "")
    kind, _, value = filt.partition("=")
    if kind in ("user", "server") and value:
        return (kind, value)
    return None


def grants_access(have: Iterable[str], required: Iterable[str], scope_name: str = _SCOPE) -> bool:
    """True when any ``scope_name`` scope in ``have`` covers any scope in ``required``.

    ``scope_name`` is ``access:servers`` by default; ``start:servers`` follows the same rule.
    """
    have_targets = [t for t in (_targets(s, scope_name) for s in have) if t]
    if not have_targets:
        return False
    for req in required:
        want = _targets(req, scope_name)
        if want is None:
            continue
        kind, value = want
        owner = value.split("/", 1)[0] if kind == "server" else value
        for hkind, hvalue in have_targets:
            if hkind == "all":
                return True
            if hkind == kind and hvalue == value:
                return True
            if hkind == "user" and kind in ("server", "user") and hvalue == owner:
                return True
    return False
