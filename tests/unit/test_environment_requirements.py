"""Per-app environments (spawner/environments.py, #14) without uv: what an analyst's
requirements.txt may say, the environment's key, lookup, eviction, and the steps of a build
that only read uv's answers (the plan, the platform pin named in a conflict, the last check).

Fast and hermetic: no uv, no index, no interpreter started. uv's answers are stood in by
replacing ``EnvironmentStore._uv`` / ``_run``; environments are folders written by hand. The
real builds are tests/unit/test_environments.py (seconds each, not in mutmut's selection).
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import stat
import time
from pathlib import Path

import pytest

from spawner import environments as envs_module
from spawner.environments import (
    LAST_USED_NAME,
    MAX_REQUIREMENT_LINES,
    MAX_REQUIREMENTS_BYTES,
    META_NAME,
    BuildFailed,
    EnvironmentBuildError,
    EnvironmentStore,
    Platform,
    PlatformConflict,
    Requirements,
    RequirementsRefused,
    copy_metadata,
    disk_usage,
    human_bytes,
    parse_requirements,
    redact_url,
)

PLATFORM = Platform(
    python="/platform/bin/python",
    base_python="/usr/bin/python3.11",
    python_id="cpython-3.11.2-linux-x86_64",
    version="3.11.2",
    site_packages=("/platform/lib/python3.11/site-packages",),
    pins={"streamlit": "1.40.0", "tornado": "6.4", "numpy": "2.1.0"},
)


def refused(text: str, **kwargs) -> RequirementsRefused:
    with pytest.raises(RequirementsRefused) as caught:
        parse_requirements(text, **kwargs)
    return caught.value


@pytest.fixture
def make_store(tmp_path):
    def make(**kwargs) -> EnvironmentStore:
        kwargs.setdefault("platform", PLATFORM)
        kwargs.setdefault("uv", "/opt/uv/bin/uv")  # never run here
        return EnvironmentStore(tmp_path / "environments", PLATFORM.python, **kwargs)

    return make


@pytest.fixture
def store(make_store) -> EnvironmentStore:
    return make_store()


# ---- the errors -----------------------------------------------------------------------------
def test_errors_carry_their_sentence_log_line_and_packages():
    e = EnvironmentBuildError("It broke.", "the log")
    assert (str(e), e.message, e.log) == ("It broke.", "It broke.", "the log")
    assert EnvironmentBuildError("It broke.").log == ""
    r = RequirementsRefused("Line 3 is bad.", 3)
    assert (str(r), r.message, r.log, r.line) == ("Line 3 is bad.", "Line 3 is bad.", "", 3)
    assert RequirementsRefused("Too large.").line is None
    c = PlatformConflict("Refused.", ["tornado", "numpy"], "uv said no")
    assert (str(c), c.message, c.log, c.packages) == (
        "Refused.",
        "Refused.",
        "uv said no",
        ("tornado", "numpy"),
    )


# ---- Requirements ---------------------------------------------------------------------------
def test_requirements_text_is_one_line_each_and_empty_is_false():
    assert Requirements(("pandas>=2", "requests")).text() == "pandas>=2\nrequests\n"
    assert Requirements(()).text() == ""
    assert not Requirements(())
    assert Requirements(("pandas",))


# ---- parsing: what is accepted --------------------------------------------------------------
def test_names_are_canonical_sorted_and_duplicates_dropped():
    parsed = parse_requirements("Scikit_Learn==1.5\nrequests\nPANDAS\nrequests\npandas\n")
    assert parsed.lines == ("pandas", "requests", "scikit-learn==1.5")


def test_continuations_join_every_line_and_keep_each_character():
    assert parse_requirements("requests\\\n>=2.0\n").lines == ("requests>=2.0",)
    text = "pandas \\\n  >=2.2 \\\n  ,<3\n"
    assert parse_requirements(text).lines == ("pandas<3,>=2.2",)
    text = "requests \\  # the HTTP client\n    >=2.0\n   numpy\n"
    assert parse_requirements(text).lines == ("numpy", "requests>=2.0")


def test_comments_blank_lines_and_continuations():
    text = "# the app's needs\n\npandas  # dataframes\nrequests \\\n    >=2.0\n\nhumanize   \n"
    assert parse_requirements(text).lines == ("humanize", "pandas", "requests>=2.0")


def test_a_hash_inside_a_word_is_not_a_comment():
    # pip's rule: a comment starts at a # at the line's start or after whitespace
    with pytest.raises(RequirementsRefused) as caught:
        parse_requirements("pandas#egg\n")
    assert "Line 1" in str(caught.value) and "pandas#egg" in str(caught.value)


def test_a_continuation_on_the_last_line_still_counts():
    assert parse_requirements("pandas \\").lines == ("pandas",)
    assert parse_requirements("pandas\nrequests>=2 \\\n").lines == ("pandas", "requests>=2")
    assert not parse_requirements("\\\n")


def test_a_refusal_after_a_continuation_names_its_first_line():
    e = refused("pandas\nrequests \\\n  >=2 \\\n  --hash=sha256:ab\n")
    assert e.line == 2 and str(e).startswith("Line 2 of requirements.txt ")


def test_markers_and_extras_are_kept_normalized():
    parsed = parse_requirements("Pandas >= 2.2 ; python_version >= '3.11'\nDask[complete]\n")
    assert parsed.lines == ("dask[complete]", 'pandas>=2.2; python_version >= "3.11"')


def test_nothing_but_comments_is_no_requirements():
    assert parse_requirements("# nothing\n\n   \n").lines == ()
    assert parse_requirements("") == Requirements(())


# ---- parsing: the size limits ---------------------------------------------------------------
def test_a_file_of_exactly_the_size_limit_is_read_one_byte_more_refused():
    line = "pandas\n"
    exact = "#" * (MAX_REQUIREMENTS_BYTES - len(line) - 1) + "\n" + line
    assert len(exact.encode()) == MAX_REQUIREMENTS_BYTES
    assert parse_requirements(exact).lines == ("pandas",)
    e = refused(" " + exact)
    assert str(e) == "requirements.txt is larger than 64 KB."
    assert e.line is None


def test_the_size_limit_counts_bytes_not_characters():
    text = "# " + "é" * (MAX_REQUIREMENTS_BYTES // 2) + "\npandas\n"  # fewer characters
    assert len(text) < MAX_REQUIREMENTS_BYTES < len(text.encode())
    refused(text)


def test_exactly_the_line_limit_is_read_one_more_refused():
    names = [f"pkg{n}" for n in range(MAX_REQUIREMENT_LINES)]
    assert len(parse_requirements("\n".join(names)).lines) == MAX_REQUIREMENT_LINES
    e = refused("# header\n" + "\n".join([*names, "one-more"]))
    assert str(e) == f"requirements.txt has more than {MAX_REQUIREMENT_LINES} requirements."
    assert e.line == MAX_REQUIREMENT_LINES + 2  # its line in the file, after the comment


def test_comments_and_blank_lines_do_not_count_against_the_line_limit():
    names = [f"pkg{n}" for n in range(MAX_REQUIREMENT_LINES)]
    text = "\n# note\n\n".join(names)
    assert len(parse_requirements(text).lines) == MAX_REQUIREMENT_LINES


# ---- parsing: what is refused, and the sentence ---------------------------------------------
@pytest.mark.parametrize("line", ["pandas==${VERSION}", "pandas==$(cat v)", "${PKG}"])
def test_environment_variables_are_refused_before_anything_else(line):
    e = refused(f"numpy\n{line}\n")
    assert str(e) == (
        f"Line 2 of requirements.txt uses an environment variable ({line!r}): write the "
        "value itself."
    )
    assert e.line == 2


def test_a_long_line_is_shown_cut_at_80_characters():
    line = "pandas==${" + "X" * 200 + "}"
    e = refused(line)
    assert repr(line[:80]) in str(e) and repr(line[:81]) not in str(e)


@pytest.mark.parametrize(
    ("line", "option"),
    [
        ("-e .", "-e"),
        ("--editable=./pkg", "--editable"),
        ("--editable ./pkg", "--editable"),
    ],
)
def test_editable_installs_are_refused_naming_the_option(line, option):
    e = refused(f"pandas\n{line}")
    assert str(e) == (
        f"Line 2 of requirements.txt is an editable install ({option}): list the package by "
        "name and version."
    )
    assert e.line == 2


@pytest.mark.parametrize(
    ("line", "option"),
    [
        ("-r other.txt", "-r"),
        ("--requirement=other.txt", "--requirement"),
        ("-c constraints.txt", "-c"),
        ("--constraint\tconstraints.txt", "--constraint"),
    ],
)
def test_includes_are_refused_naming_the_option(line, option):
    e = refused(line)
    assert str(e) == (
        f"Line 1 of requirements.txt includes another file ({option}): put every requirement "
        "in requirements.txt itself."
    )
    assert e.line == 1


@pytest.mark.parametrize(
    ("line", "option"),
    [
        ("--find-links /tmp/wheels", "--find-links"),
        ("--trusted-host=evil.example", "--trusted-host"),
        ("--no-index", "--no-index"),
        ("--pre", "--pre"),
        ("-f /tmp/wheels", "-f"),
        ("--2fa", "--2fa"),  # not an option's shape: the line itself is named
        ("-", "-"),
        ("-e.", "-e."),  # no space: not an option's shape, refused all the same
    ],
)
def test_any_other_option_is_refused_naming_it(line, option):
    e = refused(line)
    assert str(e) == (
        f"Line 1 of requirements.txt is an option ({option}) that an app's requirements.txt "
        "cannot use: only requirements like 'pandas>=2.2' are accepted."
    )
    assert e.line == 1


@pytest.mark.parametrize(
    "line",
    [
        "-i https://evil.example/simple",
        "--index-url https://evil.example/simple",
        "--index-url=https://evil.example/simple",
        "--extra-index-url https://evil.example/simple",
    ],
)
def test_another_index_is_refused_naming_it(line):
    e = refused(line)
    assert str(e) == (
        "Line 1 of requirements.txt names the package index https://evil.example/simple: "
        "packages come only from the platform's index."
    )
    assert e.line == 1


def test_the_folder_above_the_allowed_index_is_another_index():
    index = "https://nexus.example/repository/X"
    assert parse_requirements(f"-i {index}/\npandas", index_url=index).lines == ("pandas",)
    refused("-i https://nexus.example/repository/", index_url=index)


def test_an_index_option_without_a_value_is_refused_as_another_index():
    index = "https://pypi.internal.example/simple"
    e = refused("--index-url", index_url=index)
    assert str(e) == (
        "Line 1 of requirements.txt names the package index another index: packages come only "
        f"from the platform's index ({index})."
    )


@pytest.mark.parametrize(
    "line",
    [
        "--index-url https://pypi.internal.example/simple",
        "-i https://pypi.internal.example/simple/",
        "--extra-index-url=https://pypi.internal.example/simple//",
        "--index-url    https://pypi.internal.example/simple   ",
    ],
)
def test_the_platforms_own_index_may_be_named_and_changes_nothing(line):
    index = "https://pypi.internal.example/simple/"
    assert parse_requirements(f"{line}\npandas\n", index_url=index).lines == ("pandas",)


def test_without_an_allowed_index_every_index_line_is_refused():
    refused("--index-url https://pypi.org/simple")
    refused("--index-url https://pypi.org/simple", index_url="")


def test_index_credentials_are_never_shown():
    index = "https://builder:s3cret@pypi.internal.example/simple"
    e = refused("-i https://me:hunter2@evil.example/simple\npandas", index_url=index)
    assert str(e) == (
        "Line 1 of requirements.txt names the package index https://****@evil.example/simple: "
        "packages come only from the platform's index "
        "(https://****@pypi.internal.example/simple)."
    )


@pytest.mark.parametrize(
    "line",
    [
        "git+https://example.com/x.git",
        "GIT+https://example.com/x.git",
        "hg+https://example.com/x",
        "svn+svn://example.com/x",
        "bzr+lp:x",
        "pkg @ git+https://example.com/x.git",
        "pkg @ hg+https://example.com/x",
        "pkg @ svn+https://example.com/x",
        "pkg @ bzr+https://example.com/x",
    ],
)
def test_version_control_requirements_are_refused(line):
    e = refused(f"pandas\n{line}")
    assert str(e) == (
        f"Line 2 of requirements.txt installs from a version-control repository ({line!r}): "
        "publish the package to the platform's index and require it by name."
    )
    assert e.line == 2


@pytest.mark.parametrize(
    "line",
    [
        "./vendor/pkg",
        ".",
        "/tmp/pkg-1.0-py3-none-any.whl",
        "~/pkg",
        "file:///tmp/pkg",
        "FILE:pkg",
        "pkg @ https://example.com/pkg-1.0.whl",
        "https://example.com/pkg.tar.gz",
        "pkg-1.0-py3-none-any.whl",
        "pkg-1.0.tar.gz",
        "pkg-1.0.tgz",
        "pkg-1.0.zip",
        "pkg-1.0.tar.bz2",
        "pkg-1.0.tar.xz",
        "pkg-1.0.WHL",
        "/opt/vendor/pkg",
        "pkg @ https://example.com/simple/pkg/",
        "https://example.com/simple/pkg/",
    ],
)
def test_files_and_urls_are_refused(line):
    e = refused(line)
    assert str(e) == (
        f"Line 1 of requirements.txt installs from a file or URL ({line!r}): require packages "
        "by name (and version) from the platform's index."
    )
    assert e.line == 1


def test_a_url_requirement_without_a_scheme_separator_is_refused_as_a_url():
    # no "://", not a file path: only the parsed requirement shows it is a URL
    e = refused("numpy\npkg @ file:/tmp/pkg")
    assert str(e) == (
        "Line 2 of requirements.txt installs from a URL ('pkg @ file:/tmp/pkg'): require "
        "packages by name (and version) from the platform's index."
    )
    assert e.line == 2


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("git+https://example.com/" + "x" * 80, "installs from a version-control repository"),
        ("https://example.com/" + "x" * 80, "installs from a file or URL"),
        ("pkg @ file:/" + "x" * 80, "installs from a URL"),
        ("pkg==1.0 --hash=sha256:" + "a" * 80, "has an option after the requirement"),
        ("pkg==" + "1" * 80 + " ?", "is not a requirement"),
    ],
)
def test_a_long_refused_line_is_shown_cut_at_80_characters(line, says):
    e = refused(line)
    assert f"{says} ({line[:80]!r})" in str(e)


@pytest.mark.parametrize(
    "line",
    ["pkg==1.0 --hash=sha256:abcd", "pkg --pre", "pkg\t-e", "pkg==1.0 --Hash sha256:ab"],
)
def test_options_after_a_requirement_are_refused(line):
    e = refused(line)
    assert str(e) == (
        f"Line 1 of requirements.txt has an option after the requirement ({line!r}): "
        "per-requirement options such as --hash are not supported (the platform pins what it "
        "installs itself)."
    )


def test_a_dash_inside_a_requirement_is_no_option():
    parsed = parse_requirements("scikit-learn >= 1.5, != 1.5.1\nmy-pkg\n")
    assert parsed.lines == ("my-pkg", "scikit-learn!=1.5.1,>=1.5")


def test_what_is_no_requirement_is_refused_with_the_parsers_reason():
    e = refused("pandas\nthis is not a requirement")
    assert str(e).startswith(
        "Line 2 of requirements.txt is not a requirement ('this is not a requirement'): "
    )
    assert str(e).endswith(".") and len(str(e)) > 90  # packaging's reason follows
    assert e.line == 2


# ---- redact_url -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://pypi.example/simple", "https://pypi.example/simple"),
        ("https://me:pw@pypi.example/simple", "https://****@pypi.example/simple"),
        ("https://token@pypi.example/simple", "https://****@pypi.example/simple"),
        ("https://:pw@pypi.example/simple", "https://****@pypi.example/simple"),
        ("https://me:pw@pypi.example:8443/s?x=1#f", "https://****@pypi.example:8443/s?x=1#f"),
        ("https://me:pw@PyPI.Example/simple", "https://****@pypi.example/simple"),
        ("not a url", "not a url"),
        ("https://me:pw@/simple", "https://****@/simple"),  # no host: none invented
    ],
)
def test_redact_url_hides_every_credential_and_keeps_the_rest(url, shown):
    assert redact_url(url) == shown


# ---- small helpers --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 KB"),
        (1_500, "1.5 KB"),
        (999_949, "999.9 KB"),
        (1_000_000, "1.0 MB"),
        (2_345_678_901, "2.3 GB"),
        (12_000_000_000_000, "12000.0 GB"),
    ],
)
def test_human_bytes(n, shown):
    assert human_bytes(n) == shown


def test_the_platform_constraints_are_every_pin_sorted():
    assert PLATFORM.constraints() == "numpy==2.1.0\nstreamlit==1.40.0\ntornado==6.4\n"


def clear_passed_variables(monkeypatch) -> None:
    for name in envs_module._PASSED_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_uv_runs_with_a_clean_environment(monkeypatch):
    clear_passed_variables(monkeypatch)
    monkeypatch.setenv("HOME", "/home/hub")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("UV_INDEX_URL", "https://evil.example/simple")
    monkeypatch.setenv("PIP_INDEX_URL", "https://evil.example/simple")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "secret")
    assert envs_module._clean_env() == {
        "HOME": "/home/hub",
        "HTTPS_PROXY": "http://proxy:3128",
        "PATH": "/usr/bin:/bin",
        "PYTHONNOUSERSITE": "1",
    }
    monkeypatch.setenv("PATH", "/opt/bin")
    env = envs_module._clean_env({"PATH": "/x", "NO_COLOR": "1"})
    assert env == {
        "HOME": "/home/hub",
        "HTTPS_PROXY": "http://proxy:3128",
        "PATH": "/x",
        "PYTHONNOUSERSITE": "1",
        "NO_COLOR": "1",
    }
    assert envs_module._clean_env()["PATH"] == "/opt/bin"


def test_the_uv_environment_points_at_the_stores_cache(make_store, tmp_path, monkeypatch):
    clear_passed_variables(monkeypatch)
    store = make_store(cache_dir=tmp_path / "uv-cache")
    assert store._uv_env() == {
        "PATH": "/usr/bin:/bin",
        "PYTHONNOUSERSITE": "1",
        "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        "UV_NO_PROGRESS": "1",
        "NO_COLOR": "1",
        "UV_PYTHON_DOWNLOADS": "never",
    }
    assert make_store()._uv_env()["UV_CACHE_DIR"] == str(tmp_path / "environments" / "cache")


@pytest.mark.parametrize(
    ("log", "said"),
    [
        ("Resolved 3 packages\nerror: Distribution not found\n", "Distribution not found"),
        (
            "  × No solution found when resolving dependencies:\n"
            "error: No solution found when resolving dependencies:\n"
            "  ╰─▶ Because tornado==6.4 was pinned\n"
            "hint: try again\n"
            "# exit status 1\n",
            "╰─▶ Because tornado==6.4 was pinned try again",
        ),
        ("error: first\nerror: the last one\n", "the last one"),
        ("no error word here\n", "no error word here"),
        ("error:   cause: it   broke\n  help:  fix it\n", "it broke fix it"),
    ],
)
def test_uv_error_is_the_last_error_on_one_line(log, said):
    assert envs_module._uv_error(log) == said


def test_uv_error_is_at_most_600_characters():
    assert envs_module._uv_error("error: " + "x" * 600) == "x" * 600
    assert envs_module._uv_error("error: " + "x" * 601) == "x" * 600 + "…"
    tail = envs_module._uv_error("y" * 1000)  # no error: line: the log's last 600 characters
    assert tail == "y" * 600


def test_report_calls_plain_and_coroutine_progress_and_none():
    heard = []

    async def hear(percent, message):
        heard.append(("async", percent, message))

    asyncio.run(envs_module._report(lambda p, m: heard.append(("sync", p, m)), 10, "one"))
    asyncio.run(envs_module._report(hear, 50, "two"))
    asyncio.run(envs_module._report(None, 90, "three"))
    assert heard == [("sync", 10, "one"), ("async", 50, "two")]


def test_the_log_redacts_what_is_added():
    log = envs_module._Log(lambda text: text.replace("secret", "****"))
    log.add("a secret\n")
    log.add("more\n")
    assert log.text() == "a ****\nmore\n"


# ---- files on disk --------------------------------------------------------------------------
def test_disk_usage_counts_each_inode_once_and_follows_no_link(tmp_path):
    root = tmp_path / "env"
    (root / "lib" / "deep").mkdir(parents=True)
    (root / "a.bin").write_bytes(b"a" * 10_000)
    (root / "lib" / "deep" / "b.bin").write_bytes(b"b" * 50_000)
    os.link(root / "a.bin", root / "lib" / "a-again.bin")
    outside = tmp_path / "big.bin"
    outside.write_bytes(b"c" * 200_000)
    (root / "link.bin").symlink_to(outside)
    (root / "lib-link").symlink_to(tmp_path)

    def blocks(p: Path) -> int:
        return os.lstat(p).st_blocks * 512

    expected = sum(
        blocks(p)
        for p in (
            root / "lib",
            root / "lib" / "deep",
            root / "a.bin",
            root / "lib" / "deep" / "b.bin",
            root / "link.bin",
            root / "lib-link",
        )
    )
    assert disk_usage(root) == expected
    assert disk_usage(root) >= 60_000
    assert disk_usage(tmp_path / "missing") == 0


def test_copy_metadata_copies_dist_info_without_record_or_code(tmp_path):
    site = tmp_path / "site"
    dist = site / "pandas-2.2.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Name: pandas\nVersion: 2.2.0\n")
    (dist / "RECORD").write_text("pandas/__init__.py,,\n")
    (dist / "__pycache__").mkdir()
    (dist / "__pycache__" / "x.pyc").write_bytes(b"")
    (site / "old.egg-info").mkdir()
    (site / "old.egg-info" / "PKG-INFO").write_text("Name: old\n")
    (site / "single.egg-info").write_text("Name: single\n")
    (site / "pandas").mkdir()
    (site / "pandas" / "__init__.py").write_text("")
    (site / "six.py").write_text("")
    (site / "broken.dist-info").symlink_to(tmp_path / "nowhere")
    dest = tmp_path / "view"
    (dest / "pandas-2.2.0.dist-info").mkdir(parents=True)  # already there: merged

    copy_metadata([str(tmp_path / "missing"), str(site)], dest)

    found = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    assert found == [
        "old.egg-info",
        "old.egg-info/PKG-INFO",
        "pandas-2.2.0.dist-info",
        "pandas-2.2.0.dist-info/METADATA",
        "single.egg-info",
    ]
    assert (dest / "single.egg-info").read_text() == "Name: single\n"


def test_readable_by_all_opens_folders_and_files_to_app_accounts(tmp_path):
    root = tmp_path / "env"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_text("#!/bin/sh\n")
    (root / "bin" / "tool").chmod(0o700)
    (root / "data.txt").write_text("x")
    (root / "data.txt").chmod(0o600)
    (root / "others.sh").write_text("x")
    (root / "others.sh").chmod(0o601)  # only others may run it: no one else is given it
    (root / "link").symlink_to(tmp_path / "outside")
    (tmp_path / "outside").write_text("x")
    (tmp_path / "outside").chmod(0o600)
    (root / "bin").chmod(0o700)
    root.chmod(0o700)

    envs_module._readable_by_all(root)

    def mode(p: Path) -> int:
        return stat.S_IMODE(os.lstat(p).st_mode)

    assert (mode(root), mode(root / "bin")) == (0o755, 0o755)
    assert mode(root / "bin" / "tool") == 0o755
    assert mode(root / "data.txt") == 0o644
    assert mode(root / "others.sh") == 0o645
    assert mode(tmp_path / "outside") == 0o600  # a link's target is not this environment's


# ---- the key --------------------------------------------------------------------------------
def test_the_key_is_stable(store):
    # a hub restart, or an upgrade of this code, must find the environments already built:
    # a changed formula rebuilds every one (change LAYOUT_VERSION on purpose instead)
    assert store.key(Requirements(("pandas>=2",))) == "228394444eeca21a85a344e711affee8"


def test_the_key_covers_requirements_python_pins_index_and_layout(make_store, monkeypatch):
    reqs = Requirements(("pandas>=2",))
    base = make_store().key(reqs)
    assert len(base) == 32 and all(c in "0123456789abcdef" for c in base)
    assert make_store().key(reqs) == base
    different = {
        make_store().key(Requirements(("pandas>=2", "requests"))),
        make_store().key(Requirements(())),
        make_store(platform=Platform(**{**PLATFORM.__dict__, "python_id": "cpython-3.12.1"})).key(
            reqs
        ),
        make_store(
            platform=Platform(**{**PLATFORM.__dict__, "pins": {**PLATFORM.pins, "numpy": "2.2"}})
        ).key(reqs),
        make_store(index_url="https://pypi.internal.example/simple").key(reqs),
        make_store(no_index=True).key(reqs),
    }
    assert base not in different and len(different) == 6
    monkeypatch.setattr(envs_module, "LAYOUT_VERSION", envs_module.LAYOUT_VERSION + 1)
    assert make_store().key(reqs) != base


def test_the_key_does_not_hold_the_index_credentials(make_store):
    reqs = Requirements(("pandas",))
    one = make_store(index_url="https://ci:token-1@pypi.internal.example/simple").key(reqs)
    two = make_store(index_url="https://ci:token-2@pypi.internal.example/simple").key(reqs)
    other = make_store(index_url="https://ci:token-1@other.example/simple").key(reqs)
    assert one == two != other


# ---- environments on disk: lookup, use, eviction --------------------------------------------
def fake_env(
    store: EnvironmentStore, key: str, *, size: int = 1000, last_used: float | None = None
) -> Path:
    """An environment as a build publishes it, without the venv."""
    path = store.envs_dir / key
    path.mkdir(parents=True)
    meta = {
        "key": key,
        "requirements": [f"{key}-pkg"],
        "installed": [f"{key}-pkg==1.0"],
        "python": PLATFORM.python_id,
        "size": size,
        "built_at": 1_700_000_000.5,
        "build_seconds": 0.25,
    }
    (path / META_NAME).write_text(json.dumps(meta))
    if last_used is not None:
        (path / LAST_USED_NAME).touch()
        os.utime(path / LAST_USED_NAME, (last_used, last_used))
    return path


def test_get_reads_what_the_build_recorded(store):
    path = fake_env(store, "k1", size=4096, last_used=1_700_000_100.0)
    env = store.get("k1")
    assert env.key == "k1" and env.path == path
    assert (env.requirements, env.installed) == (("k1-pkg",), ("k1-pkg==1.0",))
    assert (env.size, env.built_at, env.build_seconds, env.last_used) == (
        4096,
        1_700_000_000.5,
        0.25,
        1_700_000_100.0,
    )
    assert env.python == path / "bin" / "python"
    assert env.log_path == path / "streamlit-hub-build.log"


def test_an_environment_never_used_was_last_used_when_built(store):
    fake_env(store, "k1")
    assert store.get("k1").last_used == 1_700_000_000.5


def test_a_missing_or_unreadable_environment_is_none(store):
    assert store.get("nothing") is None
    fake_env(store, "k1")
    (store.envs_dir / "k1" / META_NAME).write_text("{not json")
    assert store.get("k1") is None
    (store.envs_dir / "k2").mkdir()  # a build's rename in progress: no metadata yet
    assert store.get("k2") is None


def test_list_is_every_readable_environment_by_key(store):
    assert store.list() == []  # no envs folder at all
    for key in ("kb", "ka", "kc"):
        fake_env(store, key)
    (store.envs_dir / "kd").mkdir()
    assert [env.key for env in store.list()] == ["ka", "kb", "kc"]


def test_touch_makes_an_environment_recent_and_ignores_a_missing_one(store):
    fake_env(store, "k1", last_used=1000.0)
    store.touch("k1")
    assert time.time() - store.get("k1").last_used < 60
    fake_env(store, "k2")  # no marker yet: touch creates it
    store.touch("k2")
    assert time.time() - store.get("k2").last_used < 60
    store.touch("missing")
    assert not (store.envs_dir / "missing").exists()


def test_eviction_removes_the_least_recently_used_until_the_budget_fits(store):
    now = time.time()
    for n, age in enumerate((500, 400, 300, 200)):
        fake_env(store, f"k{n}", size=1000, last_used=now - age)
    assert store.evict(budget=2500) == ["k0", "k1"]
    assert [env.key for env in store.list()] == ["k2", "k3"]
    assert store.evict(budget=2000) == []  # exactly the budget fits
    assert store.evict(budget=1999) == ["k2"]


def test_eviction_never_removes_one_in_use(store):
    now = time.time()
    for n, age in enumerate((500, 400, 300)):
        fake_env(store, f"k{n}", size=1000, last_used=now - age)
    assert store.evict(in_use=["k0", "k2"], budget=0) == ["k1"]
    assert [env.key for env in store.list()] == ["k0", "k2"]


def test_eviction_breaks_ties_by_key_and_defaults_to_the_disk_budget(make_store):
    store = make_store(disk_budget=1000)
    for key in ("kb", "ka", "kc"):
        fake_env(store, key, size=1000, last_used=1_000_000.0)
    assert store.evict() == ["ka", "kb"]
    assert store.evict(budget=None) == []
    unbounded = make_store()
    assert unbounded.evict() == [] and [e.key for e in unbounded.list()] == ["kc"]


def test_eviction_counts_only_what_it_removed(store, monkeypatch):
    now = time.time()
    for n, age in enumerate((500, 400, 300)):
        fake_env(store, f"k{n}", size=1000, last_used=now - age)
    monkeypatch.setattr(store, "remove", lambda key: key != "k0")  # k0 vanished meanwhile
    assert store.evict(budget=1000) == ["k1", "k2"]


def test_remove_renames_away_then_deletes(store, monkeypatch):
    fake_env(store, "k1")
    (store.envs_dir / "k1" / "sub").mkdir()
    (store.envs_dir / "k1" / "sub" / "f").write_text("x")
    renamed = []
    real_rename = os.rename
    monkeypatch.setattr(
        envs_module.os, "rename", lambda a, b: (renamed.append((a, b)), real_rename(a, b))[1]
    )
    assert store.remove("k1") is True
    assert not (store.envs_dir / "k1").exists()
    assert list(store.building_dir.iterdir()) == []
    [(src, dst)] = renamed
    assert src == store.envs_dir / "k1"
    assert dst.parent == store.building_dir and dst.name.startswith(f"evicted-k1-{os.getpid()}-")
    assert store.remove("k1") is False


def test_eviction_clears_builds_a_crashed_hub_left_behind(make_store):
    store = make_store(build_timeout=100)
    store.building_dir.mkdir(parents=True)
    now = time.time()
    for name, age in (("stale", 201), ("fresh", 199), ("running", 10)):
        folder = store.building_dir / name
        (folder / "env").mkdir(parents=True)
        os.utime(folder, (now - age, now - age))
    assert store.evict() == []
    assert sorted(p.name for p in store.building_dir.iterdir()) == ["fresh", "running"]
    make_store(build_timeout=100).evict()  # nothing to clear: no error


def test_a_failed_builds_log_is_kept_and_read_back(store):
    assert store.failed_log("k1") is None
    store._keep_failed_log("k1", "no failed folder yet: not kept")
    assert store.failed_log("k1") is None
    store.failed_dir.mkdir(parents=True)
    store._keep_failed_log("k1", "uv: error\n")
    assert store.failed_log("k1") == "uv: error\n"
    assert (store.failed_dir / "k1.log").read_text() == "uv: error\n"


def test_site_packages_is_found_or_the_build_fails(store, tmp_path):
    venv = tmp_path / "venv"
    with pytest.raises(BuildFailed) as caught:
        store._site_packages(venv)
    assert str(caught.value) == "The new environment has no site-packages folder."
    (venv / "lib" / "python3.12" / "site-packages").mkdir(parents=True)
    (venv / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    (venv / "lib" / "python3.11" / "other").mkdir(parents=True)
    assert store._site_packages(venv) == venv / "lib" / "python3.11" / "site-packages"


# ---- uv's command line ----------------------------------------------------------------------
def test_index_arguments_follow_the_stores_settings(make_store):
    assert make_store()._index_args() == []
    store = make_store(
        index_url="https://pypi.internal.example/simple",
        find_links=["/wheels/a", Path("/wheels/b")],
        no_index=True,
    )
    assert store._index_args() == [
        "--index-url",
        "https://pypi.internal.example/simple",
        "--find-links",
        "/wheels/a",
        "--find-links",
        "/wheels/b",
        "--no-index",
    ]


def run_uv(store: EnvironmentStore, args: list[str]) -> list[str]:
    seen = []

    async def fake_run(command, cwd, deadline, log, *, stdin=None):
        seen.append((command, cwd, deadline, log))
        return 0, "out"

    store._run = fake_run
    log = envs_module._Log(str)
    assert asyncio.run(store._uv(args, Path("/work"), 123.0, log)) == (0, "out")
    [(command, cwd, deadline, got_log)] = seen
    assert (cwd, deadline, got_log) == (Path("/work"), 123.0, log)
    return command


def test_uv_never_reads_a_configuration_file_and_pip_gets_the_index(make_store):
    store = make_store(index_url="https://pypi.internal.example/simple", offline=True)
    venv = run_uv(store, ["venv", "/x"])
    assert venv == ["/opt/uv/bin/uv", "venv", "/x", "--no-config", "--offline"]
    assert run_uv(store, ["pip", "install", "x"]) == [
        "/opt/uv/bin/uv",
        "pip",
        "install",
        "x",
        "--no-config",
        "--index-url",
        "https://pypi.internal.example/simple",
        "--offline",
    ]
    assert run_uv(make_store(), ["pip", "install", "x"]) == [
        "/opt/uv/bin/uv",
        "pip",
        "install",
        "x",
        "--no-config",
    ]


def test_the_timeout_sentence_names_the_limit(make_store):
    assert make_store(build_timeout=90)._timeout_sentence() == (
        "The build took longer than the 90 s allowed and was stopped."
    )
    assert make_store(build_timeout=2.5)._timeout_sentence() == (
        "The build took longer than the 2.5 s allowed and was stopped."
    )


def test_index_credentials_are_redacted_from_the_log(make_store):
    store = make_store(index_url="https://ci:s3cret@pypi.internal.example/simple")
    text = (
        "--index-url https://ci:s3cret@pypi.internal.example/simple\n"
        "401 for https://pypi.internal.example/simple (password s3cret)\n"
    )
    assert store._redact(text) == (
        "--index-url https://****@pypi.internal.example/simple\n"
        "401 for https://pypi.internal.example/simple (password ****)\n"
    )
    token_only = make_store(index_url="https://tok3n@pypi.internal.example/simple")
    assert token_only._redact("https://tok3n@pypi.internal.example/simple") == (
        "https://****@pypi.internal.example/simple"
    )
    plain = make_store(index_url="https://pypi.internal.example/simple")
    assert plain._redact("https://pypi.internal.example/simple s3cret") == (
        "https://pypi.internal.example/simple s3cret"
    )
    assert make_store()._redact("anything") == "anything"


# ---- uv's answers read: the plan, conflicts, the check --------------------------------------
class FakeUv:
    """Stands in for ``EnvironmentStore._uv``: records the calls, answers from a list."""

    def __init__(self, *answers: tuple[int, str], log_text: str = ""):
        self.answers = list(answers)
        self.calls: list[list[str]] = []
        self.where: list[tuple[Path, float]] = []
        self.log_text = log_text

    async def __call__(self, args, cwd, deadline, log):
        self.calls.append(list(args))
        self.where.append((cwd, deadline))
        code, out = self.answers.pop(0)
        if args[0] == "venv" and code == 0:  # a venv: its python and site-packages
            (Path(args[-1]) / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
            (Path(args[-1]) / "bin").mkdir()
            (Path(args[-1]) / "bin" / "python").touch()
        if self.log_text:
            log.add(self.log_text)
        return code, out


def plan(*changes: tuple[str, str, str | None]) -> str:
    return json.dumps(
        {
            "changes": [
                {"name": n, "version": v, **({"action": a} if a else {})} for n, v, a in changes
            ]
        }
    )


DEADLINE = 12345.0


def resolve(store: EnvironmentStore, fake: FakeUv, tmp_path: Path, platform=PLATFORM):
    store._uv = fake
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    for folder in (store.root, store.envs_dir, store.building_dir, store.failed_dir):
        folder.mkdir(parents=True, exist_ok=True)  # as a build makes them
    log = envs_module._Log(str)
    try:
        return asyncio.run(store._resolve(work, platform, DEADLINE, log))
    finally:  # every uv run is under the build's deadline; the plan in the build's folder
        assert [deadline for _cwd, deadline in fake.where] == [DEADLINE] * len(fake.calls)
        for (cwd, _deadline), args in zip(fake.where, fake.calls, strict=True):
            if args[0] == "pip":
                assert cwd == work
            else:  # the platform's view: made aside, in a folder of its own
                assert Path(args[-1]).parent == cwd and cwd != work


def view_of(fake: FakeUv) -> Path:
    """The platform's view the plan was made against (its interpreter, given to uv)."""
    [args] = [args for args in fake.calls if args[0] == "pip"]
    return Path(args[args.index("--python") + 1]).parent.parent


