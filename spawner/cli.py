"""``streamlit-hub``: the analysts' command line for publishing apps (#14).

    streamlit-hub login [--url URL]               store a hub token (mode 600)
    streamlit-hub deploy [DIR] --app NAME         upload DIR, build, start, print the URL
    streamlit-hub deploy --git URL [--ref REF] --app NAME [--token-secret NAME]
                                                  deploy a commit of a git repository
    streamlit-hub versions --app NAME             the app's versions, the active one marked
    streamlit-hub rollback VERSION --app NAME     make VERSION active (a running app restarts)
    streamlit-hub logs --app NAME [--build]       the app's last output (or last build log)
    streamlit-hub open --app NAME                 open the app in a browser
    streamlit-hub secrets list|set|delete ...     the app's secrets (spawner/cli_secrets.py)

It talks to the hub's REST API (``docs/publishing.md``) with a hub token the analyst makes on
the hub's token page (``/hub/token``). The token is kept in
``$XDG_CONFIG_HOME/streamlit-hub/credentials.json`` (mode 600), or given by
``STREAMLIT_HUB_TOKEN`` and ``STREAMLIT_HUB_URL`` (CI jobs); it is never printed. Every failure
(a refused bundle, a failed build, a quota refusal) prints the hub's sentence and exits 1.

``deploy`` packs DIR as a ``.tar.gz`` of its regular files, leaving out what
``.streamlitignore`` (or, without one, ``.gitignore``) names, with git's own pattern rules
(``pathspec``), and always ``.git``, ``__pycache__``, ``.venv`` and editor litter.

``deploy --git`` sends no files: the hub resolves ``--ref`` (a branch, tag or commit; default
the repository's default branch) to a commit and fetches it from a host the group policy
allows. A private repository's token is one of the app's secrets (``streamlit-hub secrets set
GIT_TOKEN --app NAME``) that ``--token-secret GIT_TOKEN`` names; it never passes through
this command. When the app already runs that commit nothing is deployed (exit 0).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import tarfile
import tempfile
import webbrowser
from pathlib import Path

from traitlets import Unicode

from .settings import EnvSettings

ALWAYS_IGNORED = (".git/", "__pycache__/", ".venv/", ".ipynb_checkpoints/", ".DS_Store", "*.pyc")
IGNORE_FILES = (".streamlitignore", ".gitignore")


class CLIError(Exception):
    """A failure to report: ``str()`` is printed, the exit status is 1."""


class CLISettings(EnvSettings):
    """What ``streamlit-hub`` reads from its environment (CI jobs: no ``login`` step)."""

    error_class = CLIError
    url = Unicode(
        help="The hub's address for streamlit-hub (with STREAMLIT_HUB_TOKEN: no stored login)."
    ).tag(env="STREAMLIT_HUB_URL")
    token = Unicode(
        help="A hub API token for streamlit-hub, used instead of the one login stored."
    ).tag(env="STREAMLIT_HUB_TOKEN", secret=True)


# ---- credentials ----------------------------------------------------------------------------
def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "streamlit-hub" / "credentials.json"


def load_credentials() -> tuple[str, str]:
    own = CLISettings()
    url, token = own.url, own.token
    if url and token:
        return url.rstrip("/"), token
    try:
        data = json.loads(credentials_path().read_text())
        return data["url"].rstrip("/"), data["token"]
    except (OSError, ValueError, KeyError):
        raise CLIError(
            "Not signed in: run `streamlit-hub login --url https://<your hub>` first."
        ) from None


def save_credentials(url: str, token: str, user: str) -> Path:
    path = credentials_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "user": user, "token": token}, f)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


# ---- the hub's API ---------------------------------------------------------------------------
class Hub:
    def __init__(self, url: str, token: str):
        import requests

        self.url = url.rstrip("/")
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {token}"
        self._user = None

    def request(self, method: str, path: str, ok=(200, 201, 202, 204), **kwargs):
        import requests

        kwargs.setdefault("timeout", 60)
        try:
            r = self.http.request(method, self.url + path, **kwargs)
        except requests.RequestException as e:
            raise CLIError(f"Cannot reach the hub at {self.url}: {e.__class__.__name__}.") from None
        if r.status_code not in ok:
            raise CLIError(_message(r))
        return r

    @property
    def user(self) -> str:
        if self._user is None:
            r = self.request("GET", "/hub/api/user", ok=(200, 401, 403))
            if r.status_code != 200:
                raise CLIError(
                    f"The hub refused the token: make a new one at {self.url}/hub/token and "
                    "run `streamlit-hub login` again."
                )
            self._user = r.json()["name"]
        return self._user

    def app_api(self, app: str, rest: str = "") -> str:
        return f"/hub/api/streamlit/apps/{self.user}/{app}{rest}"


def _message(r) -> str:
    try:
        return r.json().get("message") or f"The hub answered {r.status_code}."
    except ValueError:
        return f"The hub answered {r.status_code} {r.reason}."


# ---- packing ---------------------------------------------------------------------------------
def ignore_spec(folder: Path):
    import pathspec

    lines = list(ALWAYS_IGNORED)
    for name in IGNORE_FILES:
        path = folder / name
        if path.is_file():
            lines += path.read_text(encoding="utf-8", errors="replace").splitlines()
            break
    return pathspec.GitIgnoreSpec.from_lines(lines)


def bundle_files(folder: Path) -> list[str]:
    """The files ``deploy`` uploads (relative POSIX paths), sorted; links are refused."""
    spec = ignore_spec(folder)
    files = []
    for root, dirs, names in os.walk(folder):
        rel_root = Path(root).relative_to(folder)
        kept = []
        for d in sorted(dirs):
            rel = (rel_root / d).as_posix()
            if spec.match_file(rel + "/"):
                continue
            if (Path(root) / d).is_symlink():
                raise CLIError(f"{rel} is a symbolic link: a bundle holds regular files only.")
            kept.append(d)
        dirs[:] = kept
        for name in sorted(names):
            rel = (rel_root / name).as_posix()
            if spec.match_file(rel):
                continue
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                raise CLIError(f"{rel} is not a regular file: a bundle holds regular files only.")
            files.append(rel)
    return sorted(files)


def pack(folder: Path, out) -> int:
    files = bundle_files(folder)
    if not files:
        raise CLIError(f"{folder} has no files to deploy.")
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for rel in files:
            tar.add(str(folder / rel), arcname=rel, recursive=False)
    return len(files)


# ---- commands --------------------------------------------------------------------------------
def cmd_login(args) -> int:
    url = (args.url or CLISettings().url).rstrip("/")
    if not url:
        raise CLIError("Give the hub's address: streamlit-hub login --url https://apps.example.com")
    if args.token_stdin:
        token = sys.stdin.readline().strip()
    else:
        print(f"Make a token at {url}/hub/token and paste it here (it is not shown).")
        token = getpass.getpass("Token: ").strip()
    if not token:
        raise CLIError("No token given.")
    user = Hub(url, token).user
    path = save_credentials(url, token, user)
    print(f"Signed in to {url} as {user} (token kept in {path}, mode 600).")
    return 0


def cmd_deploy(args) -> int:
    if args.git:
        return cmd_deploy_git(args)
    for flag, value in (("--ref", args.ref), ("--token-secret", args.token_secret)):
        if value:
            raise CLIError(f"{flag} goes with --git URL.")
    hub = Hub(*load_credentials())
    folder = Path(args.dir or ".").resolve()
    if not folder.is_dir():
        raise CLIError(f"{args.dir} is not a folder.")
    with tempfile.TemporaryFile() as spool:
        count = pack(folder, spool)
        size = spool.tell()
        spool.seek(0)
        print(f"Uploading {folder.name}: {count} files, {size / 1024:.1f} KB compressed")
        params = {"filename": folder.name + ".tar.gz"}
        if args.entry:
            params["entry"] = args.entry
        if args.no_activate:
            params["activate"] = "false"
        r = hub.request(
            "POST",
            hub.app_api(args.app, "/versions"),
            ok=(200, 201, 400, 404, 409, 413, 422, 403),
            data=spool,
            params=params,
            headers={"Accept": "application/x-ndjson", "Content-Type": "application/gzip"},
            stream=True,
            timeout=(30, 3600),
        )
        last = _follow_deploy(r)
    return _deployed(hub, args, last)


def cmd_deploy_git(args) -> int:
    if args.dir is not None:
        raise CLIError("Give either a folder or --git URL, not both.")
    hub = Hub(*load_credentials())
    body = {"repo": args.git}
    for key, value in (
        ("ref", args.ref),
        ("entry", args.entry),
        ("token_secret", args.token_secret),
    ):
        if value:
            body[key] = value
    if args.no_activate:
        body["activate"] = False
    print(f"Deploying {args.git}" + (f" at {args.ref}" if args.ref else ""))
    r = hub.request(
        "POST",
        hub.app_api(args.app, "/versions/from-git"),
        ok=(200, 201, 400, 403, 404, 409, 413, 422, 502, 503, 504),
        json=body,
        headers={"Accept": "application/x-ndjson"},
        stream=True,
        timeout=(30, 3600),
    )
    last = _follow_deploy(r)
    if last.get("status") == 200 and last.get("unchanged"):
        version = last["version"]
        commit = version["source"].get("commit", "")[:12]
        print(f"{args.app} already runs {commit} ({version['id']}): nothing to deploy.")
        if not args.no_start and not _running(hub, args.app):
            _start(hub, args)
        print(f"{args.app} is at {app_url(hub, args.app)}")
        return 0
    return _deployed(hub, args, last)


def _running(hub: Hub, app: str) -> bool:
    model = hub.request("GET", f"/hub/api/users/{hub.user}").json()
    server = model.get("servers", {}).get(app) or {}
    return bool(server.get("ready") or server.get("pending"))


def _start(hub: Hub, args) -> None:
    body = {"profile": args.profile} if args.profile else {}
    hub.request("POST", f"/hub/api/users/{hub.user}/servers/{args.app}", json=body)
    _follow_start(hub, args.app)


def _deployed(hub: Hub, args, last: dict) -> int:
    """After a deploy's last line: the failure (exit 1), or start the app and say where."""
    if last.get("status") != 201:
        log = last.get("log") or ""
        if log:
            tail = "\n".join(log.splitlines()[-25:])
            print(f"---- build log (last lines; `streamlit-hub logs --build --app {args.app}`)")
            print(tail)
        raise CLIError(last.get("message") or "The deploy failed.")
    version = last["version"]
    source = version["source"]
    commit = f", commit {source['commit'][:12]}" if source.get("commit") else ""
    print(f"Deployed {version['id']} of {args.app} ({version['digest'][:19]}{commit})")
    if args.no_activate:
        print(f"Not activated: `streamlit-hub rollback {version['id']} --app {args.app}` does.")
        return 0
    if not args.no_start and not last.get("restarted"):
        body = {"profile": args.profile} if args.profile else {}
        hub.request("POST", f"/hub/api/users/{hub.user}/servers/{args.app}", json=body)
    if not args.no_start or last.get("restarted"):
        _follow_start(hub, args.app)
    print(f"{args.app} is at {app_url(hub, args.app)}")
    return 0


