import pytest
from hypothesis import given, strategies as st

from spawner.options import AppOptions, OptionsError, options_from_form_data, parse_user_options


def test_empty_options_mean_defaults():
    assert parse_user_options({}) == AppOptions()
    assert parse_user_options(None) == AppOptions()


def test_known_fields_are_kept():
    opts = parse_user_options({"source": "home", "path": "apps/x/app.py", "profile": "small"})
    assert opts == AppOptions("home", "apps/x/app.py", "small")
    assert opts.to_dict() == {"source": "home", "path": "apps/x/app.py", "profile": "small"}


@pytest.mark.parametrize("raw, words", [
    ([], "JSON object"), ("x", "JSON object"), ({"gpu": "x"}, "Unknown option"),
    ({"image": "x"}, "applies to source \"image\" only"),
    ({"source": "svn"}, "Unknown source"), ({"source": ["home"]}, "Unknown source"),
    ({"source": "git"}, "needs 'repo'"),
    ({"source": "git", "repo": "http://github.com/a/b.git", "ref": "a" * 40}, "https://"),
    ({"source": "git", "repo": "https://tok:x@github.com/a/b.git", "ref": "a" * 40}, "credentials"),
    ({"source": "git", "repo": "https://github.com/a/b.git", "ref": "main"}, "full 40-character SHA"),
    ({"source": "git", "repo": "https://github.com/a/b.git"}, "full 40-character SHA"),
    ({"source": "image"}, "needs 'image'"),
    ({"source": "image", "image": "ghcr.io/example/apps/x"}, "tag or a digest"),
    ({"source": "image", "image": "ghcr.io/example/apps/x:latest"}, "other than 'latest'"),
    ({"source": "image", "image": "GHCR.io/$(x):1"}, "tag or a digest"),
    ({"path": 1}, "must be a string"), ({"profile": {}}, "must be a string"),
    ({"profile": "p" * 64}, "too long"), ({"path": "x" * 5000}, "too large"),
])
def test_bad_options_are_refused_with_a_reason(raw, words):
    with pytest.raises(OptionsError, match=words):
        parse_user_options(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from(["source", "path", "profile", "x", ""]), json_values, max_size=4))
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
    o = parse_user_options({"source": "git", "repo": "https://github.com/example/sales.git",
                            "ref": sha, "path": "dash/app.py"})
    assert (o.source, o.repo, o.ref, o.path) == ("git", "https://github.com/example/sales.git", sha, "dash/app.py")
    o = parse_user_options({"source": "image", "image": "ghcr.io/example/apps/alice-sales:1a2b3c"})
    assert (o.source, o.image) == ("image", "ghcr.io/example/apps/alice-sales:1a2b3c")
    digest = "ghcr.io/example/apps/x@sha256:" + "a" * 64
    assert parse_user_options({"source": "image", "image": digest}).image == digest