def views(store: EnvironmentStore, fake: FakeUv) -> list[Path]:
    """The views kept beside the one the plan used (same folder, same naming)."""
    return sorted(p for p in view_of(fake).parent.iterdir() if p.is_dir())


def test_the_plan_is_what_the_app_adds_sorted_and_canonical(store, tmp_path):
    fake = FakeUv(
        (0, ""),
        (
            0,
            plan(
                ("Requests", "2.32.0", "installed"),
                ("humanize", "4.9.0", "installed"),
                ("Tornado", "6.4", "installed"),  # pinned, same version: the platform's
            ),
        ),
    )
    assert resolve(store, fake, tmp_path) == ("humanize==4.9.0", "requests==2.32.0")
    view = view_of(fake)
    assert views(store, fake) == [view]
    assert view.is_relative_to(store.root) and not view.is_relative_to(store.envs_dir)
    assert fake.calls[0][:3] == ["venv", "--python", PLATFORM.base_python]
    assert fake.calls[1:] == [
        [
            "pip",
            "install",
            "--dry-run",
            "--output-format",
            "json",
            "--python",
            str(view / "bin" / "python"),
            "-r",
            "requirements.in",
            "--constraint",
            "platform-pins.txt",
        ],
    ]


def test_the_view_holds_the_platforms_metadata(store, tmp_path):
    site = tmp_path / "platform-site"
    (site / "tornado-6.4.dist-info").mkdir(parents=True)
    (site / "tornado-6.4.dist-info" / "METADATA").write_text("Name: tornado\n")
    platform = Platform(**{**PLATFORM.__dict__, "site_packages": (str(site),)})
    fake = FakeUv((0, ""), (0, plan()))
    resolve(store, fake, tmp_path, platform)
    view = view_of(fake)
    view_site = view / "lib" / "python3.11" / "site-packages"
    assert (view_site / "tornado-6.4.dist-info" / "METADATA").exists()
    assert list(view.parent.iterdir()) == [view]  # nothing made aside is left
    assert stat.S_IMODE(view.parent.stat().st_mode) & 0o077 == 0  # the hub's alone


