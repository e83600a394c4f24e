"""The usage page's words, times and chart (spawner/audit/pages.py), exactly (for mutation
testing): times a person reads with the exact instant for machines, each event in words (who
shared the app with whom, who stopped it and why, what ``extra`` adds), the owner's own
visits told apart, the daily bars. test_audit_usage_page.py renders them on the page.
"""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from spawner.audit.pages import Moment, ago, bar_chart, describe, duration, event_row, moment

NOW = datetime(2026, 11, 29, 6, 20, 30, tzinfo=UTC)


# ---- times ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "seconds, words",
    [
        (-300, "just now"),  # a sender's clock a little ahead
        (0, "just now"),
        (59.9, "just now"),
        (60, "1 min ago"),
        (90.5, "1 min ago"),  # whole units, never "1.0 min"
        (3599, "59 min ago"),
        (3600, "1 h ago"),
        (86399, "23 h ago"),
        (86400, "1 day ago"),
        (172799, "1 day ago"),
        (172800, "2 days ago"),
    ],
)
def test_ago_says_how_long_ago_in_the_largest_whole_unit(seconds, words):
    assert ago(seconds) == words


@pytest.mark.parametrize(
    "seconds, words",
    [
        (0, "0 s"),
        (2.7, "2 s"),
        (59, "59 s"),
        (60, "1 min"),
        (3599, "59 min"),
        (3600, "1 h"),
        (3660, "1 h 1 min"),
        (86399, "23 h 59 min"),
        (86400, "1 day"),
        (90000, "1 day 1 h"),
        (172800, "2 days"),
        (7 * 86400 + 3 * 3600 + 59, "7 days 3 h"),
    ],
)
def test_duration_in_its_two_largest_units(seconds, words):
    assert duration(seconds) == words


def test_a_moment_is_readable_and_exact_without_microseconds():
    t = datetime(2026, 11, 29, 6, 14, 3, 123456, tzinfo=UTC)
    assert moment(t, NOW) == Moment(
        iso="2026-11-29T06:14:03Z",
        text="2026-11-29 06:14 UTC",
        exact="2026-11-29 06:14:03 UTC",
        ago="6 min ago",
    )
    # an event's time as stored (ISO, microseconds, Z) reads the same
    assert moment("2026-11-29T06:14:03.123456Z", NOW) == moment(t, NOW)
    # another zone's clock is shown in UTC
    east = datetime(2026, 11, 29, 9, 14, 3, tzinfo=timezone(timedelta(hours=3)))
    assert moment(east, NOW).iso == "2026-11-29T06:14:03Z"
    assert moment(east, NOW).text == "2026-11-29 06:14 UTC"


def test_a_moment_cannot_change():
    from dataclasses import FrozenInstanceError

    with pytest.raises(FrozenInstanceError):
        moment(NOW, NOW).text = "later"


def test_no_time_is_no_moment_and_an_unreadable_one_is_shown_as_is():
    assert moment(None, NOW) is None
    assert moment("soon", NOW) == Moment("", "soon", "soon", "")