def _follow_deploy(r) -> dict:
    if not r.headers.get("Content-Type", "").startswith("application/x-ndjson"):
        body = r.json() if r.content else {}
        return {"status": r.status_code, **body}
    last: dict = {}
    for line in r.iter_lines():
        if not line.strip():
            continue
        event = json.loads(line)
        if "status" in event:
            last = event
        else:
            print(f"[{event.get('progress', 0):3d}%] {event.get('message', '')}")
    return last or {"status": 500, "message": "The hub closed the connection mid-deploy."}


def _follow_start(hub: Hub, app: str) -> None:
    r = hub.request(
        "GET",
        f"/hub/api/users/{hub.user}/servers/{app}/progress",
        stream=True,
        headers={"Accept": "text/event-stream"},
        timeout=(30, 600),
    )
    for raw in r.iter_lines():
        line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if not line.startswith("data:"):
            continue
        event = json.loads(line[5:])
        print(f"[{event.get('progress', 0):3d}%] {event.get('message', '')}")
        if event.get("failed"):
            raise CLIError(f"{app} did not start: {event.get('message', '')}")
        if event.get("ready"):
            return


def app_url(hub: Hub, app: str) -> str:
    model = hub.request("GET", f"/hub/api/users/{hub.user}").json()
    url = (model.get("servers", {}).get(app) or {}).get("url") or f"/user/{hub.user}/{app}/"
    return url if url.startswith("http") else hub.url + url