def test_the_view_is_made_once_per_platform(store, tmp_path):
    first = FakeUv((0, ""), (0, plan()))
    resolve(store, first, tmp_path)
    again = FakeUv((0, plan()))
    resolve(store, again, tmp_path)  # the same platform: the view is reused
    assert [args[0] for args in again.calls] == ["pip"] and view_of(again) == view_of(first)
    upgraded = Platform(**{**PLATFORM.__dict__, "pins": {**PLATFORM.pins, "tornado": "6.5"}})
    fake = FakeUv((0, ""), (0, plan()))
    resolve(store, fake, tmp_path, upgraded)  # new pins: a view of its own
    assert [args[0] for args in fake.calls] == ["venv", "pip"]
    assert len(views(store, fake)) == 2
    moved = Platform(**{**PLATFORM.__dict__, "python_id": "cpython-3.12.1-linux-x86_64"})
    fake = FakeUv((0, ""), (0, plan()))
    resolve(store, fake, tmp_path, moved)
    assert len(views(store, fake)) == 3


def test_eviction_never_removes_the_platforms_view(make_store, tmp_path):
    store = make_store(build_timeout=1, disk_budget=0)
    fake = FakeUv((0, ""), (0, plan()))
    resolve(store, fake, tmp_path)
    view = view_of(fake)
    for path in (view, view.parent):
        os.utime(path, (0, 0))  # older than any build may take: still in use by every build
    store.evict()
    assert (view / "bin" / "python").exists()


