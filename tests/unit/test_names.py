import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jupyterhub.slugs import is_valid_safe_slug

from spawner.names import (
    EntryPathError,
    MissingEntryError,
    app_name_problem,
    list_apps,
    resolve_entry,
)


@given(st.text(max_size=40))
@settings(max_examples=500)
def test_app_name_rule_agrees_with_jupyterhub_on_any_text(name):
    assert (app_name_problem(name) is None) == bool(is_valid_safe_slug(name))


@given(st.from_regex(r"[a-z][a-z0-9-]{0,35}[a-z0-9-]?", fullmatch=True))
def test_app_name_rule_agrees_with_jupyterhub_on_slug_like_names(name):
    assert (app_name_problem(name) is None) == bool(is_valid_safe_slug(name))


@pytest.mark.parametrize(
    "name, words",
    [
        ("", "required"),
        ("Sales", "lowercase"),
        ("1st", "start with a letter"),
        ("a--b", "'--'"),
        ("abc-", "end with"),
        ("a" * 31, "too long"),
        ("sales\n", "lowercase"),
    ],
)
def test_bad_app_names_get_a_reason(name, words):
    assert words in app_name_problem(name)


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    (h / "apps" / "demo").mkdir(parents=True)
    (h / "apps" / "demo" / "app.py").write_text("")
    (tmp_path / "outside.py").write_text("")
    return h


def test_entry_inside_home_resolves(home):
    assert resolve_entry(home, "apps/demo/app.py") == (home / "apps/demo/app.py").resolve()


@pytest.mark.parametrize(
    "path, words",
    [
        ("../outside.py", "'..'"),
        ("apps/../../outside.py", "'..'"),
        ("/etc/hosts.py", "absolute"),
        ("apps/demo/app.txt", ".py"),
        ("", "non-empty"),
        ("apps\\demo\\app.py", "'/'"),
        ("apps/demo/\x00app.py", "control"),
        ("a/" * 200 + "x.py", "too long"),
        ("apps/none/app.py", "No file"),
        (42, "non-empty"),
        (None, "non-empty"),
    ],
)
def test_unsafe_entries_are_refused_with_a_reason(home, path, words):
    with pytest.raises(EntryPathError) as e:
        resolve_entry(home, path)
    assert words in str(e.value)


def test_symlink_leaving_home_is_refused(home):
    (home / "apps" / "evil").mkdir()
    os.symlink(home.parent / "outside.py", home / "apps" / "evil" / "app.py")
    with pytest.raises(EntryPathError, match="outside your home"):
        resolve_entry(home, "apps/evil/app.py")


def test_symlinked_folder_leaving_home_is_refused(home):
    os.symlink(home.parent, home / "apps" / "up")
    with pytest.raises(EntryPathError, match="outside your home"):
        resolve_entry(home, "apps/up/outside.py")


def test_symlink_inside_home_is_allowed(home):
    os.symlink(home / "apps" / "demo" / "app.py", home / "apps" / "alias.py")
    assert resolve_entry(home, "apps/alias.py") == (home / "apps/demo/app.py").resolve()


def test_a_folder_is_not_an_entry(home):
    (home / "apps" / "dir.py").mkdir()
    with pytest.raises(EntryPathError, match="not a regular file"):
        resolve_entry(home, "apps/dir.py")


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_entry_string_resolves_inside_home_or_is_refused(tmp_path_factory, path):
    home = tmp_path_factory.getbasetemp() / "fuzz-home"
    (home / "apps" / "demo").mkdir(parents=True, exist_ok=True)
    (home / "apps" / "demo" / "app.py").touch()
    try:
        resolved = resolve_entry(home, path)
    except EntryPathError as e:
        assert str(e)
    else:
        assert home.resolve() in resolved.parents and resolved.suffix == ".py"


def test_list_apps_finds_valid_app_folders_only(home):
    (home / "apps" / "Bad_Name").mkdir()
    (home / "apps" / "Bad_Name" / "app.py").write_text("")
    (home / "apps" / "empty").mkdir()
    assert list_apps(home) == ["demo"]
    assert list_apps(home / "nope") == []


