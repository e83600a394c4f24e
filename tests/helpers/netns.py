"""A pod network for tests: private network and mount namespaces, like a pod's, on this machine.

The chart's hub configuration binds fixed ports (the hub on 8081, the audit service on 8082, the
proxy on 8000/8001) and names its peers by their Service names (``hub``, ``proxy-api``). Run
as-is, it needs both: ``Sandbox`` gives a set of processes a loopback network of their own
(``unshare --net``: its ports cannot collide with anything else on the machine) and an
``/etc/hosts`` that resolves the Service names to that loopback (``unshare --mount``: nothing
changes outside). Bind mounts put files where the hub pod has them (``/usr/local/etc/...``,
``/srv/jupyterhub``), on top of tmpfs, inside the namespace only.

Processes join it with ``nsenter``; the test process reaches ports inside through a forwarder
(``forward``) that listens on this machine's loopback and connects inside.

Needs root (CAP_SYS_ADMIN), as on the project's machines and CI; ``available()`` says.

Run by ``Sandbox``: ``python -m tests.helpers.netns hold ...`` / ``... forward ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def available() -> str | None:
    """None if sandboxes work here, else why not."""
    if os.geteuid() != 0:
        return "needs root (network and mount namespaces)"
    for tool in ("unshare", "nsenter", "mount"):
        if not shutil.which(tool):
            return f"{tool} (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "--net", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return f"cannot make network and mount namespaces here: {probe.stderr.strip()}"
    return None


# ---- inside: the namespace holder ------------------------------------------------------------
def _loopback_up() -> None:
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket() as s:
        req = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s, siocgifflags, req))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sh22x", b"lo", flags | iff_up))


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def hold(hosts: Path, tmpfs: list[str], binds: list[tuple[Path, str]]) -> None:
    _loopback_up()
    _mount("--bind", str(hosts), "/etc/hosts")
    for d in tmpfs:
        _mount("-t", "tmpfs", "-o", "mode=755", "tmpfs", d)
    for src, dst in binds:
        target = Path(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            target.mkdir(exist_ok=True)
        else:
            target.touch()
        _mount("--bind", str(src), dst)
    print("ready", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    while not stop:
        signal.pause()


# ---- outside: a forwarder from this machine's loopback into the namespace ---------------------
def _enter_netns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


async def _pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


def forward(netns: str, pairs: list[tuple[int, int]]) -> None:
    # Listening sockets are made here, in this machine's network; after setns every new
    # socket (the connections inside) belongs to the pod network.
    listeners = []
    for outside, _ in pairs:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", outside))
        s.listen(256)
        s.setblocking(False)
        listeners.append(s)
    _enter_netns(netns)

    async def main():
        def handler(inside):
            async def handle(reader, writer):
                try:
                    r2, w2 = await asyncio.open_connection("127.0.0.1", inside)
                except OSError:
                    writer.close()
                    return
                try:
                    await asyncio.gather(_pipe(reader, w2), _pipe(r2, writer))
                except asyncio.CancelledError:
                    pass

            return handle

        servers = [
            await asyncio.start_server(handler(inside), sock=s)
            for s, (_, inside) in zip(listeners, pairs, strict=False)
        ]
        print("ready", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        for s in servers:
            s.close()

    asyncio.run(main())


# ---- the test side ---------------------------------------------------------------------------
class Sandbox:
    """One pod network; ``run()`` starts a process inside, ``forward()`` reaches a port inside."""

    def __init__(self, workdir: Path, hosts: dict[str, str], tmpfs=(), binds=()):
        self.workdir = Path(workdir)
        self.hosts = hosts
        self.tmpfs = list(tmpfs)
        self.binds = list(binds)  # (local path, path inside)
        self.holder: subprocess.Popen | None = None
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Sandbox:
        self.workdir.mkdir(parents=True, exist_ok=True)
        hosts = self.workdir / "hosts"
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += [f"{ip}\t{name}" for name, ip in self.hosts.items()]
        hosts.write_text("\n".join(lines) + "\n")
        args = [sys.executable, "-m", "tests.helpers.netns", "hold", "--hosts", str(hosts)]
        for d in self.tmpfs:
            args += ["--tmpfs", d]
        for src, dst in self.binds:
            args += ["--bind", f"{src}={dst}"]
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=open(self.workdir / "holder.log", "wb"),
            text=True,
            start_new_session=True,
        )
        if self.holder.stdout.readline().strip() != "ready":
            self.holder.wait(10)
            raise RuntimeError(
                "pod network did not start:\n"
                + (self.workdir / "holder.log").read_text(errors="replace")
            )
        return self

    def run(
        self, argv: list[str], *, env: dict, cwd: str | Path, log: Path, **kw
    ) -> subprocess.Popen:
        """Start ``argv`` inside, in ``cwd`` (a path as seen inside)."""
        proc = subprocess.Popen(
            # (nsenter's --wd opens the folder before entering: cd inside instead)
            [
                "nsenter",
                f"--target={self.holder.pid}",
                "--net",
                "--mount",
                "--",
                "sh",
                "-c",
                'cd "$0" && exec "$@"',
                str(cwd),
                *argv,
            ],
            env=env,
            stdout=kw.pop("stdout", open(log, "ab")),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kw,
        )
        self.procs.append(proc)
        return proc

    def forward(self, pairs: list[tuple[int, int]], log: Path) -> subprocess.Popen:
        args = [f"{o}:{i}" for o, i in pairs]
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.helpers.netns",
                "forward",
                "--netns",
                f"/proc/{self.holder.pid}/ns/net",
                *args,
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=open(log, "ab"),
            text=True,
            start_new_session=True,
        )
        if proc.stdout.readline().strip() != "ready":
            proc.wait(10)
            raise RuntimeError("forwarder did not start:\n" + log.read_text(errors="replace"))
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop_process(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 30) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def __exit__(self, *exc) -> None:
        for proc in reversed(self.procs):
            self.stop_process(proc)
        if self.holder:
            self.stop_process(self.holder, timeout=10)


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing answers on 127.0.0.1:{port}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.helpers.netns")
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("hold")
    h.add_argument("--hosts", type=Path, required=True)
    h.add_argument("--tmpfs", action="append", default=[])
    h.add_argument("--bind", action="append", default=[])
    f = sub.add_parser("forward")
    f.add_argument("--netns", required=True)
    f.add_argument("pairs", nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "hold":
        binds = [(Path(b.split("=", 1)[0]), b.split("=", 1)[1]) for b in args.bind]
        hold(args.hosts, args.tmpfs, binds)
    else:
        forward(args.netns, [tuple(int(x) for x in p.split(":")) for p in args.pairs])
    return 0


if __name__ == "__main__":
    sys.exit(main())