def test_a_view_another_build_made_first_is_used(store, tmp_path, monkeypatch):
    first = FakeUv((0, ""), (0, plan()))
    resolve(store, first, tmp_path)
    view = view_of(first)
    (view / "bin" / "python").unlink()  # looks unfinished: this build makes its own…
    real_rename = os.rename

    def rename(src, dst):  # …and the other build renames its view into place first
        if Path(dst) == view:
            (view / "bin" / "python").touch()
            raise OSError(errno.ENOTEMPTY, "Directory not empty", str(dst))
        return real_rename(src, dst)

    monkeypatch.setattr(envs_module.os, "rename", rename)
    second = FakeUv((0, ""), (0, plan()))
    resolve(store, second, tmp_path)
    assert view_of(second) == view and list(view.parent.iterdir()) == [view]


def test_a_view_that_cannot_be_renamed_fails_the_build(store, tmp_path, monkeypatch):
    def rename(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link", str(dst))

    monkeypatch.setattr(envs_module.os, "rename", rename)
    fake = FakeUv((0, ""), (0, plan()))
    with pytest.raises(OSError):
        resolve(store, fake, tmp_path)
    made_in = fake.where[0][0]
    assert not made_in.exists() and list(made_in.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (("tornado", "5.0", "installed"), "tornado==6.4"),  # another version of a pin
        (("Tornado", "6.4", "removed"), "tornado==6.4"),  # uv would remove a pin
        (("tornado", "6.4", None), "tornado==6.4"),  # an action uv did not name
        (("streamlit", "1.40.0", "reinstalled"), "streamlit==1.40.0"),
    ],
)
def test_a_plan_that_changes_a_platform_package_is_a_conflict(store, tmp_path, change, named):
    changes = plan(("humanize", "4.9.0", "installed"), change)
    fake = FakeUv((0, ""), (0, changes), log_text="uv ran\n")
    with pytest.raises(PlatformConflict) as caught:
        resolve(store, fake, tmp_path)
    name = named.partition("==")[0]
    assert caught.value.packages == (name,)
    assert caught.value.log == "uv ran\nuv ran\n"
    assert str(caught.value) == (
        f"Refused: the requirements need another version of {name} than the platform's "
        f"{named}; the app server runs on it, so an app cannot change its version. "
        "uv planned to change them."
    )


