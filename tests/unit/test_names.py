import os

import pytest
from hypothesis import given, settings, strategies as st
from jupyterhub.slugs import is_valid_safe_slug

from spawner.names import EntryPathError, app_name_problem, list_apps, resolve_entry


@given(st.text(max_size=40))
@settings(max_examples=500)
def test_app_name_rule_agrees_with_jupyterhub_on_any_text(name):
    assert (app_name_problem(name) is None) == bool(is_valid_safe_slug(name))


@given(st.from_regex(r"[a-z][a-z0-9-]{0,35}[a-z0-9-]?", fullmatch=True))
def test_app_name_rule_agrees_with_jupyterhub_on_slug_like_names(name):
    assert (app_name_problem(name) is None) == bool(is_valid_safe_slug(name))


@pytest.mark.parametrize("name, words", [
    ("", "required"), ("Sales", "lowercase"), ("1st", "start with a letter"),
    ("a--b", "'--'"), ("abc-", "end with"), ("a" * 31, "too long"), ("sales\n", "lowercase"),
])
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


@pytest.mark.parametrize("path, words", [
    ("../outside.py", "'..'"), ("apps/../../outside.py", "'..'"), ("/etc/hosts.py", "absolute"),
    ("apps/demo/app.txt", ".py"), ("", "non-empty"), ("apps\\demo\\app.py", "'/'"),
    ("apps/demo/\x00app.py", "control"), ("a/" * 200 + "x.py", "too long"),
    ("apps/none/app.py", "No file"), (42, "non-empty"), (None, "non-empty"),
])
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
