"""Deploys from git (#14 point 3), ``spawner/git_source.py``: the URL and ref checks, git's
clean environment, and resolve and fetch against real repositories served over smart HTTP on
127.0.0.1 (``tests/helpers/git_server.py``; never the internet).

The security tests each fail without their protection: credentials in a URL, a token in
git's arguments or in a sentence, inherited git configuration, other protocols, redirects,
size bounds, symbolic links, the deadline.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from spawner.git_source import (
    GitClient,
    GitError,
    auth_header,
    check_ref,
    check_repo_url,
    check_tree,
    git_env,
    same_repo,
    scrub,
)
from tests.helpers.git_server import GitServer

TOKEN = "ghp_" + "Zq9" * 12
HOSTS = ("github.com", "gitlab.example.com:8443")


def run(coro):
    return asyncio.run(coro)


# ---- URLs ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/example/sales.git",
        "https://GitHub.com/example/sales",
        "https://gitlab.example.com:8443/team/sub/app.git",
    ],
)
def test_plain_https_urls_on_allowed_hosts_pass(url):
    assert check_repo_url(url, HOSTS) == url


@pytest.mark.parametrize(
    "url",
    [
        f"https://x-access-token:{TOKEN}@github.com/example/sales.git",
        f"https://{TOKEN}@github.com/example/sales.git",
        f"https://user:{TOKEN}@github.com:443/a/b",
        "https://@github.com/a/b",
    ],
)
def test_credentials_in_a_url_are_refused_without_echoing_them(url):
    with pytest.raises(GitError) as e:
        check_repo_url(url, HOSTS)
    assert e.value.http_status == 400
    assert "never put a token in a URL" in e.value.message
    assert TOKEN not in e.value.message and "token_secret" in e.value.message


@pytest.mark.parametrize(
    "url",
    [
        "ssh://git@github.com/a/b.git",
        "git://github.com/a/b.git",
        "file:///srv/repos/a.git",
        "ext::sh -c touch% /tmp/pwned",
        "--upload-pack=touch /tmp/pwned",
        "-uhttps://github.com/a/b",
        "http://github.com/a/b.git",  # http only on loopback
        "https:///a/b.git",
        "https://github.com",
        "https://github.com/",
        "https://github.com/a/b.git?x=1",
        "https://github.com/a/b.git#main",
        "https://github.com/a/b c.git",
        "https://github.com/a/b\n.git",
        "https://github.com:99999/a/b",
        "",
        None,
        "https://github.com/" + "a" * 500,
    ],
)
def test_other_urls_are_refused_with_a_sentence(url):
    with pytest.raises(GitError) as e:
        check_repo_url(url, HOSTS)
    assert e.value.http_status == 400 and e.value.message.endswith(".")


def test_a_host_the_policy_does_not_allow_is_a_403_naming_the_allowed_hosts():
    with pytest.raises(GitError) as e:
        check_repo_url("https://evil.example.com/a/b.git", HOSTS)
    assert e.value.http_status == 403
    assert "github.com, gitlab.example.com:8443" in e.value.message
    assert "sources.git_hosts" in e.value.message
    with pytest.raises(GitError) as e:  # the port is part of the host
        check_repo_url("https://gitlab.example.com/a/b.git", HOSTS)
    assert e.value.http_status == 403
    with pytest.raises(GitError) as e:
        check_repo_url("https://github.com/a/b.git", ())
    assert "allows git hosts none" in e.value.message


def test_http_is_accepted_on_loopback_only():
    assert check_repo_url("http://127.0.0.1:9418/a.git", ("127.0.0.1:9418",))
    assert check_repo_url("http://localhost:80/a.git")
    with pytest.raises(GitError):
        check_repo_url("http://10.0.0.1/a.git")


@pytest.mark.parametrize("ref", ["main", "v1.2.0", "release/2024-01", "refs/heads/main", "HEAD"])
def test_refs_git_accepts_pass(ref):
    assert check_ref(ref) == ref


def test_no_ref_is_the_default_branch():
    assert check_ref(None) == check_ref("") == "HEAD"


@pytest.mark.parametrize(
    "ref",
    ["-x", "--upload-pack=sh", "a..b", "a b", "main@{1}", "x.lock", "refs/heads/", ".hidden",
     "a//b", "a/.b", "main~1", "main^", "a:b", "a*", "\u00e9t\u00e9", "x" * 256, 7],
)  # fmt: skip
def test_refs_that_are_not_names_are_refused(ref):
    with pytest.raises(GitError) as e:
        check_ref(ref)
    assert e.value.http_status == 400


def test_one_repository_whatever_its_spelling():
    assert same_repo("https://GitHub.com/a/b.git", "https://github.com/a/b/")
    assert not same_repo("https://github.com/a/b.git", "https://github.com/a/c.git")
    assert not same_repo(None, "https://github.com/a/b.git")


# ---- git's environment -----------------------------------------------------------------------
def test_git_gets_a_clean_environment_with_the_token_only_in_a_header(tmp_path):
    hub_env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/root",
        "GIT_DIR": "/elsewhere",
        "GIT_SSH_COMMAND": "touch /tmp/pwned",
        "GIT_CONFIG_PARAMETERS": "'core.hooksPath'='/tmp/hooks'",
        "GIT_TRACE_CURL": "1",
        "GIT_ASKPASS": "/tmp/askpass",
        "JUPYTERHUB_API_TOKEN": "hub-token",
        "https_proxy": "http://proxy.example.com:3128",
        "SSL_CERT_FILE": "/etc/ssl/corp.pem",
    }
    env = git_env("https://github.com/a/b.git", tmp_path, TOKEN, base=hub_env)
    for name in ("GIT_DIR", "GIT_SSH_COMMAND", "GIT_CONFIG_PARAMETERS", "GIT_TRACE_CURL",
                 "GIT_ASKPASS", "JUPYTERHUB_API_TOKEN"):  # fmt: skip
        assert name not in env
    assert env["HOME"] == str(tmp_path) and env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert env["GIT_CONFIG_GLOBAL"] == "/dev/null" and env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_ALLOW_PROTOCOL"] == "https" and env["GIT_LFS_SKIP_SMUDGE"] == "1"
    assert env["https_proxy"] == "http://proxy.example.com:3128"
    assert env["SSL_CERT_FILE"] == "/etc/ssl/corp.pem"
    config = {
        env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"]
        for i in range(int(env["GIT_CONFIG_COUNT"]))
    }
    assert config["http.followRedirects"] == "false"
    assert config["protocol.allow"] == "never" and config["protocol.https.allow"] == "always"
    assert config["core.hooksPath"] == "/dev/null" and config["submodule.recurse"] == "false"
    assert config["http.extraHeader"] == auth_header(TOKEN)
    assert base64.b64decode(auth_header(TOKEN).split()[-1]).decode() == f"x-access-token:{TOKEN}"
    holding = [k for k, v in env.items() if "Zq9Zq9" in v or TOKEN in v]
    assert holding == []  # only its base64 form, in the header
    assert [k for k, v in env.items() if v == auth_header(TOKEN)] == [
        f"GIT_CONFIG_VALUE_{list(config).index('http.extraHeader')}"
    ]


def test_loopback_gets_no_proxy_and_other_protocols_no_environment(tmp_path):
    base = {"PATH": "/usr/bin", "https_proxy": "http://proxy:3128"}
    env = git_env("http://127.0.0.1:8080/a.git", tmp_path, base=base)
    assert env["GIT_ALLOW_PROTOCOL"] == "http" and "https_proxy" not in env
    assert "http.extraHeader" not in env.values()
    for url in ("file:///srv/a.git", "ext::sh -c x", "http://10.0.0.1/a.git", "ssh://h/a"):
        with pytest.raises(GitError):
            git_env(url, tmp_path, base=base)


def test_a_user_and_token_secret_is_sent_as_is():
    assert base64.b64decode(auth_header("deploy:s3cret").split()[-1]) == b"deploy:s3cret"


def test_scrub_removes_the_token_in_every_form():
    header = auth_header(TOKEN)
    text = f"fatal: {TOKEN} / {header} / {base64.b64encode(TOKEN.encode()).decode()}"
    cleaned = scrub(text, TOKEN)
    assert TOKEN not in cleaned and header.split()[-1] not in cleaned
    assert scrub("nothing", None) == "nothing"
    assert "s3cret" not in scrub("x deploy:s3cret s3cret", "deploy:s3cret")


def test_check_tree_refuses_links_and_sizes_before_anything_is_written():
    def entry(mode, kind, size, path):
        return f"{mode} {kind} {'a' * 40} {size:>7}\t{path}".encode()

    listing = b"\0".join(
        [entry("100644", "blob", 10, "app.py"), entry("160000", "commit", "-", "vendored")]
    )
    assert check_tree(listing + b"\0", 100, 5) == (1, 10)
    with pytest.raises(GitError) as e:
        check_tree(entry("120000", "blob", 11, "data/link"), 100, 5)
    assert e.value.http_status == 400 and "data/link is a symbolic link" in e.value.message
    with pytest.raises(GitError) as e:
        check_tree(entry("100644", "blob", 101, "big.bin"), 100, 5)
    assert e.value.http_status == 413
    with pytest.raises(GitError) as e:
        check_tree(b"\0".join(entry("100644", "blob", 1, f"f{i}") for i in range(6)), 100, 5)
    assert e.value.http_status == 413 and "more than 5 files" in e.value.message


# ---- real git, real smart HTTP ---------------------------------------------------------------
@pytest.fixture
def server(tmp_path):
    with GitServer(tmp_path / "public") as s:
        yield s


@pytest.fixture
def private(tmp_path):
    with GitServer(tmp_path / "private", token=TOKEN) as s:
        yield s


def test_branches_tags_and_head_resolve_to_commits(server):
    first = server.commit("sales", {"app.py": "one"})
    server.tag("sales", "v1")  # annotated: resolved to the commit it points at
    server.tag("sales", "light", annotated=False)
    second = server.commit("sales", {"app.py": "two"})
    other = server.commit("sales", {"app.py": "three"}, branch="feature/x")
    client = GitClient(timeout=30)
    url = server.url("sales")
    assert run(client.resolve(url, "main")).commit == second
    assert run(client.resolve(url, "main")).name == "refs/heads/main"
    assert run(client.resolve(url, "HEAD")).commit == second
    assert run(client.resolve(url, "v1")).commit == first
    assert run(client.resolve(url, "light")).commit == first
    assert run(client.resolve(url, "feature/x")).commit == other
    assert run(client.resolve(url, "refs/heads/feature/x")).commit == other
    assert run(client.resolve(url, first)).commit == first  # a full commit is itself
    with pytest.raises(GitError) as e:
        run(client.resolve(url, "nope"))
    assert e.value.http_status == 422 and e.value.message == f"{url} has no branch or tag nope."
    with pytest.raises(GitError) as e:
        run(client.resolve(url, first[:10]))
    assert "give all 40 hex digits" in e.value.message
    with pytest.raises(GitError) as e:
        run(client.resolve(server.url("missing"), "main"))
    assert e.value.http_status == 422 and "There is no repository" in e.value.message


def test_checkout_fetches_exactly_that_commit_shallowly_and_cleans_up(server, tmp_path):
    first = server.commit("sales", {"app.py": "one", "pages/1_Data.py": "d", "run.sh": "x"})
    os.chmod(server.work / "sales" / "run.sh", 0o755)
    server.commit("sales", {"app.py": "two", "new.py": "n"})
    parent = tmp_path / "staging"
    parent.mkdir()

    async def fetch():
        async with GitClient(timeout=30).checkout(server.url("sales"), first, parent) as got:
            folder = got.folder
            files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
            assert files == ["app.py", "pages/1_Data.py", "run.sh"]
            assert (folder / "app.py").read_text() == "one" and got.files == 3
            assert got.commit == first
            assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700
            shallow = folder.parent / "git" / "shallow"
            assert shallow.read_text().split() == [first]  # depth 1: no history
        return folder

    folder = run(fetch())
    assert not folder.exists() and list(parent.iterdir()) == []
    with pytest.raises(GitError) as e:
        run(fetch_into(server.url("sales"), "1" * 40, parent))
    assert e.value.http_status == 422 and "has no commit 1111111111" in e.value.message
    assert list(parent.iterdir()) == []


async def fetch_into(url, commit, parent, client=None, **kwargs):
    async with (client or GitClient(timeout=30)).checkout(url, commit, parent, **kwargs) as got:
        return sorted(p.name for p in got.folder.iterdir())


def fake_git(folder: Path, script: str) -> str:
    """A ``git`` that runs ``script`` (sh) first; ``$REAL`` is the real git."""
    path = folder / "git"
    path.write_text(f"#!/bin/sh\nREAL={shutil.which('git')}\n{script}\n")
    path.chmod(0o755)
    return str(path)


def test_a_private_repository_gets_the_token_only_in_a_header(private, tmp_path):
    sha = private.commit("secret-app", {"app.py": "private"})
    url = private.url("secret-app")
    argv_log = tmp_path / "argv.log"
    spy = fake_git(tmp_path, f'printf "%s\\n" "$0" "$@" >> {argv_log}\nexec "$REAL" "$@"')
    client = GitClient(git=spy, timeout=30)
    with pytest.raises(GitError) as e:
        run(client.resolve(url, "main"))
    assert e.value.http_status == 422 and "token_secret" in e.value.message
    with pytest.raises(GitError) as e:
        run(client.resolve(url, "main", token="wrong-token"))
    assert "refused the token" in e.value.message and "wrong-token" not in e.value.message
    assert run(client.resolve(url, "main", token=TOKEN)).commit == sha
    assert run(fetch_into(url, sha, tmp_path, client, token=TOKEN)) == ["app.py"]
    # git saw the token in no argument, and the server in no URL: only in the header
    assert TOKEN not in argv_log.read_text() and argv_log.read_text().count("ls-remote") == 3
    assert all(TOKEN not in r["path"] + r["query"] for r in private.seen)
    sent = {r["headers"].get("Authorization") for r in private.seen} - {None}
    assert auth_header(TOKEN).split(" ", 1)[1] in sent


def test_what_git_says_is_scrubbed_of_the_token(tmp_path):
    loud = fake_git(
        tmp_path,
        'for i in $(seq 0 40); do eval "v=\\$GIT_CONFIG_VALUE_$i"; '
        '[ -n "$v" ] && echo "fatal: $v" >&2; done; exit 128',
    )
    with pytest.raises(GitError) as e:
        run(GitClient(git=loud).resolve("https://github.com/a/b.git", "main", token=TOKEN))
    assert "fatal: Authorization: Basic ***" in e.value.message, e.value.message
    assert auth_header(TOKEN).split()[-1] not in e.value.message


def test_the_hubs_own_git_configuration_and_variables_are_not_used(server, tmp_path, monkeypatch):
    sha = server.commit(
        "sales", {"app.py": "one", ".gitattributes": "* filter=evil\n"}, message="attrs"
    )
    marker = tmp_path / "filter-ran"
    evil = tmp_path / "evil.gitconfig"
    evil.write_text(
        f'[url "http://127.0.0.1:1/"]\n\tinsteadOf = {server.base}/\n'
        f'[filter "evil"]\n\tsmudge = touch {marker}; cat\n\trequired = true\n'
        f"[http]\n\tproxy = http://127.0.0.1:1\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(evil, home / ".gitconfig")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(evil))
    monkeypatch.setenv("GIT_CONFIG_SYSTEM", str(evil))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "http.proxy")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "http://127.0.0.1:1")
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")
    client = GitClient(timeout=30)
    assert run(client.resolve(server.url("sales"), "main")).commit == sha
    assert run(fetch_into(server.url("sales"), sha, tmp_path, client)) == [
        ".gitattributes",
        "app.py",
    ]
    assert not marker.exists()


def test_other_protocols_are_refused_even_past_the_url_check(tmp_path):
    from tests.helpers.git_server import git

    git("init", "-q", "--bare", str(tmp_path / "local.git"))
    for url in (f"file://{tmp_path}/local.git", "ext::sh -c id"):
        with pytest.raises(GitError):
            run(GitClient().resolve(url, "main"))
    # git's own environment allows the URL's protocol only (git allows git:// and ssh://
    # by default): a URL that slipped past the checks goes nowhere
    env = git_env("https://github.com/a/b.git", tmp_path)
    for url in ("git://127.0.0.1:1/a.git", f"file://{tmp_path}/local.git"):
        out = subprocess.run(["git", "ls-remote", url], env=env, capture_output=True, text=True)
        assert out.returncode != 0 and "not allowed" in out.stderr, out.stderr


def test_redirects_are_not_followed(server, tmp_path):
    server.commit("sales", {"app.py": "one"})
    with GitServer(tmp_path / "redirector", redirect=server.base) as redirector:
        with pytest.raises(GitError) as e:
            run(GitClient(timeout=30).resolve(redirector.url("sales"), "main", token=TOKEN))
    assert e.value.http_status == 502 and "redirected" in e.value.message
    assert server.seen == []  # the token never went on to another server


def test_a_repository_over_the_size_bounds_is_refused_with_413(server, tmp_path):
    sha = server.commit("big", {"app.py": "x", "data.bin": os.urandom(300_000)})
    client = GitClient(timeout=30)
    with pytest.raises(GitError) as e:  # the fetch itself is cut off (RLIMIT_FSIZE)
        run(fetch_into(server.url("big"), sha, tmp_path, client, max_fetch_bytes=100_000))
    assert e.value.http_status == 413 and "larger than 97.7 KB to fetch" in e.value.message
    with pytest.raises(GitError) as e:  # the files, listed before any is written
        run(fetch_into(server.url("big"), sha, tmp_path, client, max_bytes=200_000))
    assert e.value.http_status == 413 and "more than the 195.3 KB" in e.value.message
    with pytest.raises(GitError) as e:
        run(fetch_into(server.url("big"), sha, tmp_path, client, max_files=1))
    assert e.value.http_status == 413
    assert [p for p in tmp_path.iterdir() if p.name.startswith("git-")] == []


def test_a_symbolic_link_in_the_commit_is_refused_before_checkout(server, tmp_path):
    sha = server.commit("links", {"app.py": "x"}, symlinks={"passwd": "/etc/passwd"})
    with pytest.raises(GitError) as e:
        run(fetch_into(server.url("links"), sha, tmp_path))
    assert e.value.http_status == 400 and "passwd is a symbolic link" in e.value.message


def test_a_host_that_does_not_answer_meets_the_deadline(tmp_path):
    with GitServer(tmp_path / "slow", hang=20) as slow:
        started = time.monotonic()
        with pytest.raises(GitError) as e:
            run(GitClient(timeout=1.5).resolve(slow.url("sales"), "main"))
        took = time.monotonic() - started
    assert e.value.http_status == 504 and "did not answer in 2 s" in e.value.message
    assert took < 8


def test_no_git_on_the_hub_is_a_sentence(tmp_path):
    with pytest.raises(GitError) as e:
        run(GitClient(git=str(tmp_path / "no-git")).resolve("https://github.com/a/b", "main"))
    assert e.value.http_status == 503 and "git is not installed" in e.value.message
