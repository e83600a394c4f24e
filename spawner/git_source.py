"""Publishing from git (#14 point 3): a repository URL and a branch, tag or commit, resolved to
a commit at deploy and fetched, exactly that commit, into a private folder the ``Publisher``
deploys as a bundle (``Source.git(repo, commit, ref)``). Both spawners: the hub does it.

- **URLs** (``check_repo_url``): ``https://host/path`` (``http://`` only on loopback, for
  tests and a mirror on the hub's own machine), no user name or password (``user:token@``
  is refused with a sentence: a token is the app's secret), no query or fragment, no control
  characters or spaces, and the host (``host[:port]``, lower case) in the group policy's
  ``sources.git_hosts``; otherwise a 403 naming the allowed hosts.
- **Refs** (``check_ref``): ``HEAD`` (the default branch), a branch or tag name, a full
  ``refs/...`` name, or a full commit (40 or 64 hex digits). Names are resolved as git does,
  tags before branches; an annotated tag to the commit it points at.
- **git runs with a clean environment** (``git_env``): no system or global configuration
  (``GIT_CONFIG_NOSYSTEM``, ``GIT_CONFIG_GLOBAL=/dev/null``, ``HOME`` a fresh empty folder),
  no terminal prompt, only the URL's own protocol allowed (``GIT_ALLOW_PROTOCOL``), no
  redirects (``http.followRedirects=false``: a credential is never sent on to another
  server), no submodules, no hooks, no LFS smudge, no credential helper; only the proxy and
  CA variables are passed through (``https_proxy``, ``no_proxy``, ``SSL_CERT_FILE``, ...).
  Every git command has a deadline (the whole resolve or fetch: ``timeout`` seconds; then its
  process group is killed) and a bound on what it may write: a fetch keeps one pack file
  (``fetch.unpackLimit=1``) of at most the group's upload size (``RLIMIT_FSIZE``); the
  commit's tree is listed first (``ls-tree -l``) and refused over the group's bundle size or
  file count, or with a symbolic link, before a file is written.
- **The token** of a private repository is the app's secret (``token_secret`` names it; the
  REST API reads it from the app secrets store). It reaches git only through its environment,
  as an ``Authorization: Basic`` header (``http.extraHeader`` via ``GIT_CONFIG_COUNT``), with
  the user name ``x-access-token`` (GitHub, GitLab), or the secret's own ``user:token``: never
  in an argument, the URL, a log, an error or the version. Whatever git says is scrubbed of
  it (``scrub``) before it becomes a sentence.

Errors are ``GitError`` with a sentence and an ``http_status``: 400 (a bad URL or ref, a
symbolic link), 403 (a host the policy does not allow), 413 (over a size limit), 422 (no such
repository, ref or commit, or access refused), 502 (the host cannot be reached or answered
badly), 503 (no git on the hub), 504 (the host did not answer in time): the hub is the
gateway to the git host there, and a retry may work.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .publishing import _size

DEFAULT_TIMEOUT = 120.0
MAX_URL = 500
MAX_REF = 255
TOKEN_USER = "x-access-token"
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-f]{7,64}")
_REF = re.compile(r"[A-Za-z0-9._/+@-]+")
_TOKEN = re.compile(r"[\x21-\x7e]{1,4096}")  # printable ASCII, no spaces: a header value
# what a hub behind a proxy, or with its own CAs, needs to reach a host
_PASSED_THROUGH = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy",
                   "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH")  # fmt: skip
# Runs git under a file size limit (RLIMIT_FSIZE is inherited by its children: index-pack,
# the checkout). A launcher, not preexec_fn: the hub has threads, and a fork that runs Python
# code before exec can deadlock there.
_LIMITED = (
    "import os, resource, sys; n = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); os.execv(sys.argv[2], sys.argv[2:])"
)


class GitError(Exception):
    """A git deploy that did nothing. ``str()`` is the sentence (never holding a token);
    ``http_status`` the REST answer."""

    def __init__(self, message: str, http_status: int = 400):
        super().__init__(message)
        self.message = message
        self.http_status = http_status


# ---- checks (pure) ---------------------------------------------------------------------------
def is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def check_repo_url(url: object, allowed_hosts: tuple[str, ...] | list[str] | None = None) -> str:
    """The repository URL if it may be fetched; ``GitError`` (400, or 403 for a host the
    policy does not allow) otherwise. ``allowed_hosts`` None: no host check."""
    if not isinstance(url, str) or not url.strip():
        raise GitError('Give the repository\'s URL, e.g. "https://github.com/example/sales.git".')
    if len(url) > MAX_URL:
        raise GitError(f"The repository URL is too long: at most {MAX_URL} characters.")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise GitError("The repository URL must not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        hostname, _port = parts.hostname, parts.port
    except ValueError:
        raise GitError("The repository URL is not a valid URL.") from None
    scheme = parts.scheme.lower()
    if scheme == "http" and hostname and is_loopback(hostname):
        pass
    elif scheme != "https" or not hostname:
        raise GitError(
            "The repository URL must be an https:// URL, e.g. "
            '"https://github.com/example/sales.git" (ssh, git:// and file URLs are not used).'
        )
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise GitError(
            "The repository URL must not hold a user name or token: never put a token in a "
            "URL. Set it as one of the app's secrets and name it in token_secret."
        )
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise GitError("The repository URL must be plain: no ?query or #fragment.")
    if parts.path.strip("/") in ("", "."):
        raise GitError("The repository URL names no repository, e.g. https://host/team/app.git.")
    host = parts.netloc.lower()
    if allowed_hosts is not None and host not in allowed_hosts:
        allowed = ", ".join(allowed_hosts) or "none"
        raise GitError(
            f"Apps may not be deployed from {host}: the group policy allows git hosts "
            f"{allowed}. Ask an admin to add it to sources.git_hosts.",
            403,
        )
    return url


def repo_host(url: str) -> str:
    return urlsplit(url).netloc.lower()


def same_repo(a: str | None, b: str | None) -> bool:
    """One repository, whatever the case of the host, a trailing ``/`` or ``.git``."""

    def key(url: str) -> tuple[str, str, str]:
        p = urlsplit(url)
        path = p.path.rstrip("/")
        return p.scheme.lower(), p.netloc.lower(), path.removesuffix(".git").rstrip("/")

    return bool(a and b) and key(a) == key(b)


def is_commit(ref: str) -> bool:
    return bool(_COMMIT.fullmatch(ref))


def check_ref(ref: object) -> str:
    """A branch, tag, ``refs/...`` name, ``HEAD`` or full commit; ``GitError`` (400) else.

    Stricter than ``git check-ref-format``: letters, digits and ``. _ / + @ -`` only."""
    if ref is None or ref == "":
        return "HEAD"
    if not isinstance(ref, str) or len(ref) > MAX_REF:
        raise GitError(f"ref is a branch, tag or commit of at most {MAX_REF} characters.")
    if (
        not _REF.fullmatch(ref)
        or ref.startswith(("-", "/", "."))
        or ref.endswith(("/", ".", ".lock"))
        or ".." in ref
        or "//" in ref
        or "@{" in ref
        or "/." in ref
    ):
        raise GitError(
            f"{ref[:80]!r} is not a branch, tag or commit name git accepts "
            "(letters, digits and . _ / + @ -; no '..', no leading '-')."
        )
    return ref


def check_token(token: object, secret: str) -> str:
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise GitError(
            f"The app's secret {secret} does not look like a token (it must be printable "
            "text without spaces): set it again."
        )
    return token


def auth_header(token: str) -> str:
    """``Authorization: Basic`` with ``x-access-token:<token>``, or the token's own
    ``user:token``."""
    pair = token if ":" in token else f"{TOKEN_USER}:{token}"
    return "Authorization: Basic " + base64.b64encode(pair.encode()).decode()


def secret_forms(token: str | None) -> list[str]:
    """Every way the token could show up in what git prints."""
    if not token:
        return []
    forms = {token, auth_header(token).split(" ", 2)[2]}
    if ":" in token:
        forms.add(token.split(":", 1)[1])
    return sorted((f for f in forms if f), key=len, reverse=True)


def scrub(text: str, token: str | None) -> str:
    for form in secret_forms(token):
        text = text.replace(form, "***")
    return text


def git_config(scheme: str, token: str | None = None) -> list[tuple[str, str]]:
    """The only configuration git sees (besides the fetch's own repository)."""
    config = [
        ("protocol.allow", "never"), (f"protocol.{scheme}.allow", "always"),
        ("protocol.version", "2"), ("http.followRedirects", "false"), ("http.sslVerify", "true"),
        ("http.lowSpeedLimit", "1000"), ("http.lowSpeedTime", "30"), ("credential.helper", ""),
        ("core.hooksPath", "/dev/null"), ("core.fsmonitor", "false"), ("core.symlinks", "false"),
        ("submodule.recurse", "false"), ("fetch.recurseSubmodules", "false"),
        ("fetch.unpackLimit", "1"), ("transfer.unpackLimit", "1"), ("gc.auto", "0"),
        ("maintenance.auto", "false"), ("init.defaultBranch", "main"),
        ("advice.detachedHead", "false"),
    ]  # fmt: skip
    if token:
        config.append(("http.extraHeader", auth_header(token)))
    return config


def git_env(
    url: str, home: str | os.PathLike, token: str | None = None, base: dict | None = None
) -> dict[str, str]:
    """git's whole environment for ``url`` (``base``: the hub's, for the proxy and CA
    variables only; loopback URLs get no proxy)."""
    base = os.environ if base is None else base
    scheme = urlsplit(url).scheme.lower()
    if scheme != "https" and not (scheme == "http" and is_loopback(urlsplit(url).hostname or "")):
        raise GitError("git fetches over https only (http on the hub's own machine).")
    env = {
        "PATH": base.get("PATH") or os.defpath,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
        "LC_ALL": "C",
        "LANG": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_SYSTEM": "/dev/null",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": scheme,
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_LFS_SKIP_SMUDGE": "1",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_OPTIONAL_LOCKS": "0",
    }
    if not is_loopback(urlsplit(url).hostname or ""):
        env.update({k: base[k] for k in _PASSED_THROUGH if base.get(k)})
    config = git_config(scheme, token)
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for i, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


# ---- running git ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Resolved:
    commit: str
    ref: str  # as asked (HEAD when none was)
    name: str  # what it matched: refs/heads/main, refs/tags/v1, HEAD, or the commit itself


@dataclass(frozen=True)
class Fetched:
    folder: Path  # the commit's files (no .git)
    commit: str
    files: int
    size: int


class _Deadline:
    def __init__(self, seconds: float, what: str):
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.what = what

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise GitError(self.what, 504)
        return left


class GitClient:
    """Resolves refs and fetches commits with ``git`` (the one on PATH unless ``git``)."""

    def __init__(
        self,
        git: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_output: int = 16 * 1024 * 1024,
    ):
        self.git = git
        self.timeout = timeout
        self.max_output = max_output

    def _git(self) -> str:
        found = shutil.which(self.git or "git")
        if not found:
            raise GitError(
                "git is not installed on the hub, so apps cannot be deployed from git: ask "
                "an admin.",
                503,
            )
        return found

    async def _run(
        self,
        args: list[str],
        env: dict[str, str],
        deadline: _Deadline,
        token: str | None,
        *,
        file_limit: int | None = None,
        cwd: str | os.PathLike | None = None,
    ) -> tuple[int, bytes, str]:
        """Run git; (exit status, stdout, stderr scrubbed of the token)."""
        git = self._git()
        argv = [git, *args]
        if file_limit is not None:
            argv = [sys.executable, "-I", "-S", "-c", _LIMITED, str(file_limit), *argv]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(self._collect(proc), deadline.left())
        except TimeoutError:
            raise GitError(deadline.what, 504) from None
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await asyncio.shield(proc.wait())
        return proc.returncode, out, scrub(err.decode("utf-8", "replace"), token)

    async def _collect(self, proc) -> tuple[bytes, bytes]:
        async def read(stream, cap: int, keep_tail: bool) -> bytes:
            data = bytearray()
            while chunk := await stream.read(65536):
                data += chunk
                if len(data) > cap:
                    if not keep_tail:
                        raise GitError("git's answer was larger than the hub reads.", 502)
                    del data[: len(data) - cap]
            return bytes(data)

        out, err = await asyncio.gather(
            read(proc.stdout, self.max_output, False), read(proc.stderr, 64 * 1024, True)
        )
        await proc.wait()
        return out, err

    # -- resolve ---------------------------------------------------------------------------
    async def resolve(self, url: str, ref: str = "HEAD", token: str | None = None) -> Resolved:
        """The commit ``ref`` names in the repository at ``url`` (``git ls-remote``)."""
        check_repo_url(url)
        ref = check_ref(ref)
        if is_commit(ref):
            return Resolved(ref, ref, ref)
        host = repo_host(url)
        deadline = _Deadline(self.timeout, f"{host} did not answer in {self.timeout:.0f} s.")
        if ref == "HEAD" or ref.startswith("refs/"):
            names = [ref]
        else:
            names = [f"refs/tags/{ref}", f"refs/heads/{ref}"]  # git's order: tags first
        patterns = [p for n in names for p in (n, n + "^{}")]
        with tempfile.TemporaryDirectory(prefix="git-home-") as home:
            env = git_env(url, home, token)
            code, out, err = await self._run(
                ["ls-remote", "--", url, *patterns], env, deadline, token, cwd=home
            )
        if code != 0:
            raise failure(err, url, token)
        found: dict[str, str] = {}
        for line in out.decode("utf-8", "replace").splitlines():
            sha, _, name = line.partition("\t")
            if _COMMIT.fullmatch(sha):
                found[name] = sha
        for name in names:
            if name in found:
                return Resolved(found.get(name + "^{}", found[name]), ref, name)
        hint = ""
        if _HEX.fullmatch(ref):
            hint = " For a commit, give all 40 hex digits."
        raise GitError(f"{url} has no branch or tag {ref}.{hint}", 422)

    # -- fetch -----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def checkout(
        self,
        url: str,
        commit: str,
        parent: str | os.PathLike,
        *,
        token: str | None = None,
        max_fetch_bytes: int = 128 * 2**20,
        max_bytes: int = 256 * 2**20,
        max_files: int = 5000,
    ) -> AsyncIterator[Fetched]:
        """Fetch exactly ``commit`` (depth 1) into a new private folder under ``parent``;
        yields its files, and removes everything when the block ends."""
        check_repo_url(url)
        if not is_commit(commit):
            raise GitError("A fetch needs a full commit (40 or 64 hex digits).")
        work = Path(tempfile.mkdtemp(prefix="git-", dir=parent))  # 700
        try:
            yield await self._fetch(url, commit, work, token, max_fetch_bytes, max_bytes, max_files)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    async def _fetch(
        self,
        url: str,
        commit: str,
        work: Path,
        token: str | None,
        max_fetch_bytes: int,
        max_bytes: int,
        max_files: int,
    ) -> Fetched:
        host = repo_host(url)
        deadline = _Deadline(
            self.timeout, f"Fetching {commit[:12]} from {host} took more than {self.timeout:.0f} s."
        )
        home, gitdir, files = work / "home", work / "git", work / "files"
        home.mkdir(mode=0o700)
        files.mkdir(mode=0o700)
        env = git_env(url, home, token)
        local = git_env(url, home)  # no token for what never leaves the machine
        object_format = "sha256" if len(commit) == 64 else "sha1"
        await self._ok(
            ["init", "-q", "--bare", f"--object-format={object_format}", str(gitdir)],
            local,
            deadline,
            None,
            work,
        )
        fetch = ["--git-dir", str(gitdir), "fetch", "--quiet", "--no-tags", "--depth=1"]
        fetch += ["--no-write-fetch-head", "--no-recurse-submodules", "--", url, commit]
        code, _, err = await self._run(
            fetch, env, deadline, token, file_limit=max_fetch_bytes, cwd=work
        )
        if code != 0:
            if _largest_file(gitdir) >= max_fetch_bytes or code < 0:
                raise GitError(
                    f"{url} at {commit[:12]} is larger than {_size(max_fetch_bytes)} to fetch, "
                    "the most your groups allow: keep large data out of the repository, or "
                    "ask an admin.",
                    413,
                )
            raise failure(err, url, token, commit=commit)
        code, out, err = await self._run(
            ["--git-dir", str(gitdir), "ls-tree", "-r", "-l", "-z", "--full-tree", commit],
            local,
            deadline,
            None,
            cwd=work,
        )
        if code != 0:
            raise GitError(f"{commit[:12]} in {url} is not a commit.", 422)
        count, size = check_tree(out, max_bytes, max_files)
        await self._ok(
            ["--git-dir", str(gitdir), "--work-tree", str(files), "read-tree", "-u", "--reset",
             commit],
            {**local, "GIT_INDEX_FILE": str(work / "index")},
            deadline,
            max_bytes,
            work,
        )  # fmt: skip
        return Fetched(files, commit, count, size)

    async def _ok(self, args, env, deadline, file_limit, cwd) -> None:
        code, _, err = await self._run(args, env, deadline, None, file_limit=file_limit, cwd=cwd)
        if code != 0:
            last = (err.strip().splitlines() or ["(nothing)"])[-1][:300]
            raise GitError(f"git failed on the hub: {last}", 502)


