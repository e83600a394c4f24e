import pytest
from hypothesis import given
from hypothesis import strategies as st

from spawner.options import AppOptions, OptionsError, options_from_form_data, parse_user_options


def test_empty_options_mean_defaults():
    assert parse_user_options({}) == AppOptions()
    assert parse_user_options(None) == AppOptions()


def test_known_fields_are_kept():
    opts = parse_user_options({"source": "home", "path": "apps/x/app.py", "profile": "small"})
    assert opts == AppOptions("home", "apps/x/app.py", "small")
    assert opts.to_dict() == {"source": "home", "path": "apps/x/app.py", "profile": "small"}


@pytest.mark.parametrize(
    "raw, words",
    [
        ([], "JSON object"),
        ("x", "JSON object"),
        ({"gpu": "x"}, "Unknown option"),
        ({"image": "x"}, 'applies to source "image" only'),
        ({"source": "svn"}, "Unknown source"),
        ({"source": ["home"]}, "Unknown source"),
        ({"source": "git"}, "needs 'repo'"),
        ({"source": "git", "repo": "http://github.com/a/b.git", "ref": "a" * 40}, "https://"),
        (
            {"source": "git", "repo": "https://tok:x@github.com/a/b.git", "ref": "a" * 40},
            "credentials",
        ),
        (
            {"source": "git", "repo": "https://github.com/a/b.git", "ref": "main"},
            "full 40-character SHA",
        ),
        ({"source": "git", "repo": "https://github.com/a/b.git"}, "full 40-character SHA"),
        ({"source": "image"}, "needs 'image'"),
        ({"source": "image", "image": "ghcr.io/example/apps/x"}, "tag or a digest"),
        ({"source": "image", "image": "ghcr.io/example/apps/x:latest"}, "other than 'latest'"),
        ({"source": "image", "image": "GHCR.io/$(x):1"}, "tag or a digest"),
        ({"path": 1}, "must be a string"),
        ({"profile": {}}, "must be a string"),
        ({"profile": "p" * 64}, "too long"),
        ({"path": "x" * 5000}, "too large"),
    ],
)
def test_bad_options_are_refused_with_a_reason(raw, words):
    with pytest.raises(OptionsError, match=words):
        parse_user_options(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.dictionaries(
        st.sampled_from(["source", "path", "profile", "x", ""]), json_values, max_size=4
    )
)
def test_any_json_body_parses_or_is_refused_cleanly(raw):
    try:
        opts = parse_user_options(raw)
    except OptionsError as e:
        assert str(e)
    else:
        assert opts.source == "home"
        assert opts.path is None or isinstance(opts.path, str)


def test_form_data_keeps_first_value_of_known_fields():
    assert options_from_form_data(
        {"path": ["apps/a/app.py", "ignored"], "profile": [""], "evil": ["x"]}
    ) == {"path": "apps/a/app.py"}


def test_git_and_image_sources_parse():
    sha = "0123456789abcdef0123456789abcdef01234567"
    o = parse_user_options(
        {
            "source": "git",
            "repo": "https://github.com/example/sales.git",
            "ref": sha,
            "path": "dash/app.py",
        }
    )
    assert (o.source, o.repo, o.ref, o.path) == (
        "git",
        "https://github.com/example/sales.git",
        sha,
        "dash/app.py",
    )
    o = parse_user_options({"source": "image", "image": "ghcr.io/example/apps/alice-sales:1a2b3c"})
    assert (o.source, o.image) == ("image", "ghcr.io/example/apps/alice-sales:1a2b3c")
    digest = "ghcr.io/example/apps/x@sha256:" + "a" * 64
    assert parse_user_options({"source": "image", "image": digest}).image == digest


SHA = "0123456789abcdef0123456789abcdef01234567"


# Credentials in a repository URL are refused in every shape (issue 18, survivor 6): a token
# alone as the user name is the usual way a GitHub token ends up in a URL.
@pytest.mark.parametrize(
    "repo",
    [
        "https://TOKEN@github.com/a/b.git",
        "https://ghp_abcdef0123456789@github.com/a/b.git",
        "https://user:@github.com/a/b.git",
        "https://:secret@github.com/a/b.git",
        "https://tok:x@github.com/a/b.git",
    ],
)
def test_a_git_url_with_any_credentials_is_refused(repo):
    with pytest.raises(OptionsError) as e:
        parse_user_options({"source": "git", "repo": repo, "ref": SHA})
    assert str(e.value) == "'repo' must not contain credentials: never put a token in a URL."


