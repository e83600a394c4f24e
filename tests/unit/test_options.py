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
    ([], "JSON object"), ("x", "JSON object"), ({"image": "x"}, "Unknown option"),
    ({"source": "git"}, "Unknown source"), ({"source": ["home"]}, "Unknown source"),
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