def check_tree(listing: bytes, max_bytes: int, max_files: int) -> tuple[int, int]:
    """(files, bytes) of a commit's ``ls-tree -r -l -z`` listing; ``GitError`` when it holds
    a symbolic link or is over a limit (before anything is written)."""
    count = size = 0
    for entry in listing.split(b"\0"):
        if not entry:
            continue
        meta, _, raw_path = entry.partition(b"\t")
        fields = meta.split()
        if len(fields) < 4:
            continue
        mode, kind, length = fields[0], fields[1], fields[3]
        path = raw_path.decode("utf-8", "replace")
        if kind == b"commit":
            continue  # a submodule: not fetched
        if mode == b"120000":
            raise GitError(
                f"{path} is a symbolic link in the repository: a bundle holds regular files "
                "only (commit the file itself, or leave it out)."
            )
        count += 1
        size += int(length) if length.isdigit() else 0
        if count > max_files:
            raise GitError(
                f"The commit has more than {max_files} files, the most a bundle may hold.", 413
            )
    if size > max_bytes:
        raise GitError(
            f"The commit's files take {_size(size)}, more than the {_size(max_bytes)} your "
            "groups allow: keep large data out of the repository, or ask an admin.",
            413,
        )
    return count, size


def _largest_file(folder: Path) -> int:
    largest = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):
                largest = max(largest, os.lstat(os.path.join(root, name)).st_size)
    return largest


