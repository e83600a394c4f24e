"""The spawner's options form (spawner/templates/, rendered by StreamlitSpawnerMixin): the
exact markup of each case, and that everything shown is escaped.

tests/integration/test_app_access.py and tests/security/test_hostile_app.py look for the same
form on a real hub's spawn page.
"""

from types import SimpleNamespace

import pytest

from tests.unit.test_spawner_policy import AppSpawner, User


@pytest.fixture
def homes(tmp_path):
    """h1 holds demo and a&b, h2 holds demo and an escaping symlink, empty holds nothing."""
    for home, apps in {"h1": ["demo", "a&b"], "h2": ["demo"], "empty": []}.items():
        (tmp_path / home).mkdir()
        for a in apps:
            (tmp_path / home / "apps" / a).mkdir(parents=True)
            (tmp_path / home / "apps" / a / "app.py").write_text("")
    (tmp_path / "elsewhere.py").write_text("")
    (tmp_path / "h2" / "apps" / "out").mkdir()
    (tmp_path / "h2" / "apps" / "out" / "app.py").symlink_to(tmp_path / "elsewhere.py")
    return tmp_path


def spawner(name, homes=(), profiles=(), stored=None, site="cross-site", method="GET"):
    class S(AppSpawner):
        def app_homes(self):
            return [str(h) for h in homes]

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


FIELD = '<div class="form-group mb-3">'
SIZE = (
    '<label for="streamlit-profile" class="form-label">Size</label>'
    '<select class="form-select" id="streamlit-profile" name="profile">'
)


def test_an_app_with_its_own_code_shows_that_file_and_the_machine_sizes(homes):
    sp = spawner(
        "demo", [homes / "h1", homes / "h2"], profiles=[("small", "Small"), ("l&g", 'L "8" <GB>')]
    )
    assert form(sp) == (
        f'{FIELD}<p id="streamlit-app-path">Runs <code>apps/demo/app.py</code> from your home.</p>'
        f"</div>{FIELD}{SIZE}"
        '<option value="small">Small</option>'
        '<option value="l&amp;g">L &#34;8&#34; &lt;GB&gt;</option>'
        "</select></div>"
    )


def test_an_app_without_code_says_where_to_put_it_and_offers_no_other_apps_code(homes):
    # "charts" has no folder; demo and a&b in the same home are not offered as its code
    html = form(spawner("charts", [homes / "h1"], profiles=[("small", "Small")]))
    where = homes / "h1" / "apps" / "charts" / "app.py"
    assert html == (
        f'{FIELD}<div id="streamlit-app-path" class="alert alert-warning" '
        'data-streamlit-no-code="1"><p class="mb-1"><strong>“charts” has no code yet.</strong>'
        '</p><p class="mb-0">Put its Streamlit script in <code>apps/charts/app.py</code> in '
        f"your home: <code>{where}</code>. Then check again.</p></div></div>"
        f'{FIELD}{SIZE}<option value="small">Small</option></select></div>'
    )
    assert "apps/demo" not in html and "a&amp;b" not in html


def test_an_entry_that_leads_outside_the_home_says_why(homes):
    html = form(spawner("out", [homes / "h2"]))
    assert "leads outside your home" in html and "data-streamlit-no-code" in html


def test_a_home_the_hub_cannot_see_asks_for_the_entry_file():
    assert form(spawner('x"y')) == (
        f'{FIELD}<label for="streamlit-app-path" class="form-label">Entry file in your home'
        '</label><input class="form-control" id="streamlit-app-path" name="path" '
        'value="apps/x&#34;y/app.py" aria-describedby="streamlit-app-path-help">'
        '<div id="streamlit-app-path-help" class="form-text">This app’s own script: '
        "<code>apps/x&#34;y/app.py</code> unless you keep it elsewhere.</div></div>"
    )
    assert form(spawner("", profiles=[("small", "Small")])).endswith(
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