def cmd_versions(args) -> int:
    hub = Hub(*load_credentials())
    data = hub.request("GET", hub.app_api(args.app, "/versions")).json()
    if not data["versions"]:
        print(f"{args.app} has no versions yet: `streamlit-hub deploy DIR --app {args.app}`.")
        return 0
    for v in data["versions"]:
        source = v["source"]
        where = source.get("filename") or source.get("repo") or source.get("path") or ""
        if source.get("commit"):
            where += f" {source.get('ref', '')}@{source['commit'][:12]}".replace(" @", " ")
        mark = "*" if v["active"] else " "
        when = v["created_at"][:16].replace("T", " ")
        env = " env " + v["environment"][:12] if v["environment"] else ""
        print(f"{mark} {v['id']:>5}  {when} UTC  {v['created_by']}  {source['kind']} {where}{env}")
    return 0


def cmd_rollback(args) -> int:
    hub = Hub(*load_credentials())
    data = hub.request("PUT", hub.app_api(args.app, f"/versions/{args.version}/active")).json()
    print(f"{args.app} now runs {data['version']['id']}.")
    if data.get("restarted"):
        _follow_start(hub, args.app)
    return 0


def cmd_logs(args) -> int:
    hub = Hub(*load_credentials())
    if args.build:
        print(hub.request("GET", hub.app_api(args.app, "/build-log")).text, end="")
        return 0
    data = hub.request("GET", hub.app_api(args.app, "/output")).json()
    print("\n".join(data.get("lines") or []))
    if data.get("problem"):
        print(f"---- {data['problem']}", file=sys.stderr)
    return 0