# The 30-character limit is JupyterHub's too (issue 18, survivor 3): exactly 30 is a name,
# 31 is not, whatever the characters.
@pytest.mark.parametrize(
    "name", ["a" * 30, "sales-forecast-by-region-q4-26", "a" + "-b" * 14 + "c"]
)
def test_a_name_of_exactly_30_characters_is_accepted(name):
    assert len(name) == 30
    assert app_name_problem(name) is None
    assert is_valid_safe_slug(name)


@pytest.mark.parametrize("name", ["a" * 31, "sales-forecast-by-region-q4-26x"])
def test_a_name_of_31_characters_is_refused_as_too_long(name):
    assert len(name) == 31
    assert app_name_problem(name) == f"App name {name!r} is too long: at most 30 characters."
    assert not is_valid_safe_slug(name)


def test_a_long_name_is_shown_cut_to_40_characters():
    assert (
        app_name_problem("a" * 40) == f"App name {'a' * 40!r} is too long: at most 30 characters."
    )
    assert (
        app_name_problem("b" * 41)
        == f"App name {'b' * 40 + '…'!r} is too long: at most 30 characters."
    )


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "An app name is required."),
        (None, "An app name is required."),
        (7, "An app name is required."),
        ("Sales", "App name 'Sales' may contain only lowercase letters a-z, digits and '-'."),
        ("1st", "App name '1st' must start with a letter."),
        ("-a", "App name '-a' must start with a letter."),
        ("abc-", "App name 'abc-' must end with a letter or a digit."),
        ("a--b", "App name 'a--b' must not contain '--'."),
    ],
)
def test_each_refusal_says_exactly_why(name, message):
    assert app_name_problem(name) == message


@pytest.mark.parametrize("name", ["a", "a1", "a-1", "x-y-z", "demo"])
def test_short_valid_names(name):
    assert app_name_problem(name) is None


def test_the_default_entry_is_under_apps():
    from spawner.names import default_entry

    assert default_entry("sales") == "apps/sales/app.py"


@pytest.mark.parametrize(
    "path, message",
    [
        ("   ", "The app's entry file must be a non-empty path relative to your home."),
        ("a" * 252 + ".py", None),
        ("a" * 253 + ".py", "The entry path is too long: at most 255 characters."),
        ("apps/a\x1fb.py", "The entry path contains control characters."),
        ("apps/a b.py", None),
        ("apps\\a.py", "Use '/' in the entry path, not '\\'."),
        ("/abs.py", "The entry path '/abs.py' must be relative to your home, not absolute."),
        ("a/../b.py", "The entry path 'a/../b.py' must not contain '..'."),
        ("a/..b.py", None),
        ("app.pyc", "The entry path 'app.pyc' must name a Python file ending in '.py'."),
    ],
)
def test_entry_path_shapes_one_by_one(path, message):
    from spawner.names import entry_path_shape_problem

    assert entry_path_shape_problem(path) == message


def test_refusals_of_resolve_entry_say_exactly_why(home):
    with pytest.raises(EntryPathError) as e:
        resolve_entry(home, "apps/none/app.py")
    where = f"{home.resolve()}/apps/none/app.py"
    assert str(e.value) == f"No file apps/none/app.py in your home ({where})."
    assert isinstance(e.value, MissingEntryError) and e.value.where == where
    (home / "apps" / "d.py").mkdir()
    with pytest.raises(EntryPathError) as e:
        resolve_entry(home, "apps/d.py")
    assert str(e.value) == "The entry path 'apps/d.py' is not a regular file."


def test_list_apps_is_sorted_and_skips_files_named_like_apps(home):
    for name in ("zeta", "alpha"):
        (home / "apps" / name).mkdir()
        (home / "apps" / name / "app.py").write_text("")
    (home / "apps" / "dir-app").mkdir()
    (home / "apps" / "dir-app" / "app.py").mkdir()  # a folder called app.py is no app
    (home / "apps" / "loose.py").write_text("")
    assert list_apps(home) == ["alpha", "demo", "zeta"]


def test_list_apps_of_a_home_whose_apps_is_a_file(tmp_path):
    (tmp_path / "apps").write_text("not a folder")
    assert list_apps(tmp_path) == []