def test_a_plan_removing_an_unpinned_package_names_it(store, tmp_path):
    fake = FakeUv((0, ""), (0, plan(("leftover", "1.0", "removed"))))
    with pytest.raises(PlatformConflict) as caught:
        resolve(store, fake, tmp_path)
    assert caught.value.packages == ("leftover",)
    assert "another version of leftover than the platform's leftover;" in str(caught.value)


def test_conflicts_with_several_pins_are_named_together(store):
    conflict = store._conflict(["numpy==2.1.0", "tornado==6.4"], "Why.", "the log")
    assert conflict.packages == ("numpy", "tornado")
    assert conflict.log == "the log"
    assert str(conflict) == (
        "Refused: the requirements need another version of numpy, tornado than the "
        "platform's numpy==2.1.0, tornado==6.4; the app server runs on them, so an app cannot "
        "change their version. Why."
    )


def test_a_view_that_cannot_be_made_fails_the_build(store, tmp_path):
    fake = FakeUv((1, ""), log_text="error: no python\n")
    with pytest.raises(BuildFailed) as caught:
        resolve(store, fake, tmp_path)
    assert str(caught.value) == "The environment could not be created."
    assert caught.value.log == "error: no python\n"
    assert len(fake.calls) == 1
    made_in = fake.where[0][0]
    assert not made_in.exists() and list(made_in.parent.iterdir()) == []  # no half a view