def cmd_open(args) -> int:
    hub = Hub(*load_credentials())
    url = app_url(hub, args.app)
    print(url)
    if not args.print_only:
        webbrowser.open(url)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamlit-hub", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    login = sub.add_parser("login", help="store a hub token for the commands below")
    login.add_argument("--url", help="the hub's address, e.g. https://apps.example.com")
    login.add_argument("--token-stdin", action="store_true", help="read the token from stdin")
    login.set_defaults(run=cmd_login)
    deploy = sub.add_parser(
        "deploy", help="upload a folder (or deploy a git commit) as a new version and start it"
    )
    deploy.add_argument("dir", nargs="?", default=None, help="the app's folder (default: .)")
    deploy.add_argument("--git", metavar="URL", help="deploy from this git repository instead")
    deploy.add_argument("--ref", help="with --git: a branch, tag or commit (default: HEAD)")
    deploy.add_argument(
        "--token-secret",
        metavar="NAME",
        help="with --git: the app's secret holding a token for a private repository",
    )
    deploy.add_argument("--app", required=True, help="the app's name, e.g. sales")
    deploy.add_argument("--entry", help="the entry file in the folder (default: app.py)")
    deploy.add_argument("--profile", help="the machine size to start it on")
    deploy.add_argument("--no-start", action="store_true", help="do not start a stopped app")
    deploy.add_argument("--no-activate", action="store_true", help="record it, keep the active one")
    deploy.set_defaults(run=cmd_deploy)
    for name, func, text in (
        ("versions", cmd_versions, "list the app's versions"),
        ("logs", cmd_logs, "the app's last output"),
        ("open", cmd_open, "open the app in a browser"),
    ):
        c = sub.add_parser(name, help=text)
        c.add_argument("--app", required=True)
        c.set_defaults(run=func)
        if name == "logs":
            c.add_argument("--build", action="store_true", help="the last deploy's build log")
        if name == "open":
            c.add_argument("--print-only", action="store_true", help="only print the address")
    rollback = sub.add_parser("rollback", help="make an earlier (or later) version active")
    rollback.add_argument("version", help="e.g. v2")
    rollback.add_argument("--app", required=True)
    rollback.set_defaults(run=cmd_rollback)
    from .cli_secrets import add_commands  # streamlit-hub secrets list|set|delete (#16)

    add_commands(sub, sys.modules[__name__])
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except CLIError as e:
        print(f"streamlit-hub: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