# ---- events in words --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "event, words",
    [
        ({"type": "authorize", "outcome": "allowed"}, ("Let in", "", "")),
        ({"type": "authorize", "outcome": "refused"}, ("Turned away", "", "")),
        ({"type": "authorize", "outcome": "odd"}, ("Sign-in: odd", "", "")),
        ({"type": "session_start"}, ("Opened the app", "", "")),
        ({"type": "session_end", "duration_s": 754.2}, ("Left the app", "12 min", "")),
        ({"type": "session_end", "duration_s": 0}, ("Left the app", "0 s", "")),
        ({"type": "session_end", "reason": "closed"}, ("Left the app", "", "")),
        (
            {"type": "session_end", "duration_s": 61, "reason": "access withdrawn"},
            ("Left the app", "1 min, access withdrawn", ""),
        ),
        (
            {"type": "session_end", "reason": "access withdrawn"},
            ("Left the app", "access withdrawn", ""),
        ),
        ({"type": "page_view", "page": "Details"}, ("Viewed a page", "Details", "")),
        ({"type": "page_view"}, ("Viewed a page", "", "")),
        (
            {"type": "app_start", "outcome": "started", "reason": "user", "profile": "small"},
            ("Started the app", "size small", ""),
        ),
        ({"type": "app_start", "reason": "user"}, ("Started the app", "", "")),
        (
            {"type": "app_start", "outcome": "refused", "reason": "At most 3 apps at once."},
            ("Start refused", "At most 3 apps at once.", ""),
        ),
        (
            {"type": "app_start", "outcome": "failed", "reason": "exit 1", "profile": "small"},
            ("Start failed", "exit 1", ""),
        ),
        (
            {"type": "app_start", "outcome": "failed", "profile": "small"},
            ("Start failed", "size small", ""),
        ),
        ({"type": "app_stop", "reason": "user"}, ("Stopped the app", "by its owner", "")),
        ({"type": "app_stop", "reason": "admin"}, ("Stopped the app", "by an admin", "")),
        ({"type": "app_stop", "reason": "viewer"}, ("Stopped the app", "by a viewer", "")),
        (
            {"type": "app_stop", "reason": "culler"},
            ("Stopped the app", "idle: no viewer for its idle timeout", ""),
        ),
        ({"type": "app_stop", "reason": "service"}, ("Stopped the app", "by a service", "")),
        ({"type": "app_stop", "reason": "other"}, ("Stopped the app", "other", "")),
        ({"type": "app_stop"}, ("Stopped the app", "", "")),
        (
            {"type": "app_stop", "reason": "crash", "extra": {"exit_status": -9, "detail": "x"}},
            ("App crashed", "", "detail: x · exit_status: -9"),
        ),
        (
            {"type": "share_granted", "extra": {"user": "carol"}},
            ("Shared the app", "with carol", ""),
        ),
        (
            {"type": "share_granted", "extra": {"group": "sales"}},
            ("Shared the app", "with the group sales", ""),
        ),
        (
            {"type": "share_revoked", "extra": {"user": "carol"}},
            ("Stopped sharing", "with carol", ""),
        ),
        (
            {"type": "share_revoked", "extra": {"group": "sales"}},
            ("Stopped sharing", "with the group sales", ""),
        ),
        (
            {"type": "share_granted", "extra": {"link": True, "expires_in": 3600}},
            ("Made a share link", "expires in 1 h", ""),
        ),
        ({"type": "share_granted", "extra": {"link": True}}, ("Made a share link", "", "")),
        (
            {"type": "share_granted", "extra": {"link": True, "expires_in": "soon"}},
            ("Made a share link", "", "expires_in: soon"),
        ),
        (
            {"type": "share_revoked", "extra": {"link": True}},
            ("Revoked the share links", "", ""),
        ),
        (
            {"type": "share_granted", "extra": {"user": "carol", "via": "link"}},
            ("Joined through a share link", "", ""),
        ),
        ({"type": "share_granted", "extra": {}}, ("Shared the app", "", "")),
        (
            {"type": "share_granted", "extra": {"user": 7}},
            ("Shared the app", "", "user: 7"),
        ),
        ({"type": "app_deploy", "outcome": "deployed", "version": "v3"}, ("Deployed v3", "", "")),
        ({"type": "app_deploy", "outcome": "deployed"}, ("Deployed", "", "")),
        (
            {"type": "app_deploy", "outcome": "failed", "reason": "bad zip", "version": "v3"},
            ("Deploy failed", "bad zip", ""),
        ),
        ({"type": "app_deploy", "outcome": "failed"}, ("Deploy failed", "", "")),
        (
            {"type": "app_activate", "version": "v2", "extra": {"previous": "v3"}},
            ("Made v2 active", "instead of v3", ""),
        ),
        (
            {"type": "app_activate", "version": "v2", "extra": {"previous": 3}},
            ("Made v2 active", "", "previous: 3"),
        ),
        (
            {"type": "new_kind", "extra": {"b": [1, "é"], "a": "x"}},
            ("new_kind", "", 'a: x · b: [1, "é"]'),
        ),
        (
            {"type": "app_secret_set", "reason": "user", "extra": {"secret": "DB_URL"}},
            ("Set a secret", "DB_URL", ""),
        ),
        (
            {"type": "app_secret_deleted", "extra": {"secret": "DB_URL"}},
            ("Deleted a secret", "DB_URL", ""),
        ),
        ({"type": "app_secret_set", "extra": {"secret": 1}}, ("Set a secret", "", "secret: 1")),
        ({}, ("", "", "")),
        ({"type": "page_view", "page": "P", "extra": "not an object"}, ("Viewed a page", "P", "")),
    ],
)
def test_each_event_in_words_with_what_extra_says_beyond(event, words):
    assert describe(event) == words


