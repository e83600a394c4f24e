"""``streamlit-local``: each app is a local process on the hub's machine.

For one machine with no cluster (the embedded default, demos, tests). It adds to the shared
mixin only what is local: a home directory per user under ``homes_root``, the app's output in
a log file under ``logs_root``, and signals sent to the app's whole process group.
When the hub runs as root (a service, CI), each analyst's apps run as a system account of
their own (``spawner/unix_users.py``): no login shell, no password, a private home, and no way
into the hub's data dir or the environment of the hub's processes. When the hub is not root (a
laptop demo), apps run as the hub's own user: they are trusted, and the hub says so at start-up
and on every home page. The app's hub API token reaches it through an inherited pipe, never its
environment, so it is not in ``/proc/<pid>/environ``; its owner's app secrets follow the
token through that pipe (``spawner/app_secrets.py``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Float, Integer, Unicode, default, validate

from . import unix_users
from .command import AppServerCommand
from .mixin import StreamlitSpawnerMixin
from .names import EntryPathError, default_entry, resolve_entry
from .policy import format_bytes

APP_ACCOUNTS = ("auto", "per-user", "hub")
TOKEN_FD_VARIABLE = "STREAMLIT_HUB_API_TOKEN_FD"
_TOKEN_VARIABLES = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN")


def default_app_python() -> str:
    """``STREAMLIT_HUB_APP_PYTHON``, else the checkout's ``.venv-app``, else this Python."""
    given = os.environ.get("STREAMLIT_HUB_APP_PYTHON")
    if given:
        return given
    app_env = Path(__file__).resolve().parent.parent / ".venv-app" / "bin" / "python"
    return str(app_env) if app_env.exists() else sys.executable


def apps_run_as_hub_user(mode: str) -> bool:
    """True when local apps would run as the hub's own Unix user (trusted code)."""
    return mode == "hub" or (mode == "auto" and os.geteuid() != 0)


