"""The client address the audit trail records: the one the outermost trusted proxy saw.

Shared by the hub (``spawner/audit/hub_recorder.py``, tornado requests) and the app servers
(``spawner/app_server/audit_sessions.py``, ASGI scopes), so both sides name the same address for
one visit. Pure: the standard library's ``ipaddress`` only, no I/O, nothing from the hub.

The walk: start from the TCP peer (the address the server's socket saw). If the peer is a
trusted proxy, the last ``X-Forwarded-For`` entry is the address that proxy saw, so step to
it; go on leftwards while the current hop is a trusted proxy. The first hop that is not a
trusted proxy is the client.

Invariants:

- the result is the TCP peer, or an entry that a trusted hop appended (the entry right of it
  is a trusted proxy, or it is the last one and the peer is): never a value the client chose
  while it reaches the server through trusted proxies only. ``X-Real-Ip``, ``Forwarded`` and
  the server framework's own idea of the remote address (tornado's ``remote_ip``, uvicorn's
  proxy-headers rewrite) are never read;
- loopback (127.0.0.0/8, ``::1``) is trusted only as the TCP peer, where it is the proxy on
  this machine; a loopback entry *inside* ``X-Forwarded-For`` is a process on a proxy's own
  machine and so the client. Otherwise any local client could pose as a proxy: with the
  default list, a client of the local proxy would choose its own address;
- an entry that is not an IP address (``unknown``, a host name, a cut or oversized value)
  where a trusted hop should have written one ends the walk on that hop's address: nothing
  left of it can be vouched for;
- bounded work whatever the headers: at most ``MAX_HOPS`` entries are examined, taken from
  the right end (a padded header costs no more than a short one; the walk then ends on the
  last trusted hop), and entries longer than ``MAX_ENTRY`` characters are not addresses;
- results are canonical text (``ipaddress``' form; IPv4-mapped IPv6 as the IPv4 address,
  no port, no zone), at most 39 characters; ``None`` when the peer itself is not an address
  (a Unix socket, a test scope without one).

The setting: ``STREAMLIT_HUB_TRUSTED_PROXIES`` / ``StreamlitSpawnerMixin.trusted_proxies``,
addresses or networks (CIDR) separated by commas or spaces. Unset: ``DEFAULT_TRUSTED_PROXIES``
(the local proxy); set but empty: no proxy is trusted (the TCP peer is always the client).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping

ENV_VAR = "STREAMLIT_HUB_TRUSTED_PROXIES"
DEFAULT_TRUSTED_PROXIES = ("127.0.0.0/8", "::1/128")
MAX_HOPS = 16  # X-Forwarded-For entries examined, from the right
MAX_ENTRY = 64  # characters; "[ffff:...:ffff%zone]:65535" fits

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_SEPARATORS = re.compile(r"[\s,]+")
_PORT = re.compile(r"^(?P<host>[0-9.]+):[0-9]{1,5}$")
_BRACKETED = re.compile(r"^\[(?P<host>[^\]]+)\](?::[0-9]{1,5})?$")


def parse_networks(value: str | Iterable[str]) -> tuple[Network, ...]:
    """Networks from ``"10.0.0.0/8, ::1"`` or ``["10.0.0.0/8", "::1"]``; a bare address is a
    one-address network, host bits are dropped. Raises ``ValueError`` naming a bad entry."""
    items = _SEPARATORS.split(value) if isinstance(value, str) else value
    networks = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(
                f"{text!r} is not an IP address or network (CIDR), e.g. 10.0.0.0/8 or 127.0.0.1"
            ) from None
    return tuple(networks)


def networks_text(networks: Iterable[Network]) -> str:
    """The environment variable's form: ``127.0.0.0/8,::1/128``."""
    return ",".join(str(n) for n in networks)


def configured_networks(environ: Mapping[str, str]) -> tuple[Network, ...]:
    """The trusted proxies an environment names (``ENV_VAR``); the default when it is unset.
    Raises ``ValueError`` naming the variable and the bad entry."""
    raw = environ.get(ENV_VAR)
    if raw is None:
        return parse_networks(DEFAULT_TRUSTED_PROXIES)
    try:
        return parse_networks(raw)
    except ValueError as e:
        raise ValueError(f"{ENV_VAR}: {e}") from None


def parse_address(text: str | None) -> Address | None:
    """One address as proxies write it (``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``,
    ``[2001:db8::1]:443``, ``fe80::1%eth0``); IPv4-mapped IPv6 becomes IPv4. None if not one."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if not text or len(text) > MAX_ENTRY or not text.isascii():
        return None
    m = _BRACKETED.match(text) or _PORT.match(text)
    if m:
        text = m.group("host")
    if ":" in text:
        text = text.split("%", 1)[0]  # an IPv6 zone names the writer's interface, not the client
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _trusted(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def _rightmost_entries(forwarded_for: Iterable[str] | str | None) -> list[str]:
    """Up to ``MAX_HOPS`` entries from the right end, the nearest hop first. Several header
    lines are one list, in the order received (RFC 9110)."""
    if not forwarded_for:
        return []
    lines = [forwarded_for] if isinstance(forwarded_for, str) else list(forwarded_for)
    entries: list[str] = []
    for line in reversed(lines):
        need = MAX_HOPS - len(entries)
        if need <= 0:
            break
        if isinstance(line, bytes):
            line = line.decode("latin-1")
        # bounded: a padded header is split from the right only as far as we look
        parts = line.rsplit(",", need)[-need:]
        entries.extend(reversed(parts))
    return entries


def client_address(
    peer: str | None, forwarded_for: Iterable[str] | str | None, trusted: Iterable[Network]
) -> str | None:
    """The client's address: walk from the TCP ``peer`` leftwards through ``X-Forwarded-For``
    (its header lines, in the order received) while the current hop is in ``trusted``."""
    networks = tuple(trusted)
    current = parse_address(peer)
    if current is None:
        return None
    if not _trusted(current, networks):
        return str(current)
    for entry in _rightmost_entries(forwarded_for):  # past the last one: the last trusted hop
        address = parse_address(entry)
        if address is None:
            break  # a trusted hop wrote no address: nothing beyond it is vouched for
        current = address
        if address.is_loopback or not _trusted(address, networks):
            break
    return str(current)
