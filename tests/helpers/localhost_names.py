"""Resolve ``localhost`` and every ``*.localhost`` name to 127.0.0.1 in this test process.

Apps are served from per-analyst hosts (``alice.localhost``). Browsers send every
``*.localhost`` name to loopback by themselves (Chromium does); glibc's resolver, which
Python's clients (requests, tornado, websockets) use, does not resolve them. This is the
resolver hint the README mentions, applied to the test process only. IPv4 only, because the
proxy binds 127.0.0.1.
"""

from __future__ import annotations

import socket

_real_getaddrinfo = socket.getaddrinfo


def _is_localhost_name(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    return isinstance(host, str) and (host == "localhost" or host.endswith(".localhost"))


def _getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    if _is_localhost_name(host) and family in (0, socket.AF_INET, socket.AF_UNSPEC):
        return _real_getaddrinfo("127.0.0.1", port, socket.AF_INET, type, proto, flags)
    return _real_getaddrinfo(host, port, family, type, proto, flags)


def install() -> None:
    """Idempotent: patch ``socket.getaddrinfo`` (what every client library calls)."""
    if socket.getaddrinfo is not _getaddrinfo:
        socket.getaddrinfo = _getaddrinfo
