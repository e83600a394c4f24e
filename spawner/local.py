"""``streamlit-local``: each app is a local process on the hub's machine.

For one machine with no cluster (the embedded default, demos, tests). It adds to the shared
mixin only what is local: a home directory per user under ``homes_root``, the app's output in
a log file under ``logs_root``, and signals sent to the app's whole process group.
It does not isolate users from each other (same Unix user); use ``streamlit-kube`` for that.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections import deque
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Float, Integer, Unicode, default

from .mixin import StreamlitSpawnerMixin
from .names import EntryPathError, default_entry, resolve_entry
from .policy import format_bytes


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


class StreamlitLocalSpawner(StreamlitSpawnerMixin, LocalProcessSpawner):
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

    @default("cmd")
    def _default_cmd(self):
        return list(self.app_command)

    @default("ip")
    def _default_ip(self):
        return "127.0.0.1"

    def get_args(self):
        # Spawner.get_args adds jupyter-singleuser flags; the app server takes none.
        return []

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
        env["USER"] = self.user.name
        env["HOME"] = self.home_dir
        env["SHELL"] = "/bin/sh"
        return env

    def make_preexec_fn(self, name):
        home = self.home_dir

        def preexec():  # runs in the child between fork and exec: no logging here
            os.chdir(home)

        return preexec

    def resolve_app_entry(self, options):
        if options.source != "home":
            raise EntryPathError(
                f"Source \"{options.source}\" runs on Kubernetes only: this hub runs apps as "
                "local processes from your home. Use source \"home\".")
        os.makedirs(self.home_dir, mode=0o750, exist_ok=True)
        return str(resolve_entry(self.home_dir, options.path or default_entry(self.name)))

    log_max_bytes = Integer(
        10 * 1024 * 1024, config=True,
        help="An app's log is moved to <app>.log.1 at start once it is larger than this.")

    def _rotate_log(self) -> None:
        try:
            if self.log_path.stat().st_size > self.log_max_bytes:
                os.replace(self.log_path, self.log_path.with_name(self.log_path.name + ".1"))
        except FileNotFoundError:
            pass

    async def launch(self):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._rotate_log()
        with open(self.log_path, "ab", buffering=0) as out:
            out.write(b"---- app server starting ----\n")
            self.popen_kwargs = {"stdout": out, "stderr": out, "stdin": subprocess.DEVNULL}
            try:
                url = await super().launch()
            finally:
                self.popen_kwargs = {}
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
