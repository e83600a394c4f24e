"""``python -m spawner.app_server.healthcheck``: exit 0 if the app server answers HTTP at all.

For the app image's Docker HEALTHCHECK. Any status counts (its pages need a signed-in viewer,
so 302/401 are normal answers); no answer within 3 s is unhealthy.
"""

from __future__ import annotations

import http.client
import os
import sys
from urllib.parse import urlparse


def main() -> int:
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL") or "http://127.0.0.1:8888")
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    host = url.hostname if url.hostname not in (None, "0.0.0.0", "") else "127.0.0.1"
    try:
        conn = http.client.HTTPConnection(host, url.port or 8888, timeout=3)
        conn.request("GET", prefix.rstrip("/") + "/_stcore/health")
        conn.getresponse().read()
    except OSError as e:
        print(f"app server not answering: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
