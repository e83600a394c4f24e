"""Real git repositories served over smart HTTP on 127.0.0.1, for tests that never reach the
internet (``git http-backend``, git's own CGI server side, behind a small threaded server).

    with GitServer(tmp_path) as server:
        sha = server.commit("sales", {"app.py": "..."})      # a bare repo, a new commit on main
        server.url("sales")                                  # http://127.0.0.1:<port>/sales.git

``token``: the server answers 401 unless the request carries ``Authorization: Basic`` with that
token as the password (any user name) or ``Authorization: Bearer <token>``, as GitHub and
GitLab do for private repositories. ``hang``: every request waits that many seconds before a
byte is answered (timeouts). ``redirect``: every request is answered with a 302 to that base
URL (redirects). ``seen`` keeps each request's method, path, query and headers.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

GIT = shutil.which("git") or "git"
_ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "Tess Ter",
    "GIT_AUTHOR_EMAIL": "tess@example.com",
    "GIT_COMMITTER_NAME": "Tess Ter",
    "GIT_COMMITTER_EMAIL": "tess@example.com",
    "LC_ALL": "C",
}


def git(*args: str, cwd: Path | None = None, env: dict | None = None) -> str:
    out = subprocess.run(
        [GIT, *args], cwd=cwd, env={**_ENV, **(env or {})}, capture_output=True, text=True
    )
    if out.returncode:
        raise RuntimeError(f"git {' '.join(args)}: {out.stderr}")
    return out.stdout.strip()


def http_backend() -> str:
    found = git("--exec-path")
    return str(Path(found) / "git-http-backend")


class GitServer:
    def __init__(
        self,
        root: Path,
        *,
        token: str | None = None,
        hang: float = 0.0,
        redirect: str | None = None,
    ):
        self.root = Path(root)
        self.repos = self.root / "repos"
        self.work = self.root / "work"
        self.repos.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.hang = hang
        self.redirect = redirect
        self.seen: list[dict] = []
        self._server: ThreadingHTTPServer | None = None

    # ---- repositories ---------------------------------------------------------------------
    def url(self, name: str) -> str:
        return f"{self.base}/{name}.git"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def commit(
        self,
        name: str,
        files: dict[str, str | bytes],
        *,
        branch: str = "main",
        message: str = "change",
        remove: tuple[str, ...] = (),
        symlinks: dict[str, str] | None = None,
    ) -> str:
        """Write ``files`` in a work copy of ``name`` on ``branch``, commit, push; the sha."""
        bare = self.repos / f"{name}.git"
        work = self.work / name
        if not bare.exists():
            git("init", "-q", "--bare", "-b", "main", str(bare))
            git("config", "http.receivepack", "false", cwd=bare)
            git("init", "-q", "-b", branch, str(work))
            git("remote", "add", "origin", str(bare), cwd=work)
        else:
            git("fetch", "-q", "origin", cwd=work)
            existing = git("ls-remote", "--heads", "origin", branch, cwd=work)
            start = f"origin/{branch}" if existing else "HEAD"
            git("checkout", "-q", "-B", branch, start, cwd=work)
        for path, content in files.items():
            target = work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            data = content if isinstance(content, bytes) else content.encode()
            target.write_bytes(data)
        for path in remove:
            (work / path).unlink()
        for path, points_to in (symlinks or {}).items():
            (work / path).symlink_to(points_to)
        git("add", "-A", cwd=work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=work)
        git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
        return git("rev-parse", "HEAD", cwd=work)

    def tag(self, name: str, tag: str, *, annotated: bool = True, at: str = "HEAD") -> str:
        """Tag ``at`` in the work copy and push it; the tag's commit."""
        work = self.work / name
        if annotated:
            git("tag", "-a", tag, "-m", tag, at, cwd=work)
        else:
            git("tag", tag, at, cwd=work)
        git("push", "-q", "origin", f"refs/tags/{tag}", cwd=work)
        return git("rev-parse", f"{tag}^{{commit}}", cwd=work)

    # ---- the server -----------------------------------------------------------------------
    def __enter__(self) -> GitServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> GitServer:
        self._server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        if not header:
            return False
        kind, _, value = header.partition(" ")
        if kind.lower() == "bearer":
            return value == self.token
        if kind.lower() == "basic":
            try:
                _user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False
            return password == self.token
        return False


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # a client that hung up
        pass


def _handler(server: GitServer):
    backend = http_backend()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _serve(self) -> None:
            path, _, query = self.path.partition("?")
            server.seen.append(
                {
                    "method": self.command,
                    "path": path,
                    "query": query,
                    "headers": dict(self.headers),
                }
            )
            body = self._body()
            if server.hang:
                time.sleep(server.hang)
            if server.redirect:
                self._answer(302, [("Location", server.redirect + self.path)], b"")
                return
            if not server.authorized(self.headers.get("Authorization")):
                self._answer(401, [("WWW-Authenticate", 'Basic realm="git"')], b"no\n")
                return
            env = {
                "PATH": os.environ.get("PATH", os.defpath),
                "GIT_PROJECT_ROOT": str(server.repos),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": "/dev/null",
                "HOME": "/nonexistent",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_ADDR": "127.0.0.1",
                "REMOTE_USER": "git" if server.token else "",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "GATEWAY_INTERFACE": "CGI/1.1",
            }
            if self.headers.get("Git-Protocol"):
                env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
            if self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
            out = subprocess.run([backend], input=body, env=env, capture_output=True)
            head, _, payload = out.stdout.partition(b"\r\n\r\n")
            status, headers = 200, []
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self._answer(status, headers, payload)

        def _answer(self, status: int, headers: list, payload: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in ("content-length", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