@pytest.mark.parametrize(
    "repo, message",
    [
        (
            "https://github.com/a/b.git?x=1",
            "'repo' must be a plain repository URL (no ?query or #fragment).",
        ),
        (
            "https://github.com/a/b.git#main",
            "'repo' must be a plain repository URL (no ?query or #fragment).",
        ),
        ("https:///a/b.git", "'repo' must be an https:// URL of a git repository."),
        ("git@github.com:a/b.git", "'repo' must be an https:// URL of a git repository."),
        ("ssh://github.com/a/b.git", "'repo' must be an https:// URL of a git repository."),
        ("", 'Source "git" needs \'repo\', e.g. "https://github.com/example/sales-app.git".'),
        ("https://github.com/" + "a" * 481 + ".git", "'repo' is too long: at most 500 characters."),
    ],
)
def test_git_url_refusals_say_exactly_why(repo, message):
    with pytest.raises(OptionsError) as e:
        parse_user_options({"source": "git", "repo": repo, "ref": SHA})
    assert str(e.value) == message


def test_a_git_url_of_exactly_500_characters_is_accepted():
    repo = "https://github.com/" + "a" * 477 + ".git"
    assert len(repo) == 500
    assert parse_user_options({"source": "git", "repo": repo, "ref": SHA}).repo == repo


@pytest.mark.parametrize(
    "ref",
    ["0123456789ABCDEF0123456789abcdef01234567", SHA[:39], SHA + "0", "refs/heads/main", "HEAD"],
)
def test_ref_must_be_a_full_lowercase_sha(ref):
    with pytest.raises(OptionsError, match="full 40-character SHA"):
        parse_user_options({"source": "git", "repo": "https://github.com/a/b.git", "ref": ref})


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"repo": "https://github.com/a/b.git"}, "'repo' applies to source \"git\" only."),
        (
            {"source": "image", "image": "ghcr.io/x/y:1", "ref": SHA},
            "'ref' applies to source \"git\" only.",
        ),
        (
            {"source": "git", "repo": "https://github.com/a/b.git", "ref": SHA, "image": "x:1"},
            "'image' applies to source \"image\" only.",
        ),
        ({"source": "git", "repo": 5, "ref": SHA}, "'repo' must be a string."),
        (
            {"source": "git", "repo": "https://github.com/a/b.git", "ref": 5},
            "'ref' must be a string.",
        ),
        ({"source": "image", "image": ["x"]}, "'image' must be a string."),
        ({"source": 3}, "Unknown source 'int': this hub supports home, git, image, version."),
        ({"source": "svn"}, "Unknown source 'svn': this hub supports home, git, image, version."),
        (
            {"source": "x" * 60},
            f"Unknown source {'x' * 40!r}: this hub supports home, git, image, version.",
        ),
        ({"path": 1}, "'path' must be a string, e.g. \"apps/demo/app.py\"."),
        ({"profile": 1}, "'profile' must be a string naming a profile, e.g. \"small\"."),
        ({"profile": "p" * 64}, "'profile' is too long: at most 63 characters."),
        ([], 'Options must be a JSON object, e.g. {"path": "apps/demo/app.py"}.'),
        ({"path": {(1, 2): "tuple keys are not JSON"}}, "Options must be plain JSON values."),
        (
            {"gpu": 1, "zz": 2, "aa": 3},
            "Unknown option(s): 'aa', 'gpu', 'zz'. Known options: source, path, "
            "profile, repo, ref, image, version, workers.",
        ),
        (
            {"x" * 50: 1},
            f"Unknown option(s): {'x' * 40!r}. Known options: source, path, profile, repo, ref, image, version, "
            "workers.",
        ),
        (
            {f"k{i}": 1 for i in range(7)},
            "Unknown option(s): 'k0', 'k1', 'k2', 'k3', 'k4'. Known options: "
            "source, path, profile, repo, ref, image, version, workers.",
        ),
        ({"source": "home", "version": "v2"}, "'version' applies to source \"version\" only."),
        ({"source": "version", "version": 2}, "'version' must be a string."),
        (
            {"source": "version", "version": "v0"},
            "'version' names a published version, e.g. \"v3\".",
        ),
        (
            {"source": "version", "version": "2"},
            "'version' names a published version, e.g. \"v3\".",
        ),
        (
            {"source": "version", "version": "v1 "},
            "'version' names a published version, e.g. \"v3\".",
        ),
        (
            {"source": "version", "version": "v1234567890"},
            "'version' names a published version, e.g. \"v3\".",
        ),
        (
            {"source": "version", "path": "x.py"},
            "'path' does not apply to a published version: it has its own entry file.",
        ),
        (
            {"source": "image", "image": ""},
            'Source "image" needs \'image\', e.g. "ghcr.io/example/apps/alice-sales:1a2b3c".',
        ),
        (
            {"source": "image", "image": "ghcr.io:5000/apps/x"},
            "'image' must be an image reference with a tag or a digest, "
            'e.g. "ghcr.io/example/apps/alice-sales:1a2b3c".',
        ),
        (
            {"source": "image", "image": "ghcr.io/x/y:latest"},
            "'image' must pin a version: use a tag other than 'latest', or a digest.",
        ),
    ],
)
def test_option_refusals_say_exactly_why(raw, message):
    with pytest.raises(OptionsError) as e:
        parse_user_options(raw)
    assert str(e.value) == message