def failure(err: str, url: str, token: str | None, commit: str | None = None) -> GitError:
    """A sentence for what git said when it failed (``err`` already scrubbed)."""
    host = repo_host(url)
    low = err.lower()
    status = re.search(r"returned error: (\d{3})", low)
    code = int(status.group(1)) if status else None
    if code == 401 or "could not read username" in low or "authentication failed" in low:
        if token:
            return GitError(
                f"{host} refused the token from the app's secret: check that it is valid and "
                f"may read {url}.",
                422,
            )
        return GitError(
            f"{host} asks who you are for {url}: if the repository is private, set a token "
            "that may read it as one of the app's secrets and name it in token_secret.",
            422,
        )
    if code in (403, 404) or ("repository" in low and "not found" in low):
        return GitError(
            f"There is no repository at {url}, or it is private and "
            + ("the token may not read it." if token else "no token was given (token_secret)."),
            422,
        )
    if "not our ref" in low or "couldn't find remote ref" in low or "unadvertised" in low:
        return GitError(
            f"{url} has no commit {commit}." if commit else f"{url} has no such commit.", 422
        )
    if code is not None and 300 <= code < 400:
        return GitError(
            f"{host} redirected the request elsewhere, which the hub does not follow: give the "
            "repository's own URL.",
            502,
        )
    if code is not None:
        return GitError(f"{host} answered {code} for {url}: try again later.", 502)
    if "could not resolve host" in low or "connect" in low:
        return GitError(f"The hub cannot reach {host}: is the URL right? Ask an admin.", 502)
    if "ssl" in low or "certificate" in low or "tls" in low:
        return GitError(f"The hub cannot make a trusted https connection to {host}.", 502)
    if "too slow" in low or "timed out" in low:
        return GitError(f"{host} answered too slowly: try again later.", 504)
    last = (err.strip().splitlines() or ["(nothing)"])[-1][:300]
    return GitError(f"git could not read {url}: {last}", 502)


__all__ = ["Fetched", "GitClient", "GitError", "Resolved", "auth_header", "check_ref",
           "check_repo_url", "check_token", "check_tree", "git_env", "is_commit", "same_repo",
           "scrub"]  # fmt: skip
