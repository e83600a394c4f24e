"""What every Streamlit spawner shares: one named server is one Streamlit app.

A concrete spawner is ``class X(StreamlitSpawnerMixin, SomeJupyterHubSpawner)`` and supplies:

- ``resolve_app_entry(options) -> str``: check the entry file where the app's code lives and
  return the path the app server will run (raise ``EntryPathError`` to refuse);
- ``launch()``: start the app server (the base spawner's ``start``), returning its URL;
- ``app_homes()``: where to look for the analyst's apps, for the options form.

The mixin owns the order of a start: validate the name and ``user_options`` (refusals are
``SpawnException``s: a 4xx with a readable message on the REST API and the spawn page), then
launch, then wait until the app server answers, reporting each step through ``progress()``.

Starting needs code: an app runs its own entry file, ``apps/<app>/app.py`` in its owner's home
unless ``user_options`` name another ``path`` explicitly (the REST API). Every start path (the
options form, the REST API, a viewer waking a shared app, a restart with stored options)
passes through ``apply_user_options``, which refuses an app whose entry file is missing with
``names.no_code_message`` (where to put the code) before anything starts; the options form
never offers another app's code. The app server itself refuses code that cannot run here (a
syntax error, a top-level import the app environment lacks: ``app_server/launcher.py``), and
``wait_until_ready`` turns its one-line reason into the refusal.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
from dataclasses import dataclass, replace

from jupyterhub.spawner import SpawnException
from traitlets import Float, List, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from .client_address import configured_networks, parse_networks
from .names import (
    EntryPathError,
    MissingEntryError,
    app_name_problem,
    default_entry,
    no_code_message,
    resolve_entry,
)
from .options import AppOptions, OptionsError, options_from_form_data, parse_user_options
from .policy import Profile, cached_policy, decide_start, group_names

# The confirmation form's field: "start again with the stored options".
RESTART_FIELD = "streamlit-restart"


@functools.cache
def _templates():
    """The mixin's pages (``spawner/templates/``), autoescaped."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(
        loader=PackageLoader("spawner", "templates"), autoescape=True, undefined=StrictUndefined
    )


# The line the local spawner writes to an app's log before each start.
RUN_MARKER = "---- app server starting ----"


def _this_run(output: str) -> list[str]:
    lines = output.splitlines()
    if RUN_MARKER in lines:
        lines = lines[len(lines) - 1 - lines[::-1].index(RUN_MARKER) :]
    return lines


def _last_after(lines: list[str], prefix: str) -> str | None:
    for line in reversed(lines):
        if line.startswith(prefix):
            return line[len(prefix) :].strip() or None
    return None


def launch_refusal(output: str) -> str | None:
    """The reason the app server gave for not starting its app (``launcher.CANNOT_START``), in
    this run's output (after the last ``RUN_MARKER``), or None."""
    from .app_server.launcher import CANNOT_START

    return _last_after(_this_run(output), CANNOT_START)


def app_problem(output: str) -> str | None:
    """What went wrong with the app's code in this run, for its owner: why it was not started,
    else the latest error its code raised while someone used it (``launcher.APP_ERROR``)."""
    from .app_server.launcher import APP_ERROR

    return launch_refusal(output) or _last_after(_this_run(output), APP_ERROR)


@dataclass(frozen=True)
class StartProgress:
    """Where an app's start is: its latest step, and whether the last start failed."""

    progress: int | None
    message: str | None
    failed: bool