def test_an_event_row_says_who_and_whether_it_was_the_owners_own_visit():
    base = {"time": "2026-11-29T06:14:03.5Z", "owner": "alice", "app": "demo"}
    visit = {**base, "type": "page_view", "viewer": "carol", "page": "Details"}
    assert event_row(visit, "alice", NOW) == {
        "type": "page_view",
        "when": moment("2026-11-29T06:14:03Z", NOW),
        "owner": "alice",
        "app": "demo",
        "who": "carol",
        "own": "",
        "what": "Viewed a page",
        "detail": "Details",
        "extra": "",
    }
    own = {**visit, "viewer": "alice"}
    assert event_row(own, "alice", NOW)["own"] == "your own visit"
    assert event_row(own, "admin", NOW)["own"] == "the owner’s own visit"
    share = {**base, "type": "share_granted", "actor": "alice", "extra": {"user": "carol"}}
    row = event_row(share, "alice", NOW)
    assert (row["who"], row["own"], row["what"], row["detail"]) == (
        "alice",
        "",
        "Shared the app",
        "with carol",
    )
    # the actor acting on their own app is not a visit
    assert event_row({**base, "type": "app_stop", "actor": "alice"}, "alice", NOW)["own"] == ""
    nothing = event_row({}, "alice", NOW)
    assert (nothing["type"], nothing["when"], nothing["owner"], nothing["who"]) == (
        "",
        None,
        "",
        "",
    )
    assert nothing["app"] == "" and nothing["own"] == ""  # no viewer is nobody's visit


# ---- the chart --------------------------------------------------------------------------------
def test_bar_chart_geometry_exactly():
    days = ["2026-11-20", "2026-11-21", "2026-11-22"]
    chart = bar_chart([("2026-11-20", 4), ("2026-11-22", 1), ("2026-01-01", 99)], days)
    assert chart == {
        "bars": [
            {"x": 0, "y": 0, "h": 60, "day": "2026-11-20", "n": 4},
            {"x": 15, "y": 60, "h": 0, "day": "2026-11-21", "n": 0},
            {"x": 30, "y": 45, "h": 15, "day": "2026-11-22", "n": 1},
        ],
        "bar": 12,
        "base": 60,
        "width": 45,
        "height": 76,
        "top": 4,
        "first": "11-20",
        "last": "11-22",
    }


def test_a_small_count_still_shows_a_bar():
    chart = bar_chart([("d1", 1000), ("d2", 1)], ["d1", "d2"])
    assert chart["bars"][1] == {"x": 15, "y": 59, "h": 1, "day": "d2", "n": 1}


def test_no_views_in_the_period_is_no_chart():
    assert bar_chart([("2020-01-01", 5)], ["2026-11-22"]) is None
    assert bar_chart([], ["2026-11-22"]) is None