def tree_rss(pid: int) -> int:
    """Resident memory (bytes) of a process and all its descendants, from /proc."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return total


class StreamlitLocalSpawner(AppServerCommand, StreamlitSpawnerMixin, LocalProcessSpawner):
    homes_root = Unicode(
        "/tmp/streamlit-hub/homes",
        config=True,
        help="Folder holding one home per user: <homes_root>/<username>/apps/<app>/app.py.",
    )
    logs_root = Unicode(
        "/tmp/streamlit-hub/logs",
        config=True,
        help="Folder for each app server's output: <logs_root>/<username>/<app>.log.",
    )
    log_tail_lines = Integer(
        30, config=True, help="How many lines of an app's output its owner sees when it fails."
    )

    memory_check_interval = Float(
        1.0,
        config=True,
        help="""Seconds between checks of an app's memory against its profile's mem_limit.

        A local app has no cgroup of its own: the spawner sums the resident memory of the
        app's process tree and kills the tree (only it) when it goes over the limit.
        """,
    )

    app_accounts = Unicode(
        help="""Which Unix user local apps run as.

        ``per-user``: each analyst's apps run as a system account of their own
        (``<app_account_prefix><name>``, created on first start; needs the hub to run as
        root). ``hub``: as the hub's own user, so app code can read everything the hub can:
        only for a one-person demo. ``auto`` (default): ``per-user`` when the hub runs as root,
        else ``hub``, with a warning in the log and on the home page.
        Default from ``STREAMLIT_HUB_APP_ACCOUNTS``.
        """,
    ).tag(config=True)

    @default("app_accounts")
    def _default_app_accounts(self):
        return os.environ.get("STREAMLIT_HUB_APP_ACCOUNTS", "auto")

    @validate("app_accounts")
    def _validate_app_accounts(self, proposal):
        value = proposal["value"]
        if value not in APP_ACCOUNTS:
            raise ValueError(f"app_accounts={value!r}: expected one of {', '.join(APP_ACCOUNTS)}")
        if value == "per-user" and os.geteuid() != 0:
            raise ValueError(
                "app_accounts='per-user' needs the hub to run as root (it creates "
                "and switches to one system account per analyst)"
            )
        return value

    app_account_prefix = Unicode(
        "sthub-",
        config=True,
        help="Prefix of the system accounts local apps run as (per-user accounts).",
    )

    app_python = Unicode(
        help="""Python of the app environment that runs app servers (local mode).

        Separate from the hub's environment: it holds only what an app server needs (the
        ``[app]`` extra), and must be readable by the app accounts (``make install`` builds
        ``.venv-app`` from the system's Python for that). Default from
        ``STREAMLIT_HUB_APP_PYTHON``, else ``.venv-app/bin/python`` next to the package if
        it exists, else the hub's own Python.
        """,
    ).tag(config=True)

    @default("app_python")
    def _default_app_python(self):
        return default_app_python()

    @default("app_command")
    def _default_app_command(self):
        return [self.app_python, "-m", "spawner.app_server"]

    def per_user_accounts(self) -> bool:
        return not apps_run_as_hub_user(self.app_accounts)

    _account: unix_users.Account | None = None
    _token_for_pipe: str | None = None
    _token_fd: int | None = None

    @default("ip")
    def _default_ip(self):
        return "127.0.0.1"

    @property
    def home_dir(self) -> str:
        return os.path.join(self.homes_root, self.user.name)

    @property
    def log_path(self) -> Path:
        return Path(self.logs_root) / self.user.name / f"{self.name or 'default'}.log"

    def app_homes(self):
        return [self.home_dir]

    def audit_spool_dir(self) -> str:
        # Per app and outside the analyst's home, so it survives restarts of the app and
        # the next start of the same app resends what the last one left.
        return str(Path(self.logs_root) / self.user.name / "audit-spool" / (self.name or "default"))

    def user_env(self, env):
        env["USER"] = self._account.name if self._account else self.user.name
        env["HOME"] = self.home_dir
        env["SHELL"] = "/bin/sh"
        return env

    def get_env(self):
        env = super().get_env()
        # The token goes through a pipe (see launch), never the environment.
        token = None
        for name in _TOKEN_VARIABLES:
            token = env.pop(name, None) or token
        self._token_for_pipe = token
        if self._token_fd is not None:
            env[TOKEN_FD_VARIABLE] = str(self._token_fd)
        if self._account is not None:
            # the analyst's other apps share this account: keep this one's memory (token,
            # app secrets) out of their reach (spawner/app_server/launcher.py)
            env["STREAMLIT_HUB_PRIVATE_MEMORY"] = "1"
        return env

    def make_preexec_fn(self, name):
        home = self.home_dir
        account = self._account

        def preexec():  # runs in the child between fork and exec: no logging here
            if account is not None:
                os.setgroups([])
                os.setgid(account.gid)
                os.setuid(account.uid)
            os.chdir(home)

        return preexec

    async def _prepare_account(self) -> None:
        """Per-user accounts: the analyst's account, private home and spool; else nothing."""
        if not self.per_user_accounts():
            self._account = None
            return
        name = unix_users.account_name(self.user.name, self.app_account_prefix)
        try:
            account = await unix_users.ensure_account(name, self.home_dir)
        except unix_users.AccountError as e:
            self.refuse(
                f"The app {self.name} cannot start: {e}. Ask an admin.",
                reason="app_account",
                status=500,
            )
        for folder in (
            Path(self.homes_root),
            Path(self.logs_root),
            self.log_path.parent,
            self.log_path.parent / "audit-spool",
        ):
            unix_users.traversable(folder)
        unix_users.prepare_home(Path(self.home_dir), account)
        unix_users.prepare_private_dir(Path(self.audit_spool_dir()), account)
        self._account = account

    def resolve_app_entry(self, options):
        if options.source == "version":
            return self._published_entry(options)
        if options.source != "home":
            raise EntryPathError(
                f'Source "{options.source}" runs on Kubernetes only: this hub runs apps as '
                'local processes from your home. Use source "home".'
            )
        os.makedirs(self.home_dir, mode=0o750, exist_ok=True)
        return str(resolve_entry(self.home_dir, options.path or default_entry(self.name)))

    def _published_entry(self, options) -> str:
        """Where the published version's entry file will be once ``launch`` extracts it;
        a version that does not exist, or whose environment is gone, is refused now."""
        from .publishing import check_run, run_folder
        from .versions import VersionError

        if not self.publish_dir:
            raise EntryPathError(
                'This hub has publishing turned off: use source "home" (the default).'
            )
        try:
            version = check_run(self.publish_dir, self.user.name, self.name, options.version)
        except VersionError as e:
            raise EntryPathError(str(e)) from None
        return str(run_folder(self.publish_dir, self.user.name, self.name, version) / version.entry)

    async def _prepare_published_run(self):
        """Extract the version this start runs, for the app account; its environment's
        Python runs the app server (the platform's when the version has no requirements)."""
        from .publishing import prepare_run

        options = self.app_options
        run = await asyncio.to_thread(
            prepare_run,
            self.publish_dir,
            self.user.name,
            self.name,
            options.version,
            account=self._account,
        )
        self.app_entry = str(run.entry)
        self.app_version = run.version.id
        if run.python is not None and list(self.app_command[:1]) == [self.app_python]:
            self.cmd = [str(run.python), *self.app_command[1:]]

    log_max_bytes = Integer(
        10 * 1024 * 1024,
        config=True,
        help="An app's log is moved to <app>.log.1 at start once it is larger than this.",
    )

    def _rotate_log(self) -> None:
        try:
            if self.log_path.stat().st_size > self.log_max_bytes:
                os.replace(self.log_path, self.log_path.with_name(self.log_path.name + ".1"))
        except FileNotFoundError:
            pass

    async def launch(self):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        await self._prepare_account()
        self.app_version = None
        self.cmd = list(self.app_command)
        options = getattr(self, "app_options", None)
        if options is not None and options.source == "version":
            await self._prepare_published_run()
        self._rotate_log()
        # the owner's app secrets, read (and checked) before anything starts
        from .app_secrets import pipe_payload, secrets_for_start, write_pipe

        app_secrets = secrets_for_start(self)
        read_end, write_end = os.pipe()
        with open(self.log_path, "ab", buffering=0) as out:
            out.write(b"---- app server starting ----\n")
            self.popen_kwargs = {
                "stdout": out,
                "stderr": out,
                "stdin": subprocess.DEVNULL,
                "pass_fds": (read_end,),
            }
            self._token_fd = read_end
            try:
                # get_env (inside the base start) takes the token out of the environment;
                # it is written to the pipe once the child holds the read end.
                try:
                    url = await super().launch()
                except subprocess.SubprocessError as e:
                    # the preexec step (switch to the app account, enter the home) failed
                    self.refuse(
                        f"The app {self.name} could not start as "
                        f"{self._account.name if self._account else 'the hub user'} in "
                        f"{self.home_dir}: {e}. Ask an admin to check the hub's log.",
                        reason="app_account",
                        status=500,
                    )
                # with the owner's app secrets after it: never in the environment, on a
                # command line or in a file (spawner/app_secrets.py)
                await write_pipe(write_end, pipe_payload(self._token_for_pipe or "", app_secrets))
            finally:
                self.popen_kwargs = {}
                self._token_for_pipe = self._token_fd = None
                os.close(write_end)
                os.close(read_end)
        profile = getattr(self, "app_profile_spec", None)
        if profile is not None and profile.mem_limit:
            self._watchdog = asyncio.ensure_future(self._watch_memory(profile))
        return url

    async def _watch_memory(self, profile):
        limit = profile.mem_limit
        while self.pid and self.app_exit_status() is None:
            await asyncio.sleep(self.memory_check_interval)
            if not self.pid:
                return
            used = tree_rss(self.pid)
            if used > limit:
                message = (
                    f"stopped by the hub: the app used {format_bytes(used)} of memory, over "
                    f"the {format_bytes(limit)} limit of its profile {profile.slug!r}. "
                    "Pick a larger profile or use less memory."
                )
                self.log.warning("%s %s", self._log_name, message)
                self.stop_reason = message
                try:
                    with open(self.log_path, "a") as f:
                        f.write(f"---- {message}\n")
                    os.killpg(self.pid, signal.SIGKILL)
                except (OSError, ProcessLookupError):
                    pass
                return

    stop_reason: str = ""
    _watchdog = None

    async def poll(self):
        status = await super().poll()
        if status is None and self._watchdog is None and self.pid and self.app_profile:
            # A hub that restarted finds its apps running (load_state): watch their memory
            # again, with the profile each was started with.
            profile = self._profile_of_running_app()
            if profile is not None and profile.mem_limit:
                self.app_profile_spec = profile
                self._watchdog = asyncio.ensure_future(self._watch_memory(profile))
        return status

    def _profile_of_running_app(self):
        if not self.policy_file:
            return None
        from .policy import cached_policy

        return cached_policy(self.policy_file).profiles.get(self.app_profile)

    async def stop(self, now=False):
        watchdog = getattr(self, "_watchdog", None)
        if watchdog is not None:
            watchdog.cancel()
            self._watchdog = None
        return await super().stop(now=now)

    def app_exit_status(self):
        proc = getattr(self, "proc", None)
        return proc.poll() if proc is not None else None

    def app_failure_details(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                lines = deque(f, maxlen=self.log_tail_lines)
        except OSError:
            return ""
        return b"".join(lines).decode("utf-8", "replace").rstrip()

    async def _signal(self, sig):
        """Signal the app's process group (the app may have started children)."""
        if sig == 0:
            return await super()._signal(sig)
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return False
        except PermissionError:
            return await super()._signal(sig)
        return True
