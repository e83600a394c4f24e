"""``GET /hub/api/streamlit/apps/{user}/{app}/bundles/{digest}``: a version's bundle, for a pod.

On Kubernetes an app pod has no share with the hub's disk: its app server fetches the bundle
of the version it runs from here, with its own server token, verifies the digest
(``bundles.verify`` through ``BundleStore.materialise``) and extracts it into its scratch
volume (``spawner/app_server/published.py``).

Who may fetch: the app's own server (its token holds ``access:servers`` on the app *and*
``users:activity`` on its owner: a viewer the app is shared with holds only the first, so a
viewer cannot download an app's code), the owner and admins (``read:servers`` on the app).
Only a digest some version of that app points at is served; anything else is the same 404
as an app that does not exist. The answer is the canonical ``.tar.gz`` with
``ETag: "<digest>"`` and an immutable cache header (a digest's bytes never change).
"""

from __future__ import annotations

from jupyterhub.apihandlers import APIHandler
from tornado import web

from .bundles import BundleNotFoundError, parse_digest
from .publishing import Publisher
from .versions import VersionError

CHUNK = 256 * 1024


class BundleAPIHandler(APIHandler):
    def initialize(self, publisher: Publisher):
        self.publisher = publisher

    def _may_fetch(self, user_name: str, app: str) -> bool:
        if self.current_user is None:
            return False
        server = f"{user_name}/{app}"
        if self.has_scope(f"read:servers!server={server}"):
            return True
        return self.has_scope(f"access:servers!server={server}") and self.has_scope(
            f"users:activity!user={user_name}"
        )

    async def get(self, user_name: str, app: str, digest: str):
        refusal = "No such bundle, or you may not fetch it."
        if not self._may_fetch(user_name, app):
            raise web.HTTPError(404, refusal)
        try:
            parse_digest(digest)
            known = {v.digest for v in self.publisher.versions.versions(user_name, app)}
        except (ValueError, VersionError):
            raise web.HTTPError(404, refusal) from None
        if digest not in known:
            raise web.HTTPError(404, refusal)
        etag = f'"{digest}"'
        self.set_header("ETag", etag)
        self.set_header("Cache-Control", "private, max-age=31536000, immutable")
        if self.request.headers.get("If-None-Match") == etag:
            self.set_status(304)
            return self.finish()
        try:
            blob = self.publisher.bundles.open(digest)
        except BundleNotFoundError:
            raise web.HTTPError(404, refusal) from None
        self.set_header("Content-Type", "application/gzip")
        with blob:
            while chunk := blob.read(CHUNK):
                self.write(chunk)
                await self.flush()
        self.finish()


def bundle_handlers(publisher: Publisher) -> list[tuple]:
    return [
        (
            r"/api/streamlit/apps/([^/]+)/([^/]+)/bundles/([^/]+)",
            BundleAPIHandler,
            {"publisher": publisher},
        )
    ]
