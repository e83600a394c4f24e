"""A real PostgreSQL server from the Debian packages, on 127.0.0.1, for the audit store tests.

``.ci/run`` installs ``postgresql`` (apt). The server runs from a temporary data directory
with trust authentication on loopback only, as the ``postgres`` system user when the tests
run as root (PostgreSQL refuses to run as root), and is stopped when the session ends.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres_server(port: int):
    bindir = postgres_bin()
    if bindir is None:
        message = (
            "PostgreSQL is not installed: `apt-get install postgresql` (.ci/run does it) "
            "to test the audit store on PostgreSQL"
        )
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: never let these tests vanish silently
        pytest.skip(message)
    # Not under pytest's tmp_path: that is private to root, and the server runs as postgres.
    workdir = Path(tempfile.mkdtemp(prefix="streamlit-hub-pg-"))
    try:
        with _server(bindir, workdir, port) as url:
            yield url
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def _server(bindir: Path, workdir: Path, port: int):
    data = workdir / "pgdata"
    data.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        shutil.chown(data, "postgres")
    subprocess.run(
        _as_postgres(
            [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    log = open(workdir / "postgres.log", "wb")
    proc = subprocess.Popen(
        _as_postgres(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-c",
                "listen_addresses=127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(workdir),
                "-c",
                "fsync=off",
            ]
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    import psycopg

    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    deadline = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError((workdir / "postgres.log").read_text()[-2000:]) from None
            time.sleep(0.2)
    try:
        yield url
    finally:
        proc.terminate()  # SIGTERM: PostgreSQL's "smart" shutdown
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def fresh_database(server_url: str) -> str:
    """A new empty database on the server; returns its SQLAlchemy URL."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return (
        server_url.replace("postgresql://", "postgresql+psycopg://", 1).rsplit("/", 1)[0]
        + "/"
        + name
    )
