"""The spawner's options form (spawner/templates/, rendered by StreamlitSpawnerMixin): the
exact markup of each case, and that everything shown is escaped.

tests/integration/test_app_access.py and tests/security/test_hostile_app.py look for the same
form on a real hub's spawn page.
"""

from types import SimpleNamespace

import pytest

import spawner.mixin as mixin
from tests.unit.test_spawner_policy import AppSpawner, User

APPS = {"h1": ["demo", "a&b"], "h2": ["z<x>", "demo"], "empty": []}


@pytest.fixture(autouse=True)
def homes(monkeypatch):
    monkeypatch.setattr(mixin, "list_apps", lambda home: APPS[home])


def spawner(name, homes=(), profiles=(), stored=None, site="cross-site", method="GET"):
    class S(AppSpawner):
        def app_homes(self):
            return list(homes)

        def profile_choices(self):
            return list(profiles)

    sp = S(
        user=User("alice", []),
        orm_spawner=SimpleNamespace(name=name, user_options=stored, state=None, server=None),
    )
    sp.handler = SimpleNamespace(
        request=SimpleNamespace(method=method, headers={"Sec-Fetch-Site": site})
    )
    return sp


def form(sp):
    return sp.options_form(sp) if callable(sp.options_form) else sp.options_form


FIELD = '<div class="form-group">'
APP = '<label for="streamlit-app-path">App to run</label><select class="form-control" id="streamlit-app-path" name="path">'
SIZE = '<label for="streamlit-profile">Machine size</label><select class="form-control" id="streamlit-profile" name="profile">'


def test_the_apps_in_the_homes_with_this_one_selected_and_the_machine_sizes():
    sp = spawner("demo", ["h1", "h2"], profiles=[("small", "Small"), ("l&g", 'Large "8" <GB>')])
    assert form(sp) == (
        f"{FIELD}{APP}"
        '<option value="apps/a&amp;b/app.py">a&amp;b (apps/a&amp;b/app.py)</option>'
        '<option value="apps/demo/app.py" selected>demo (apps/demo/app.py)</option>'
        '<option value="apps/z&lt;x&gt;/app.py">z&lt;x&gt; (apps/z&lt;x&gt;/app.py)</option>'
        f"</select></div>{FIELD}{SIZE}"
        '<option value="small">Small</option>'
        '<option value="l&amp;g">Large &#34;8&#34; &lt;GB&gt;</option>'
        "</select></div>"
    )


def test_no_app_selected_and_no_sizes_to_pick():
    assert form(spawner("", ["h1"])) == (
        f"{FIELD}{APP}"
        '<option value="apps/a&amp;b/app.py">a&amp;b (apps/a&amp;b/app.py)</option>'
        '<option value="apps/demo/app.py">demo (apps/demo/app.py)</option>'
        f"</select></div>{FIELD}</div>"
    )


@pytest.mark.parametrize("name, entry", [("demo", "apps/demo/app.py"), ("", "apps/my-app/app.py")])
def test_a_home_without_apps_says_where_to_put_one(name, entry):
    assert form(spawner(name, ["empty"])) == (
        f'{FIELD}<p id="streamlit-app-path">You have no apps yet. Put one at '
        f"<code>{entry}</code> in your home.</p></div>{FIELD}</div>"
    )


def test_a_home_the_hub_cannot_see_asks_for_the_entry_file():
    assert form(spawner('x"y')) == (
        f'{FIELD}<label for="streamlit-app-path">Entry file in your home</label>'
        '<input class="form-control" id="streamlit-app-path" name="path" '
        'value="apps/x&#34;y/app.py"></div>'
        f"{FIELD}</div>"
    )
    assert form(spawner("", profiles=[("small", "Small")])) == (
        f'{FIELD}<label for="streamlit-app-path">Entry file in your home</label>'
        '<input class="form-control" id="streamlit-app-path" name="path" '
        'value="apps/my-app/app.py"></div>'
        f'{FIELD}{SIZE}<option value="small">Small</option></select></div>'
    )


def test_a_restart_from_elsewhere_asks_to_confirm_with_the_stored_options():
    sp = spawner('d"<&>', stored={"path": 'apps/x"<y>/app.py'})
    assert form(sp) == (
        '<input type="hidden" name="streamlit-restart" value="1">'
        '<p id="streamlit-restart">Start the app <strong>d&#34;&lt;&amp;&gt;</strong> again with '
        "its last settings (<code>apps/x&#34;&lt;y&gt;/app.py</code>)?</p>"
    )
    sp = spawner("demo", stored={"profile": "small"})  # no path stored: the default entry
    assert form(sp) == (
        '<input type="hidden" name="streamlit-restart" value="1">'
        '<p id="streamlit-restart">Start the app <strong>demo</strong> again with '
        "its last settings (<code>apps/demo/app.py</code>)?</p>"
    )


@pytest.mark.parametrize("site, method", [("same-origin", "GET"), ("none", "GET"), ("", "POST")])
def test_a_restart_from_the_hubs_own_pages_needs_no_form(site, method):
    sp = spawner("demo", ["h1"], stored={"path": "apps/x/app.py"}, site=site, method=method)
    assert form(sp) == ""