@pytest.mark.parametrize("out", ["not json", "{}", '{"changes": [{"name": "x"}]}', "[1]"])
def test_a_plan_that_cannot_be_read_fails_the_build(store, tmp_path, out):
    with pytest.raises(BuildFailed) as caught:
        resolve(store, FakeUv((0, ""), (0, out), log_text="uv said\n"), tmp_path)
    assert str(caught.value) == "uv's install plan could not be read."
    assert caught.value.log == "uv said\nuv said\n"


def test_a_failed_resolution_is_read_from_uvs_error(store, tmp_path):
    fake = FakeUv(
        (0, ""),
        (1, ""),
        log_text="error: Because tornado==6.4 was pinned and app needs tornado<6\n",
    )
    with pytest.raises(PlatformConflict) as caught:
        resolve(store, fake, tmp_path)
    assert caught.value.packages == ("tornado",)
    assert str(caught.value).endswith("uv: Because tornado==6.4 was pinned and app needs tornado<6")


@pytest.mark.parametrize(
    ("error", "named"),
    [
        ("Because tornado==6.4 and you require tornado<6", ["tornado==6.4"]),
        ("Because TORNADO==6.4 was pinned", ["tornado==6.4"]),
        ("numpy==2.1.0 and tornado==6.4 are pinned", ["numpy==2.1.0", "tornado==6.4"]),
        ("(tornado==6.4)", ["tornado==6.4"]),
        ("tornado==6.4.1 is not available", []),  # another version
        ("tornado==6.4+local is not available", []),
        ("tornado==6.41", []),
        ("mytornado==6.4 is not available", []),
        ("my.tornado==6.4 is not available", []),
        ("old-tornado==6.4 is not available", []),
        ("tornado==6x4", []),  # the version's dot is a dot
    ],
)
def test_the_resolution_error_names_the_pins_uv_named(store, error, named):
    log = f"$ uv pip install\nerror: {error}\n# exit status 1\n"
    result = store._resolution_error(log)
    if named:
        assert isinstance(result, PlatformConflict)
        assert list(result.packages) == [n.partition("==")[0] for n in named]
        assert str(result).endswith(f"uv: {error}")
        assert result.log == log
    else:
        assert type(result) is BuildFailed
        assert str(result) == f"The requirements could not be resolved: {error}"
        assert result.log == log


