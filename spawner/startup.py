"""How the hub's configuration file starts the platform: a wrong setting is one sentence, and a
hub that stops before it is running leaves nothing behind.

``configure_or_exit(c)`` is what ``hub_config/jupyterhub_config.py`` and the chart's
``hub.extraConfig`` call. It runs :func:`spawner.hubconfig.configure` (and, for the local
configuration file, :func:`spawner.hubconfig.load_extra_config`):

- a :class:`ConfigError` (a wrong setting or policy, a port in use: the message names the key)
  is printed as one line on stderr and the process exits with status 1, with no traceback
  through the config loader (``SystemExit`` passes through traitlets and JupyterHub quietly);
- in local mode, the hub process that is starting gets :class:`StartGuard`.

Why the guard: JupyterHub installs its Ctrl-C handler, which stops the proxy, services and
apps, only once it is fully running. Before that (a managed service that does not come up
holds the start for up to ``Service.timeout``, 30 s), Ctrl-C was a ``KeyboardInterrupt``
traceback that left the proxy and the services running, and a service that failed to start
made JupyterHub exit by itself the same way. The guard turns Ctrl-C (and SIGTERM) during the
start into a quiet exit, and at exit, if JupyterHub's own clean-up did not run (it removes the
hub's pid file last), stops every process the hub started: its children (the proxy, managed
services, apps) and the proxy named by the proxy's pid file.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .settings import ConfigError

PROGRAM = "jupyterhub-streamlit"


def configure_or_exit(c, *, extra_config: bool = False, environ=None) -> None:
    """``configure(c)`` (then ``load_extra_config(c)`` if ``extra_config``); a wrong setting
    stops the process with its sentence and exit status 1, no traceback."""
    from .hubconfig import configure, load_extra_config

    real = environ is None  # the hub itself starting (tests pass a dict)
    if real:
        guard = StartGuard()
        guard.catch_signals()
    try:
        s = configure(c, environ)
        if extra_config:
            load_extra_config(c, environ)
    except ConfigError as e:
        print(f"\n{PROGRAM}: the hub cannot start: {e}\n", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    if real:
        if s.mode == "local":
            guard.clean_up_at_exit(c)
        else:
            guard.release()


class StartGuard:
    """Ctrl-C during the hub's start, and an exit before it cleaned up (see the module)."""

    def __init__(self, pid: int | None = None):
        self.pid = pid or os.getpid()
        self._previous: dict[int, object] = {}

    # ---- signals until JupyterHub installs its own --------------------------------------
    def catch_signals(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._interrupted)

    def release(self) -> None:
        """Give the signals back (Kubernetes mode: the pod's end stops everything)."""
        for sig, handler in self._previous.items():
            if signal.getsignal(sig) == self._interrupted:
                signal.signal(sig, handler)
        self._previous.clear()

    def _interrupted(self, signum, frame):
        # JupyterHub replaces this handler once it is running; until then, stop quietly
        # (the exit hook below stops what was started).
        print("\nInterrupted while the hub was starting.", file=sys.stderr, flush=True)
        raise SystemExit(130 if signum == signal.SIGINT else 143)

    # ---- at exit ------------------------------------------------------------------------
    def clean_up_at_exit(self, c) -> None:
        self.config = c
        atexit.register(self.at_exit)

    def at_exit(self) -> None:
        c = self.config
        hub_pid_file = _setting(c.JupyterHub, "pid_file")
        proxy_pid_file = _setting(c.ConfigurableHTTPProxy, "pid_file")
        if not hub_pid_file or _read_pid(hub_pid_file) != self.pid:
            return  # JupyterHub cleaned up (it removes its pid file last), or never started
        if _setting(c.JupyterHub, "cleanup_servers") is False:
            return  # the operator keeps apps running across hub restarts
        stopped = stop_processes(self.started_processes(proxy_pid_file))
        for path in (proxy_pid_file, hub_pid_file):
            if path:
                Path(path).unlink(missing_ok=True)
        if stopped:
            print(
                f"{PROGRAM}: stopped {stopped} process{'es' if stopped != 1 else ''} the hub "
                "had started (proxy, services, apps).",
                file=sys.stderr,
                flush=True,
            )

    def started_processes(self, proxy_pid_file: str | None) -> list[int]:
        """This hub's descendants, and the proxy of its pid file (it may be one a previous
        run left and this one took over)."""
        pids = descendants(self.pid)
        proxy = _read_pid(proxy_pid_file) if proxy_pid_file else None
        if proxy and proxy not in pids and _is_proxy(proxy):
            pids.append(proxy)
        return pids


def _setting(section, name):
    return section.get(name) if name in section else None


def _read_pid(path) -> int | None:
    try:
        pid = int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 else None


def _is_proxy(pid: int) -> bool:
    try:
        return b"configurable-http-proxy" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return _alive(pid) and "configurable-http-proxy" in _ps_command(pid)


def proxy_running(pid_file) -> bool:
    """Whether the pid file names a running configurable-http-proxy (a pid reused by another
    program does not count)."""
    pid = _read_pid(pid_file)
    return pid is not None and _is_proxy(pid)


def _ps_command(pid: int) -> str:
    try:
        return subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process (``/proc``; ``ps`` where there is none)."""
    out: dict[int, int] = {}
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses
            fields = stat[stat.rfind(")") + 2 :].split()
            if len(fields) >= 2 and fields[0] != "Z":
                out[int(entry.name)] = int(fields[1])
        return out
    try:
        text = subprocess.run(
            ["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            out[int(parts[0])] = int(parts[1])
    return out


def descendants(pid: int, parents: dict[int, int] | None = None) -> list[int]:
    """Every live process below ``pid`` (children first level first)."""
    parents = _parents() if parents is None else parents
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, queue = [], list(children.get(pid, []))
    while queue:
        p = queue.pop(0)
        if p in found or p == pid:
            continue
        found.append(p)
        queue.extend(children.get(p, []))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if Path("/proc").is_dir():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return not stat[stat.rfind(")") + 2 :].startswith("Z")
    return True


def stop_processes(pids: list[int], timeout: float = 3.0) -> int:
    """SIGTERM ``pids``, SIGKILL what still lives after ``timeout``; how many were alive."""
    alive = [p for p in pids if _alive(p)]
    for pid in alive:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(alive)
        if not any(_alive(p) for p in alive):
            return len(alive)
        time.sleep(0.05)
    for pid in alive:
        if _alive(pid):
            _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        _reap(alive)
        if not any(_alive(p) for p in alive):
            break
        time.sleep(0.02)
    return len(alive)


def _signal(pid: int, sig) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _reap(pids: list[int]) -> None:
    """Collect those of ``pids`` that are our exited children (no zombies left)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass  # not our child, or already collected