def test_a_published_version_by_id_or_the_active_one():
    assert parse_user_options({"source": "version"}) == AppOptions(source="version")
    assert parse_user_options({"source": "version", "version": "v123456789"}).version == (
        "v123456789"
    )
    assert parse_user_options({"source": "version", "version": "v10"}).to_dict() == {
        "source": "version",
        "version": "v10",
    }


def test_options_of_exactly_the_size_limit_are_accepted():
    import json

    base = {"path": ""}
    pad = 4096 - len(json.dumps(base))
    raw = {"path": "a" * pad}
    assert len(json.dumps(raw)) == 4096
    assert parse_user_options(raw).path == "a" * pad
    with pytest.raises(OptionsError, match="too large"):
        parse_user_options({"path": "a" * (pad + 1)})


def test_blank_path_and_profile_mean_the_defaults_and_profile_is_trimmed():
    assert parse_user_options({"path": "  ", "profile": "  "}) == AppOptions()
    assert parse_user_options({"profile": " small "}).profile == "small"
    assert parse_user_options({"profile": "p" * 63}).profile == "p" * 63


def test_image_references_that_are_accepted():
    for image in (
        "ghcr.io/x/y:1",
        "ghcr.io:5000/x/y:v1.2",
        "x/y@sha256:" + "0" * 64,
        "ghcr.io/x/y:v1@sha256:" + "0" * 64,
    ):
        assert parse_user_options({"source": "image", "image": image}).image == image


def test_to_dict_leaves_out_unset_fields():
    assert AppOptions().to_dict() == {"source": "home"}
    o = AppOptions("git", None, None, "https://h/a.git", SHA)
    assert o.to_dict() == {"source": "git", "repo": "https://h/a.git", "ref": SHA}


def test_form_data_decodes_bytes_and_keeps_every_known_field():
    form = {
        "source": [b"git"],
        "repo": [b"https://h/a.git"],
        "ref": [SHA.encode()],
        "path": [b"\xff.py"],
        "profile": [],
        "image": None,
    }
    assert options_from_form_data(form) == {
        "source": "git",
        "repo": "https://h/a.git",
        "ref": SHA,
        "path": "\ufffd.py",
    }


def test_a_git_url_of_501_characters_is_refused():
    repo = "https://github.com/" + "a" * 478 + ".git"
    assert len(repo) == 501
    with pytest.raises(OptionsError, match=r"'repo' is too long: at most 500 characters."):
        parse_user_options({"source": "git", "repo": repo, "ref": SHA})


def test_the_ref_refusal_says_exactly_why():
    with pytest.raises(OptionsError) as e:
        parse_user_options({"source": "git", "repo": "https://github.com/a/b.git", "ref": "main"})
    assert str(e.value) == (
        "'ref' must pin a commit: its full 40-character SHA (e.g. from "
        "`git rev-parse HEAD`), not a branch."
    )


@pytest.mark.parametrize(
    "image, message",
    [
        # the tag is read before the digest: latest is refused even with a digest after it
        ("ghcr.io/x/y:latest@sha256:" + "0" * 64, "'image' must pin a version"),
        # a ":" earlier in the path is not a tag: the last path part has none
        ("ghcr.io/x:1/y", "'image' must be an image reference with a tag or a digest"),
    ],
)
def test_image_tags_are_read_from_the_last_path_part_before_the_digest(image, message):
    with pytest.raises(OptionsError, match=message):
        parse_user_options({"source": "image", "image": image})


def test_an_image_with_no_registry_or_path():
    assert parse_user_options({"source": "image", "image": "busybox:1.36"}).image == "busybox:1.36"


def test_an_app_source_is_a_frozen_value_named_by_field():
    import dataclasses

    from spawner.options import SOURCES, AppSource

    assert AppSource() == AppSource("home") and AppSource().kind == "home"
    git = AppSource("git", repo="https://github.com/a/b.git", ref="a" * 40, git_image="g:1")
    assert (git.kind, git.repo, git.ref, git.git_image, git.image) == (
        "git",
        "https://github.com/a/b.git",
        "a" * 40,
        "g:1",
        None,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        git.repo = "https://evil.example/x.git"
    with pytest.raises(ValueError, match="unknown app source"):
        AppSource("svn")
    assert {AppSource(k).kind for k in SOURCES} == set(SOURCES)


WORKERS_REFUSED = (
    "'workers' must be a whole number from 1 to 64, e.g. 2 (Streamlit processes serving the app)."
)


@pytest.mark.parametrize("raw, kept", [(1, 1), (64, 64), ("1", 1), (" 64 ", 64), ("", None)])
def test_workers_from_1_to_64_as_a_number_or_the_forms_text(raw, kept):
    assert parse_user_options({"workers": raw}).workers == kept


@pytest.mark.parametrize("raw", [0, 65, -1, "0", "65", "1000", True, 2.0, "two"])
def test_workers_outside_1_to_64_are_refused_with_the_sentence(raw):
    with pytest.raises(OptionsError) as e:
        parse_user_options({"workers": raw})
    assert str(e.value) == WORKERS_REFUSED