def check(store: EnvironmentStore, tmp_path: Path, answer: tuple[int, str], installed=()):
    seen = []

    async def fake_run(command, cwd, deadline, log, *, stdin=None):
        seen.append((command, cwd, deadline, json.loads(stdin)))
        log.add("checked\n")
        return answer

    store._run = fake_run
    venv = tmp_path / "work" / "env"
    log = envs_module._Log(str)
    asyncio.run(store._check(venv, PLATFORM, installed, 99.0, log))
    return seen, venv


def test_the_check_asks_the_new_python_for_every_pin_and_planned_package(store, tmp_path):
    seen, venv = check(store, tmp_path, (0, "{}"), installed=("Humanize==4.9.0",))
    [(command, cwd, deadline, expected)] = seen
    assert command == [str(venv / "bin" / "python"), "-I", "-c", envs_module._CHECK]
    assert (cwd, deadline) == (venv.parent, 99.0)
    assert expected == {**PLATFORM.pins, "humanize": "4.9.0"}


@pytest.mark.parametrize("answer", [(1, "{}"), (0, "Traceback"), (0, "")])
def test_a_python_that_does_not_answer_fails_the_check(store, tmp_path, answer):
    with pytest.raises(BuildFailed) as caught:
        check(store, tmp_path, answer)
    assert str(caught.value) == "The new environment's Python does not start."
    assert caught.value.log == "checked\n"


