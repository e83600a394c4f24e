"""The publishing REST API on the hub (#14), under ``/hub/api/streamlit/apps/{user}/{app}/``.

- ``GET versions``: the app's versions, oldest first, and which one is active.
- ``POST versions``: a new version from the request body, a ``.zip``, ``.tar.gz`` or
  ``.tar`` of the app's folder (``Content-Type`` any; the format is read from the bytes).
  Query: ``entry`` (default ``app.py``), ``activate`` (default ``true``), ``filename`` (what
  the version's source records). The body streams to a private spool file, at most the
  bundle limit's archive size (a larger body is cut off with 413). The bundle's
  ``requirements.txt`` is built into an environment first; only then is the version
  recorded and activated, and a running app restarted on it. A client that sends
  ``Accept: application/x-ndjson`` gets the steps as they happen, one JSON object per line
  (``{"progress": 40, "message": ...}``), and a last line ``{"status": 201, "version": ...}``
  or ``{"status": 4xx, "message": ..., "log": ...}``; any other client gets one JSON answer
  with that status.
- ``GET versions/{id}``; ``PUT versions/{id}/active`` (activate: a rollback or a roll forward;
  a running app restarts on it); ``DELETE versions/{id}`` (409 for the active version).
- ``POST versions/from-git``: a new version from a git repository (``spawner/git_source.py``),
  JSON ``{"repo": "https://host/team/app.git", "ref": "main", "entry": "app.py",
  "token_secret": "GIT_TOKEN", "activate": true}`` (only ``repo`` is required; ``ref``
  defaults to ``HEAD``). The ref is resolved to a commit first; when it is the active
  version's commit of the same repository the answer is 200 ``{"version": <active>,
  "unchanged": true}`` and nothing is fetched or recorded. Otherwise exactly that commit is
  fetched into a private folder and deployed as ``POST versions`` deploys an upload (same
  answers, same streaming), its version's source ``{"kind": "git", "repo", "ref",
  "commit"}``. ``token_secret`` names one of the app's secrets, the token of a private
  repository: git gets it in its environment only, and no answer, log or audit event holds it.
- ``GET build-log``: the last deploy's build log (``text/plain``).

Who: the app's owner and admins, i.e. whoever holds ``servers`` on the app (reading:
``read:servers``). A viewer the app is shared with holds ``access:servers`` only and gets the
same 404 as anyone else; an app server's own token holds neither, so an app cannot publish
over itself. Every refusal is a sentence with a 4xx (``BundleError``, ``VersionError``,
``DeployError`` carry their status), and a refused request changes nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from jupyterhub.apihandlers import APIHandler
from tornado import web

from .bundles import BundleError, BundleLimitError
from .git_source import GitClient, GitError, check_ref, check_repo_url, check_token, same_repo
from .git_source import scrub as scrub_token
from .names import app_name_problem
from .policy import group_names, limits_for
from .publishing import Deployed, DeployError, Publisher, PublishLimits, _size
from .versions import Source, Version, VersionError

NDJSON = "application/x-ndjson"
# A refused upload at most this large is read to its end before the refusal is sent.
DRAIN_BYTES = 4 * 1024 * 1024
GIT_FIELDS = {"repo", "ref", "entry", "token_secret", "activate"}
MAX_GIT_BODY = 16 * 1024
_RUN_OPTIONS = ("source", "path", "repo", "ref", "image")  # a version replaces these


def version_model(version: Version, active: str | None) -> dict:
    return {
        "id": version.id,
        "active": version.id == active,
        "created_at": version.created_at,
        "created_by": version.created_by,
        "source": version.source.to_json(),
        "digest": version.digest,
        "entry": version.entry,
        "size": version.size,
        "files": version.files,
        "environment": version.environment or None,
    }


class _PublishHandler(APIHandler):
    def initialize(self, publisher: Publisher, git: GitClient | None = None):
        self.publisher = publisher
        self.policy = publisher.policy
        self.git = git or GitClient()

    def check_app(self, user_name: str, app: str, write: bool):
        """The owner (a hub user) if the caller may read (``write``: change) the app's
        versions; otherwise the same 404 whether or not the app exists."""
        scopes = ("servers",) if write else ("read:servers", "servers")
        refusal = (
            "No such app, or you may not publish it."
            if write
            else "No such app, or it is not yours."
        )
        if self.current_user is None or not any(
            self.has_scope(f"{s}!server={user_name}/{app}") for s in scopes
        ):
            raise web.HTTPError(404, refusal)
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, refusal)
        problem = app_name_problem(app)
        if problem:
            raise web.HTTPError(400, problem)
        return user

    def write_json(self, data: dict, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(data))

    def audit(self, kind: str, owner: str, app: str, **fields) -> None:
        from .audit.hub_recorder import recorder

        r = recorder()
        if r is not None:
            r.record(kind, owner=owner, app=app, actor=self.current_user.name, **fields)

    @staticmethod
    def is_running(user, app: str) -> bool:
        spawner = user.spawners.get(app) if app in user.orm_spawners else None
        return spawner is not None and spawner.active and not spawner.pending

    async def restart_if_running(self, user, app: str) -> bool:
        """Restart a running app on its (newly) active version; False when it is not running."""
        if not self.is_running(user, app):
            return False
        spawner = user.spawners[app]
        options = {k: v for k, v in (spawner.user_options or {}).items() if k not in _RUN_OPTIONS}
        await self.stop_single_user(user, app)
        try:
            await self.spawn_single_user(user, app, options=options)
        except Exception as e:
            # The version is recorded and active; the start failed (the app's code, a quota):
            # the owner starts it again from the hub, which shows why.
            self.log.warning("restarting %s/%s on its new version failed: %s", user.name, app, e)
            self.restart_problem = getattr(e, "jupyterhub_message", None) or (
                f"{app} stopped and did not start again on its new version: start it from the "
                "hub to see why."
            )
            return False
        return True

    restart_problem: str | None = None

    def activated(self, user, app: str, deployed_or_version, previous: str | None) -> None:
        version = getattr(deployed_or_version, "version", deployed_or_version)
        self.audit(
            "app_activate",
            user.name,
            app,
            version=version.id,
            outcome="activated",
            extra={"previous": previous} if previous else None,
        )

    def may_publish(self, user, app: str) -> PublishLimits:
        """The user's publishing limits; 403 when their groups may not publish, or the app
        would be one more than they may have."""
        limits = self.publisher.limits_for(user)
        if not limits.may_publish:
            raise web.HTTPError(
                403,
                f"{user.name}'s groups may not publish apps (may_publish in the group policy): "
                "ask an admin.",
            )
        self.refuse_over_quota(user, app)
        return limits

    def refuse_over_quota(self, user, app: str) -> None:
        """A deploy that would make an app the owner's groups do not allow is refused before
        its body is read: the number of apps (``max_apps``), or no apps at all."""
        if self.policy is None or app in user.orm_spawners:
            return
        rule = limits_for(self.policy.current, group_names(user)).rule
        # apps: named servers, and names with versions but not started yet
        published = self.publisher.published_apps(user.name)
        if app in published:
            return
        apps = len({name for name in user.orm_spawners if name} | published)
        if rule.max_apps <= 0:
            raise web.HTTPError(
                403, f"{user.name} may open apps shared with them but not publish apps."
            )
        if apps >= rule.max_apps:
            raise web.HTTPError(
                403,
                f"{user.name} has {apps} apps, the most their groups allow ({rule.max_apps}): "
                "deploy to one of them, or delete one first.",
            )

    def start_streaming(self, streaming: bool) -> None:
        if streaming:
            self.set_header("Content-Type", NDJSON)
            self.set_header("Cache-Control", "no-store")
            self.set_header("X-Accel-Buffering", "no")

    def progress_for(self, streaming: bool):
        async def progress(percent: int, message: str) -> None:
            if streaming:
                self.write(json.dumps({"progress": percent, "message": message}) + "\n")
                await self.flush()

        return progress

    async def finish_deploy(self, user, app: str, deployed: Deployed, streaming: bool, extra):
        """Audit a deploy that recorded a version, restart a running app on it, answer 201."""
        version = deployed.version
        self.audit(
            "app_deploy",
            user.name,
            app,
            version=version.id,
            outcome="deployed",
            extra={
                "source": version.source.kind,
                **extra,
                "digest": version.digest,
                **({"environment": deployed.environment} if deployed.environment else {}),
            },
        )
        restarted = False
        if deployed.activated:
            self.activated(user, app, deployed, deployed.previous)
            if self.is_running(user, app):
                await self.progress_for(streaming)(97, f"Restarting {app} on {version.id}")
            restarted = await self.restart_if_running(user, app)
        active = self.publisher.versions.active_id(user.name, app)
        self.answer(
            streaming,
            201,
            {
                "version": version_model(version, active),
                "restarted": restarted,
                "restart_problem": self.restart_problem,
                "environment_reused": deployed.reused_environment,
            },
        )

    def answer(self, streaming: bool, status: int, body: dict) -> None:
        body = {k: v for k, v in body.items() if v is not None}
        if streaming:
            if not self._headers_written:
                self.set_header("Content-Type", NDJSON)
            self.finish(json.dumps({"status": status, **body}) + "\n")
        elif status >= 400:
            self.write_json({"status": status, **body}, status)  # JupyterHub's error shape
        else:
            self.write_json(body, status)


@web.stream_request_body
class VersionsAPIHandler(_PublishHandler):
    _spool = None
    _received = 0
    _limit = 0
    _too_big = False

    _close = False

    def set_default_headers(self):
        super().set_default_headers()
        if self._close:
            # A refusal sent before the body was read: the connection cannot carry another
            # request (the rest of the body is still coming), so the proxy must not reuse it
            # (configurable-http-proxy would answer the next request with a 503).
            self.set_header("Connection", "close")

    _refusal: web.HTTPError | None = None

    async def prepare(self):
        try:
            await super().prepare()
            if self.request.method == "POST":
                self._prepare_upload()
        except web.HTTPError as e:
            if self.request.method != "POST":
                raise
            declared = self.request.headers.get("Content-Length") or ""
            if declared.isdigit() and int(declared) <= DRAIN_BYTES:
                # A small body is read to its end and dropped, then refused: an answer sent
                # while the client still sends can reach it cut short through the proxy.
                self._refusal = e
                self.request.connection.set_max_body_size(DRAIN_BYTES)
                return
            # A large one is not read in vain: the refusal goes now, on a connection the
            # proxy must not reuse (configurable-http-proxy would answer the next request
            # on it with a 503).
            self._close = True
            raise

    def _prepare_upload(self):
        user_name, app = self.path_args
        user = self.check_app(user_name, app, write=True)
        limits = self.may_publish(user, app)
        self._limit = limits.bundle.max_archive_bytes
        declared = self.request.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self._limit:
            if int(declared) > 2 * self._limit + 1024 * 1024:
                raise web.HTTPError(413, self._too_big_message())
            self._too_big = True  # read and dropped, then a clean 413 (below)
        # A chunked body over the limit is read to the end and dropped (data_received), so
        # the refusal is a clean 413; Tornado's own cut-off (max_body_size) would drop the
        # connection instead. Twice the limit bounds what is read in vain.
        self.request.connection.set_max_body_size(2 * self._limit + 1024 * 1024)
        spool = self.publisher.root / "bundles" / "tmp"
        spool.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload-", dir=spool)
        self._spool = (os.fdopen(fd, "wb"), Path(name))

    def _too_big_message(self) -> str:
        return (
            f"The upload is larger than {_size(self._limit)}, the most your groups allow: "
            "leave out data files (.streamlitignore), or ask an admin."
        )

    def data_received(self, chunk: bytes) -> None:
        if self._spool is None or self._too_big:
            return
        self._received += len(chunk)
        if self._received > self._limit:
            self._too_big = True
            return
        self._spool[0].write(chunk)

    def on_finish(self):
        self._drop_spool()

    def on_connection_close(self):
        self._drop_spool()
        super().on_connection_close()

    def _drop_spool(self):
        if self._spool is not None:
            out, path = self._spool
            self._spool = None
            out.close()
            path.unlink(missing_ok=True)

    async def get(self, user_name: str, app: str):
        self.check_app(user_name, app, write=False)
        store = self.publisher.versions
        try:
            active = store.active_id(user_name, app)
            versions = store.versions(user_name, app)
        except VersionError as e:
            raise web.HTTPError(e.http_status, str(e)) from None
        self.write_json(
            {
                "owner": user_name,
                "app": app,
                "active": active,
                "versions": [version_model(v, active) for v in versions],
            }
        )

    async def post(self, user_name: str, app: str):
        if self._refusal is not None:
            raise self._refusal
        user = self.find_user(user_name)
        streaming = NDJSON in (self.request.headers.get("Accept") or "")
        if self._too_big:
            return self.answer(streaming, 413, {"message": self._too_big_message()})
        if self._received == 0:
            return self.answer(
                streaming,
                400,
                {"message": "The request has no body: send the app's folder as a .zip or .tar.gz."},
            )
        out, path = self._spool
        out.close()
        entry = self.get_query_argument("entry", None) or None
        activate = self.get_query_argument("activate", "true").lower() not in ("0", "false", "no")
        filename = (self.get_query_argument("filename", None) or "")[:255] or None
        self.start_streaming(streaming)
        progress = self.progress_for(streaming)
        try:
            deployed: Deployed = await self.publisher.deploy(
                user_name,
                app,
                path,
                by=self.current_user.name,
                source=Source.upload(filename),
                entry=entry,
                activate=activate,
                limits=self.publisher.limits_for(user),
                progress=progress,
            )
        except (BundleError, VersionError, DeployError) as e:
            status = getattr(e, "http_status", 400)
            if isinstance(e, BundleLimitError):
                status = 413
            self.audit(
                "app_deploy",
                user_name,
                app,
                outcome="failed",
                reason=str(e).splitlines()[0][:255],
                extra={"source": "upload"},
            )
            return self.answer(
                streaming, status, {"message": str(e), "log": getattr(e, "log", "") or None}
            )
        await self.finish_deploy(user, app, deployed, streaming, {})


class GitVersionsAPIHandler(_PublishHandler):
    """``POST versions/from-git``: resolve, fetch and deploy a commit (see the module)."""

    def git_request(self) -> dict:
        if len(self.request.body or b"") > MAX_GIT_BODY:
            raise web.HTTPError(400, f"The request is larger than {MAX_GIT_BODY} bytes.")
        try:
            body = json.loads(self.request.body or b"")
        except (ValueError, UnicodeDecodeError):
            body = None
        example = '{"repo": "https://github.com/example/sales.git", "ref": "main"}'
        if not isinstance(body, dict):
            raise web.HTTPError(400, f"Send a JSON object, e.g. {example}.")
        unknown = sorted(str(k)[:40] for k in body if k not in GIT_FIELDS)
        if unknown:
            raise web.HTTPError(
                400,
                f"Unknown field {', '.join(unknown)}: send {', '.join(sorted(GIT_FIELDS))}.",
            )
        for name in ("repo", "ref", "entry", "token_secret"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise web.HTTPError(400, f"{name} must be a string.")
        if not isinstance(body.get("activate", True), bool):
            raise web.HTTPError(400, "activate must be true or false.")
        return body

    def git_hosts(self) -> tuple[str, ...]:
        return self.policy.current.sources.git_hosts if self.policy is not None else ()

    def git_token(self, owner: str, app: str, name: str | None) -> str | None:
        """The token in the app's secret ``name`` (None without one); never logged."""
        if not name:
            return None
        from .app_secrets import SecretError, name_problem, store

        problem = name_problem(name)
        if problem:
            raise GitError(f"token_secret: {problem}")
        secrets = store()
        if secrets is None:
            raise GitError("This hub keeps no app secrets, so token_secret cannot be used.")
        try:
            values = secrets.values(owner, app)
        except SecretError as e:
            raise GitError(str(e), getattr(e, "status", 400)) from None
        if name not in values:
            raise GitError(
                f"{app} has no secret {name}: set the repository's token first "
                f"(streamlit-hub secrets set {name} --app {app}), then deploy again."
            )
        return check_token(values[name], name)

    async def post(self, user_name: str, app: str):
        user = self.check_app(user_name, app, write=True)
        limits = self.may_publish(user, app)
        body = self.git_request()
        try:
            repo = check_repo_url(body.get("repo"), self.git_hosts())
            ref = check_ref(body.get("ref"))
            token = self.git_token(user_name, app, body.get("token_secret"))
        except GitError as e:
            raise web.HTTPError(e.http_status, e.message) from None
        entry = body.get("entry") or None
        streaming = NDJSON in (self.request.headers.get("Accept") or "")
        self.start_streaming(streaming)
        progress = self.progress_for(streaming)
        commit = None
        try:
            await progress(1, f"Resolving {ref} in {repo}")
            resolved = await self.git.resolve(repo, ref, token)
            commit = resolved.commit
            active = self.publisher.versions.active(user_name, app)
            same = active is not None and active.source.kind == "git"
            same = same and same_repo(active.source.repo, repo)
            if same and active.source.commit == commit and entry in (None, active.entry):
                await progress(3, f"{active.id} already runs {commit[:12]}: nothing to deploy")
                return self.answer(
                    streaming, 200, {"version": version_model(active, active.id), "unchanged": True}
                )
            if same and entry is None:
                entry = active.entry  # a redeploy keeps the entry file
            await progress(2, f"Fetching {commit[:12]} ({resolved.name})")
            async with self.git.checkout(
                repo,
                commit,
                self.publisher.bundles.staging,
                token=token,
                max_fetch_bytes=limits.bundle.max_archive_bytes,
                max_bytes=limits.bundle.max_bundle_bytes,
                max_files=limits.bundle.max_files,
            ) as fetched:
                await progress(4, f"Fetched {commit[:12]}: {fetched.files} files")
                deployed: Deployed = await self.publisher.deploy(
                    user_name,
                    app,
                    fetched.folder,
                    by=self.current_user.name,
                    source=Source.git(repo, commit, ref),
                    entry=entry,
                    activate=body.get("activate", True),
                    limits=limits,
                    progress=progress,
                )
        except (GitError, BundleError, VersionError, DeployError) as e:
            status = getattr(e, "http_status", 400)
            if isinstance(e, BundleLimitError):
                status = 413
            message = scrub_token(str(e), token)
            self.audit(
                "app_deploy",
                user_name,
                app,
                outcome="failed",
                reason=message.splitlines()[0][:255],
                extra={"source": "git", "repo": repo, "ref": ref,
                       **({"commit": commit} if commit else {})},
            )  # fmt: skip
            log = scrub_token(getattr(e, "log", "") or "", token) or None
            return self.answer(streaming, status, {"message": message, "log": log})
        extra = {"repo": repo, "ref": ref, "commit": commit}
        await self.finish_deploy(user, app, deployed, streaming, extra)