class StreamlitSpawnerMixin(LoggingConfigurable):
    # A LoggingConfigurable so its traitlets register; it sits before the base spawner in
    # the MRO, and the base spawner is a LoggingConfigurable too.
    app_command = List(
        Unicode(),
        config=True,
        help="""Command that starts one app server (Streamlit behind hub OAuth).

        It reads everything it needs from the environment the spawner sets. The spawner's
        ``cmd`` always follows it (a configured ``cmd`` is replaced, with a warning:
        ``spawner/command.py``). Default: the local spawner's ``app_python`` running
        ``-m spawner.app_server``; on Kubernetes the app image's ``python``.
        """,
    )

    @default("app_command")
    def _default_app_command(self):
        return [sys.executable, "-m", "spawner.app_server"]

    auth_cache_seconds = Float(
        30.0,
        config=True,
        help="""How long an app server reuses the hub's answer about a viewer's token.

        This bounds how long a viewer whose access was revoked can go on using an open
        session. Lower means more calls to the hub API. 0 asks the hub on every request.
        """,
    )

    activity_interval = Float(
        60.0,
        config=True,
        help="""Seconds between activity posts from an app server to the hub.

        Activity is posted only when viewers used the app in that interval, so the idle
        culler sees real use, never a heartbeat.
        """,
    )

    policy_file = Unicode(
        "",
        config=True,
        help="""Path of the group policy (YAML, see hub_config/policy.yaml).

        Empty: no policy, every signed-in user may start apps of any size. The hub
        configuration validates the file at start-up; spawners re-read it when it changes.
        """,
    )

    publish_dir = Unicode(
        "",
        config=True,
        help="""Folder of published app versions, bundles and environments (docs/publishing.md).

        Empty: publishing is off and every app runs from its owner's home. The hub
        configuration sets it (``<data dir>/publish`` on one machine). An app with an active
        version runs that version unless its start options name another ``source``.
        """,
    )

    ready_poll_interval = Float(
        0.05, config=True, help="Seconds between checks that a starting app server answers."
    )

    audit_url = Unicode(
        "",
        config=True,
        help="""The audit service's ingest URL, given to app servers for session and page events.

        Empty: app servers record no audit events. The hub configuration sets it when the
        audit service is on.
        """,
    )

    ready_timeout = Float(
        60.0,
        config=True,
        help="Seconds to wait for a started app server to answer HTTP before giving up.",
    )

    trusted_proxies = List(
        Unicode(),
        config=True,
        help="""Proxies whose X-Forwarded-For the audit trail believes: addresses or networks (CIDR).

        The ``client`` of an audit event, at the hub and in every app server (given to them as
        ``STREAMLIT_HUB_TRUSTED_PROXIES``), is the address the outermost trusted proxy saw:
        from the TCP peer, X-Forwarded-For is walked from the right while the hop is listed
        here. X-Real-Ip is never read. Loopback counts only as the direct peer (the proxy on
        this machine), so a local client cannot pose as a proxy.

        Default: ``STREAMLIT_HUB_TRUSTED_PROXIES`` (commas or spaces between entries), else
        loopback (``127.0.0.0/8``, ``::1``): the hub's own proxy on one machine. On Kubernetes
        list the proxy pods' network and, with an ingress controller in front, its network
        too (docs/deploy.md). An empty list trusts no proxy: the TCP peer is the client.
        """,
    )

    @default("trusted_proxies")
    def _default_trusted_proxies(self):
        try:
            return [str(n) for n in configured_networks(os.environ)]
        except ValueError as e:
            raise TraitError(str(e)) from None

    @validate("trusted_proxies")
    def _valid_trusted_proxies(self, proposal):
        try:
            return [str(n) for n in parse_networks(proposal.value)]
        except ValueError as e:
            raise TraitError(f"{self.__class__.__name__}.trusted_proxies: {e}") from None

    # ---- options --------------------------------------------------------------------
    @default("options_form")
    def _default_options_form(self):
        return self._render_options_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        # The hub calls this before pre_spawn_hook and start, on every start path; start()
        # checks again, so an operator who replaces this hook loses no validation.
        return lambda spawner, user_options: spawner.checked_before_start()

    @default("progress_ready_hook")
    def _default_progress_ready_hook(self):
        def app_ready(spawner, event):
            url = event.get("url", "")
            event["message"] = f"App ready at {url}"
            event["html_message"] = f'App ready at <a href="{url}">{url}</a>'
            return event

        return app_ready

    def checked_before_start(self) -> AppOptions:
        """The options, the group policy and that the app has code to run, before anything
        starts; ``start`` asks all three again. A refusal here is in the audit trail, as one
        inside ``start`` would be. The policy comes first: someone who may not start apps is
        told that, not where code goes."""
        options = self.validated_options()
        try:
            if self.policy_file:
                self._refuse_unless_allowed(*self._policy_decision(options))
            self.entry_for_start(options)
        except SpawnException as e:
            refused = (getattr(e, "reason", "") or "").startswith("quota_")
            first_line = (e.message or e.reason or "failed").splitlines()[0]
            self._record_start("refused" if refused else "failed", first_line)
            raise
        return options

    def options_from_form(self, formdata):
        if formdata.get(RESTART_FIELD) and self._stored_options_still_good():
            # The confirmation form of a restart: run again with the options it last had.
            return dict(self.orm_spawner.user_options)
        options = options_from_form_data(formdata)
        try:
            parsed = self.with_published_default(options, parse_user_options(options))
        except OptionsError:
            return options  # refused by the start with the same words, and recorded there
        # No code: say so on the form at once (the hub waits only 1 s for a start to fail
        # before it shows the progress page).
        self.entry_for_start(parsed)
        return options

    def entry_for_start(self, options: AppOptions) -> str:
        """The entry file this start runs, or a refusal: without an explicit ``path``, an app
        whose own ``apps/<app>/app.py`` is missing has no code, and is told where it goes."""
        try:
            return self.resolve_app_entry(options)
        except MissingEntryError as e:
            if options.path in (None, default_entry(self.name or "")):
                if self._asked_by_someone_else():
                    self.refuse(
                        f"The app {self.name} has no code yet; {self.user.name} has to put "
                        "it in place before it can start.",
                        reason="no_code",
                    )
                self.refuse(
                    no_code_message(self.name, default_entry(self.name), e.where),
                    reason="no_code",
                )
            self.refuse(str(e), reason="entry_path")
        except EntryPathError as e:
            self.refuse(str(e), reason="entry_path")

    def _asked_by_other_than_owner(self) -> bool:
        """Is this start asked for by someone other than the app's owner, admins included
        (the admin panel)? Refusals then speak of the owner, not "you"."""
        asker = getattr(getattr(self, "handler", None), "current_user", None)
        return asker is not None and getattr(asker, "name", None) != self.user.name

    def _asked_by_someone_else(self) -> bool:
        """Is this start asked for by someone other than the app's owner and not an admin (a
        viewer waking a shared app)? They are not told about the owner's home or code."""
        asker = getattr(getattr(self, "handler", None), "current_user", None)
        if asker is None or getattr(asker, "admin", False):
            return False
        return getattr(asker, "name", None) != self.user.name

    def options_from_query(self, query_data):
        # ``GET /hub/spawn/<user>/<app>?path=...`` would start an app from a link; a start
        # changes state, so only a page of the hub's own origin may ask for it that way.
        if not self._request_is_same_origin():
            self.refuse("Starting an app takes a press of its Start button.", "cross_site")
        return options_from_form_data(query_data)

    def _request_is_same_origin(self) -> bool:
        """Did the request now being handled come from the hub's own pages (or the address bar)?

        Browsers say so in ``Sec-Fetch-Site``: ``same-origin`` (a hub page's link) or
        ``none`` (typed, a bookmark). A link on another site, or in an app (apps are served
        from other hosts of the same site), says ``cross-site`` / ``same-site``; a client
        that sends nothing gets the confirmation form too.
        """
        handler = getattr(self, "handler", None)
        request = getattr(handler, "request", None)
        if request is None or request.method != "GET":
            return True  # a POST carries the hub's XSRF token; no request: not a web start
        return request.headers.get("Sec-Fetch-Site", "") in ("same-origin", "none")

    def app_homes(self) -> list[str]:  # pragma: no cover - overridden
        return []

    def profile_choices(self) -> list[tuple[str, str]]:
        """(slug, display name) of the profiles this user may pick, default first."""
        if not self.policy_file:
            return []
        from .policy import limits_for

        policy = cached_policy(self.policy_file)
        rule = limits_for(policy, group_names(self.user)).rule
        slugs = sorted(rule.profiles, key=lambda s: s != rule.default_profile)
        return [(s, policy.profiles[s].display_name) for s in slugs]

    # ---- the group policy -------------------------------------------------------------
    _quota_admitted = False
    app_profile: str | None = None

    def admit(self, options) -> Profile | None:
        """Ask the policy whether this start may go ahead; refuse with its reason if not.

        Runs with no await between the question and recording the answer, so concurrent
        starts by one user are counted exactly (the hub runs them on one event loop).
        """
        if not self.policy_file:
            return None

        policy, decision = self._policy_decision(options)
        self._refuse_unless_allowed(policy, decision)
        self._quota_admitted = True
        self.app_profile = decision.profile.slug
        from .policy import limits_for

        self.idle_timeout = limits_for(policy, group_names(self.user)).rule.idle_timeout
        return decision.profile

    def _policy_decision(self, options):
        from .quota import running_apps

        policy = cached_policy(self.policy_file)
        return policy, decide_start(
            policy,
            group_names(self.user),
            running_apps(self.user, self),
            options.profile,
            self.name,
            owner=self.user.name if self._asked_by_other_than_owner() else "",
            name_running=not self._asked_by_someone_else(),  # a viewer: no app names
            workers=options.workers or 1,
        )

    def _refuse_unless_allowed(self, policy, decision) -> None:
        if decision.allowed:
            return
        from .metrics import QUOTA_REFUSALS, policy_groups_label

        QUOTA_REFUSALS.labels(
            policy_groups_label(policy, group_names(self.user)), decision.code
        ).inc()
        self.refuse(decision.reason, reason=f"quota_{decision.code}", status=403)

    idle_timeout: int | None = None  # from the policy at start; read by the idle culler

    app_workers: int = 1  # Streamlit worker processes of this start (STREAMLIT_HUB_WORKERS)

    def workers_bound(self, profile: Profile | None) -> tuple[int, str] | None:
        """(most workers, why) this spawner runs for an app on ``profile``; None: no bound
        beyond the policy's ``max_workers`` (a local process). Kubernetes overrides it."""
        return None

    def admitted_workers(self, options, profile: Profile | None) -> int:
        """The ``workers`` option (default 1), refused with a sentence beyond this spawner's
        bound (the policy's ``max_workers`` was checked by ``admit``)."""
        workers = options.workers or 1
        bound = self.workers_bound(profile) if workers > 1 else None
        if bound is not None and workers > bound[0]:
            self.refuse(
                f"{self.name or 'This app'} asked for {workers} workers, but {bound[1]}. "
                "Ask for fewer workers, or pick a profile with more CPUs.",
                reason="quota_workers",
                status=403,
            )
        return workers

    def get_state(self):
        state = super().get_state()
        if self.app_profile:
            state["app_profile"] = self.app_profile
        if self.idle_timeout:
            state["idle_timeout"] = self.idle_timeout
        if self.last_exit is not None:
            # kept across the hub's stop, which replaces this spawner object by a new one
            state["last_exit"] = self.last_exit
        return state

    def load_state(self, state):
        super().load_state(state)
        self.app_profile = state.get("app_profile") or self.app_profile
        self.idle_timeout = state.get("idle_timeout") or self.idle_timeout
        if isinstance(state.get("last_exit"), int):
            self.last_exit = state["last_exit"]

    async def stop(self, now=False):
        self._audit_stopping = True
        self._progress_reset()  # the next start's progress starts from nothing
        self._progress_done = True
        try:
            return await super().stop(now=now)
        finally:
            self._quota_admitted = False
            self._audit_seen_running = False

    async def delete_forever(self):
        """The app is deleted (its named server removed): its secrets and its published
        versions go with it."""
        from jupyterhub.utils import maybe_future

        from .app_secrets import forget_app

        forget_app(self)
        if self.publish_dir and self.name:
            from .publishing import forget_app as forget_versions

            forget_versions(self.publish_dir, self.user.name, self.name)
        return await maybe_future(super().delete_forever())

    last_exit: int | None = None  # the exit status of the app's last run, once it ended

    async def poll(self):
        status = await super().poll()
        if status is not None and getattr(self, "_audit_seen_running", False):
            # it was running and has ended: keep how (the app output API reads it later,
            # when the base spawner has forgotten the process)
            self.last_exit = status
        if status is None:
            self._audit_seen_running = True  # (a stop in progress stays a stop)
        elif getattr(self, "_audit_seen_running", False) and not getattr(
            self, "_audit_stopping", False
        ):
            self._audit_seen_running = False
            detail = getattr(self, "stop_reason", "") or ""
            self._audit(
                "app_stop",
                reason="crash",
                extra={
                    "exit_status": status if isinstance(status, int) else str(status),
                    **({"detail": detail[:500]} if detail else {}),
                },
            )
        return status

    # ---- audit ------------------------------------------------------------------------
    def _audit(self, kind: str, **fields) -> None:
        from .audit.hub_recorder import recorder

        r = recorder()
        if r is not None:
            r.record(kind, owner=self.user.name, app=self.name or "default", **fields)

    def _record_start(self, outcome: str, detail: str = "") -> None:
        from .audit.hub_recorder import actor_of, reason_for
        from .metrics import SPAWN_DURATION

        if outcome != "refused":
            SPAWN_DURATION.labels(self.app_profile or "none", outcome).observe(
                time.monotonic() - getattr(self, "_start_time", time.monotonic())
            )

        handler = getattr(self, "handler", None)
        actor, kind, admin = actor_of(handler) if handler is not None else (None, "hub", False)
        reason = reason_for(actor, kind, admin, self.user.name) if actor else "hub"
        self._audit(
            "app_start",
            actor=actor,
            outcome=outcome,
            profile=self.app_profile,
            version=getattr(self, "app_version", None),
            reason=(detail or reason)[:255],
            extra={"by": reason} if detail else None,
        )

    def _stored_options_still_good(self) -> bool:
        stored = self.orm_spawner.user_options if self.orm_spawner is not None else None
        if not stored:
            return False
        try:
            self.resolve_app_entry(self.with_published_default(stored, parse_user_options(stored)))
        except (OptionsError, EntryPathError):
            return False
        return True

    def _render_options_form(self, spawner=None) -> str:
        if self._stored_options_still_good():
            # A restart (by its owner, or a viewer allowed to wake it) reuses the options it
            # last ran with; no form. If those no longer work, the form is back. A GET from
            # anywhere but the hub's own pages (a link on another site, or in an app) gets a
            # one-button confirmation instead: starting is never a side effect of a link.
            if self._request_is_same_origin():
                return ""
            options = self.orm_spawner.user_options or {}
            page = _templates().get_template("options_restart.html")
            return page.render(
                restart_field=RESTART_FIELD,
                name=self.name or "",
                entry=str(options.get("path") or default_entry(self.name or "")),
                published=self.published_version() if "source" not in options else None,
            )
        homes = self.app_homes()
        name = self.name or ""
        entry = default_entry(name or "my-app")
        code = self._own_code(homes, entry) if homes else None
        page = _templates().get_template("options_form.html")
        return page.render(
            name=name,
            entry=entry,
            homes_visible=bool(homes),
            has_code=code is not None and code[0],
            where=code[1] if code else "",
            problem=code[2] if code else "",
            profiles=self.profile_choices(),
            published=self.published_version(),
        )

    @staticmethod
    def _own_code(homes: list[str], entry: str) -> tuple[bool, str, str]:
        """Is the app's own entry file in one of ``homes``: (found, its full path where it
        should be, why it cannot be used). Only this app's file: the form never offers
        another app's code as this one's."""
        where, problem = "", ""
        for home in homes:
            try:
                resolve_entry(home, entry)
                return True, "", ""
            except MissingEntryError as e:
                where = where or e.where
            except EntryPathError as e:
                problem = problem or str(e)
        return False, where, problem

    # ---- start ------------------------------------------------------------------------
    def _progress_reset(self):
        self._progress_events = []
        self._progress_changed = asyncio.Event()
        self._progress_done = False

    def _emit(self, progress: int, message: str):
        if not hasattr(self, "_progress_events"):
            self._progress_reset()
        self._progress_events.append({"progress": progress, "message": message})
        self._progress_changed.set()
        self.log.info("%s: %s", self._log_name, message)

    async def progress(self):
        if not hasattr(self, "_progress_events"):
            self._progress_reset()
        sent = 0
        while True:
            while sent < len(self._progress_events):
                yield self._progress_events[sent]
                sent += 1
            if self._progress_done:
                return
            self._progress_changed.clear()
            try:
                await asyncio.wait_for(self._progress_changed.wait(), timeout=1.0)
            except TimeoutError:
                pass

    def progress_snapshot(self) -> StartProgress:
        """The app's start as it is now, for the app status API (``spawner/app_output.py``).

        ``progress`` and ``message`` are the latest step ``progress()`` reported (a start the
        hub has asked for but not begun yet: "Preparing to start"); ``failed``: the hub's last
        start of it ended in an error (a refusal, a crash, a timeout, including the hub's own
        steps around ``start``) and it is not running.
        """
        events = getattr(self, "_progress_events", None) or []
        last = events[-1] if events else {}
        if self.pending == "spawn" and not events:
            last = {"progress": 2, "message": "Preparing to start"}
        future = self._spawn_future  # the hub's whole start of this server
        failed = bool(
            future is not None
            and future.done()
            and not future.cancelled()
            and future.exception() is not None
            and not self.ready
        )
        return StartProgress(last.get("progress"), last.get("message"), failed)

    async def launch(self):
        """Start the app server with the base spawner's own ``start`` and return its URL."""
        return await super().start()

    def refuse(self, message: str, reason: str, status: int = 400):
        e = SpawnException(message, reason=reason, status_code=status)
        # What JupyterHub's pages show of a failed start (format_exception): the sentence,
        # not SpawnException's str() ("400 SpawnException(reason=...): ...").
        e.jupyterhub_message = message
        raise e

    def validated_options(self) -> AppOptions:
        problem = app_name_problem(self.name)
        asker = getattr(getattr(self, "handler", None), "current_user", None)
        if not self.name and (self._asked_by_other_than_owner() or getattr(asker, "admin", 0)):
            # the admin panel's Start All starts everyone's unnamed server (the admin's own
            # too): one sentence for all, shown once (hub_config/templates/admin.html)
            self.refuse(
                "Every app on this hub has a name; there is no unnamed app to start.",
                reason="default_server",
            )
        if not self.name:
            self.refuse(
                "Each app runs as a named server: start it at /hub/spawn/"
                f"{self.user.name}/<app-name>, e.g. /hub/spawn/{self.user.name}/demo.",
                reason="default_server",
            )
        if problem:
            self.refuse(problem, reason="app_name")
        try:
            options = parse_user_options(self.user_options)
        except OptionsError as e:
            self.refuse(str(e), reason="user_options")
        return self.with_published_default(self.user_options, options)

    def with_published_default(self, raw, options: AppOptions) -> AppOptions:
        """Options that name no ``source`` run the app's active published version, if any."""
        if "source" not in (raw or {}) and self.published_version() is not None:
            return replace(options, source="version")
        return options

    def published_version(self):
        """The app's active published version, or None (publishing off, or none deployed)."""
        if not self.publish_dir or not self.name:
            return None
        from .publishing import active_version

        return active_version(self.publish_dir, self.user.name, self.name)

    async def start(self):
        self.last_exit = None
        started = False
        self._progress_reset()
        self._start_time = time.monotonic()
        try:
            self._emit(10, "Validating the app and its options")
            options = self.validated_options()
            self.app_options = options
            self.app_profile_spec = self.admit(options)
            self.app_workers = self.admitted_workers(options, self.app_profile_spec)
            self.app_entry = self.entry_for_start(options)
            runs = options.path if options.path not in (None, default_entry(self.name)) else ""
            # an entry file named explicitly (the REST API) is said, so nobody mistakes
            # another app's script running under this name for this app's own
            self._emit(
                30, f"Starting Streamlit for {self.name}" + (f" with {runs}" if runs else "")
            )
            url = await self.launch()
            self._emit(60, "Waiting for the app to answer")
            await self.wait_until_ready(url)
            self._emit(100, "App is ready")
            self._audit_stopping = False
            self._audit_seen_running = True
            self._record_start("started")
            started = True
            return url
        except SpawnException as e:
            refused = (getattr(e, "reason", "") or "").startswith("quota_")
            first_line = (e.message or e.reason or "failed").splitlines()[0]
            self._record_start("refused" if refused else "failed", first_line)
            raise
        except Exception as e:
            self._record_start("failed", f"{e.__class__.__name__}")
            raise
        finally:
            if not started:
                # Not started (refused, failed, cancelled): it stops counting against the
                # owner's quota now. The hub calls stop() after a failed start only when
                # the process still runs, so stop() alone would leave it counted.
                self._quota_admitted = False
            self._progress_done = True
            self._progress_changed.set()

    def get_env(self):
        env = super().get_env()
        env["STREAMLIT_HUB_AUTH_CACHE_SECONDS"] = str(self.auth_cache_seconds)
        env["STREAMLIT_HUB_ACTIVITY_INTERVAL"] = str(self.activity_interval)
        env["PYTHONUNBUFFERED"] = "1"
        env["STREAMLIT_HUB_TRUSTED_PROXIES"] = ",".join(self.trusted_proxies)
        entry = getattr(self, "app_entry", None)
        if entry:
            env["STREAMLIT_HUB_ENTRY"] = str(entry)
        if self.app_profile:
            env["STREAMLIT_HUB_PROFILE"] = self.app_profile
        if self.app_workers > 1:
            env["STREAMLIT_HUB_WORKERS"] = str(self.app_workers)
        if getattr(self, "app_version", None):
            env["STREAMLIT_HUB_APP_VERSION"] = self.app_version
        if self.audit_url:
            env["STREAMLIT_HUB_AUDIT_URL"] = self.audit_url
            env["STREAMLIT_HUB_AUDIT_SPOOL"] = self.audit_spool_dir()
        return env

    def audit_spool_dir(self) -> str:
        """Where this app server keeps audit events until the service has them."""
        return "/tmp/streamlit-hub-audit-spool"

    # ---- readiness ----------------------------------------------------------------------
    def app_exit_status(self):
        """Exit code if the app server already died, else None (spawners override)."""
        return None

    def app_failure_details(self) -> str:
        """Last lines of the app server's output, for its owner (spawners override)."""
        return ""

    async def wait_until_ready(self, url):
        """Wait until the app server answers HTTP at its prefix (any status counts).

        Fails early, with the app's last output, if the process exits while we wait.
        """
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

        if not isinstance(url, str):
            ip, port = url
            url = f"http://{ip}:{port}"
        check = url.rstrip("/") + self.server.base_url
        client = AsyncHTTPClient()
        deadline = time.monotonic() + self.ready_timeout
        while True:
            status = self.app_exit_status()
            if status is not None:
                details = self.app_failure_details()
                why = launch_refusal(details)
                if self._asked_by_someone_else():
                    # a viewer waking it: no output of the owner's code (tracebacks, paths);
                    # the owner reads it on their home page (the app output API)
                    self.refuse(
                        f"The app {self.name} "
                        + ("has an error and cannot start" if why else "stopped while starting")
                        + f"; {self.user.name} has been told.",
                        reason="app_code" if why else "app_exited",
                        status=400 if why else 500,
                    )
                if why:  # the app server looked at the code and said why it cannot run
                    self.refuse(why, reason="app_code", status=400)
                self.refuse(
                    f"The app {self.name} stopped while starting (exit code {status})."
                    + (f" Its last output:\n{details}" if details else ""),
                    reason="app_exited",
                    status=500,
                )
            try:
                await client.fetch(
                    HTTPRequest(
                        check, follow_redirects=False, request_timeout=5, connect_timeout=5
                    ),
                    raise_error=False,
                )
                return
            except (OSError, HTTPClientError):
                pass  # not listening yet, or the hub is busy: try again until the deadline
            if time.monotonic() > deadline:
                self.refuse(
                    f"The app {self.name} did not answer within {self.ready_timeout:.0f} s.",
                    reason="timeout",
                    status=500,
                )
            # A steady 50 ms: a refused local connect costs microseconds, and a longer or
            # growing delay adds straight to the analyst's wait (the app needs ~0.5 s).
            await asyncio.sleep(self.ready_poll_interval)