def test_a_python_seeing_other_versions_fails_the_check_naming_them(store, tmp_path):
    wrong = {"tornado": ["6.4", "5.0"], "numpy": ["2.1.0", None]}
    with pytest.raises(BuildFailed) as caught:
        check(store, tmp_path, (0, json.dumps(wrong)))
    assert str(caught.value) == (
        "The new environment does not see the expected versions: numpy (wanted 2.1.0, sees "
        "None), tornado (wanted 6.4, sees 5.0)."
    )
    assert caught.value.log == "checked\n"


# ---- what vanishes or fails meanwhile -------------------------------------------------------
class _Entry:
    """A directory entry whose stat fails, as when the file is removed after the listing."""

    def __init__(self, entry):
        self._entry = entry
        self.path, self.name = entry.path, entry.name

    def stat(self, **kwargs):
        raise FileNotFoundError(self.path)

    def is_dir(self, **kwargs):
        return self._entry.is_dir(**kwargs)


def test_disk_usage_goes_on_past_what_vanished_while_counted(tmp_path, monkeypatch):
    root = tmp_path / "env"
    for name in ("a-gone", "b-unreadable", "c"):
        (root / name).mkdir(parents=True)
    (root / "a-gone" / "x.bin").write_bytes(b"x" * 10_000)
    (root / "c" / "kept.bin").write_bytes(b"k" * 10_000)
    (root / "d-gone.bin").write_bytes(b"d" * 10_000)
    (root / "e.bin").write_bytes(b"e" * 10_000)
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "b-unreadable":
            raise PermissionError(path)
        # listed last name first, so what fails comes before what follows it
        entries = sorted(real_scandir(path), key=lambda e: e.name, reverse=True)
        return [_Entry(e) if e.name in ("a-gone", "d-gone.bin") else e for e in entries]

    monkeypatch.setattr(envs_module.os, "scandir", scandir)
    expected = sum(
        os.lstat(p).st_blocks * 512
        for p in (root / "b-unreadable", root / "c", root / "c" / "kept.bin", root / "e.bin")
    )
    assert disk_usage(root) == expected


def test_clearing_builds_goes_on_past_one_removed_meanwhile(make_store, monkeypatch):
    store = make_store(build_timeout=100)
    store.building_dir.mkdir(parents=True)
    for name in ("a-gone", "b-stale"):
        (store.building_dir / name).mkdir()
        os.utime(store.building_dir / name, (0, 0))
    real_stat = Path.stat

    def stat(self, *args, **kwargs):
        if self.name == "a-gone":
            raise FileNotFoundError(self)
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    store.evict()
    assert sorted(p.name for p in store.building_dir.iterdir()) == ["a-gone"]


def test_a_build_exactly_twice_the_timeout_old_is_kept(make_store, monkeypatch):
    store = make_store(build_timeout=100)
    (store.building_dir / "edge").mkdir(parents=True)
    os.utime(store.building_dir / "edge", (800, 800))
    monkeypatch.setattr(envs_module.time, "time", lambda: 1000.0)
    store.evict()
    assert [p.name for p in store.building_dir.iterdir()] == ["edge"]


def rmtree_that_fails_unless_told_to_ignore(monkeypatch):
    real_rmtree = envs_module.shutil.rmtree

    def rmtree(path, ignore_errors=False, **kwargs):
        if not ignore_errors:
            raise PermissionError(path)
        return real_rmtree(path, ignore_errors=ignore_errors, **kwargs)

    monkeypatch.setattr(envs_module.shutil, "rmtree", rmtree)


def test_a_stale_build_that_cannot_be_removed_stops_no_eviction(make_store, monkeypatch):
    store = make_store(build_timeout=100)
    (store.building_dir / "stuck").mkdir(parents=True)
    os.utime(store.building_dir / "stuck", (0, 0))
    fake_env(store, "k1", size=1000, last_used=1.0)
    rmtree_that_fails_unless_told_to_ignore(monkeypatch)
    assert store.evict(budget=0) == ["k1"]


def test_an_environment_whose_files_resist_removal_is_still_gone(store, monkeypatch):
    fake_env(store, "k1")
    rmtree_that_fails_unless_told_to_ignore(monkeypatch)
    assert store.remove("k1") is True
    assert store.get("k1") is None


def test_removing_from_a_store_never_used_is_false(store):
    assert not store.root.exists()
    assert store.remove("k1") is False


def test_a_view_whose_scratch_folder_cannot_be_removed_still_serves(store, tmp_path, monkeypatch):
    rmtree_that_fails_unless_told_to_ignore(monkeypatch)
    fake = FakeUv((0, ""), (0, plan(("humanize", "4.9.0", "installed"))))
    assert resolve(store, fake, tmp_path) == ("humanize==4.9.0",)