class VersionAPIHandler(_PublishHandler):
    async def get(self, user_name: str, app: str, version_id: str):
        self.check_app(user_name, app, write=False)
        store = self.publisher.versions
        try:
            version = store.get(user_name, app, version_id)
            active = store.active_id(user_name, app)
        except VersionError as e:
            raise web.HTTPError(e.http_status, str(e)) from None
        self.write_json(version_model(version, active))

    async def delete(self, user_name: str, app: str, version_id: str):
        self.check_app(user_name, app, write=True)
        try:
            self.publisher.versions.delete(user_name, app, version_id)
        except VersionError as e:
            raise web.HTTPError(e.http_status, str(e)) from None
        self.set_status(204)
        self.finish()


class ActiveVersionAPIHandler(_PublishHandler):
    async def put(self, user_name: str, app: str, version_id: str):
        user = self.check_app(user_name, app, write=True)
        try:
            version, previous = self.publisher.activate(user_name, app, version_id)
        except VersionError as e:
            raise web.HTTPError(e.http_status, str(e)) from None
        restarted = False
        if previous != version.id:
            self.activated(user, app, version, previous)
            restarted = await self.restart_if_running(user, app)
        answer = {"version": version_model(version, version.id), "restarted": restarted}
        if self.restart_problem:
            answer["restart_problem"] = self.restart_problem
        self.write_json(answer)


class BuildLogAPIHandler(_PublishHandler):
    async def get(self, user_name: str, app: str):
        self.check_app(user_name, app, write=False)
        try:
            log = self.publisher.last_build_log(user_name, app)
        except VersionError as e:
            raise web.HTTPError(e.http_status, str(e)) from None
        if log is None:
            raise web.HTTPError(404, f"{app} has no build log yet: deploy a version first.")
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(log)


def publish_handlers(publisher: Publisher, git: GitClient | None = None) -> list[tuple]:
    """The routes, for ``JupyterHub.extra_handlers`` (under ``/hub``)."""
    kwargs = {"publisher": publisher, "git": git or GitClient()}
    app = r"/api/streamlit/apps/([^/]+)/([^/]+)"
    return [
        (app + r"/versions", VersionsAPIHandler, kwargs),
        (app + r"/versions/from-git", GitVersionsAPIHandler, kwargs),  # before versions/{id}
        (app + r"/versions/([^/]+)", VersionAPIHandler, kwargs),
        (app + r"/versions/([^/]+)/active", ActiveVersionAPIHandler, kwargs),
        (app + r"/build-log", BuildLogAPIHandler, kwargs),
    ]
