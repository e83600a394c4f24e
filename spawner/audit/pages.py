"""The audit service's pages: the usage page (and its error page), in the hub's frame.

The pages are Jinja templates (``spawner/audit/templates/``, autoescaped, strict about
undefined names); this module shapes what they show: times a person reads ("2026-11-29 06:14
UTC", "3 min ago") with the exact instant in ``<time datetime>``, events in words (who shared
the app with whom, who stopped it, why), the owner's own visits apart from their viewers, and
the geometry of the daily bar chart.

The frame: the service renders the page itself (it holds the store and decides what the
reader may see; the hub would have to ask it for every row), in the hub's look. The browser
loads the hub's own stylesheet, favicon and logo from the hub's public URLs
(``<base_url>hub/static/…``, ``<base_url>hub/logo``: served by the hub to anyone, on the same
host as ``/services/audit/``, which the hub's ``subdomain_hook`` keeps on the hub's host), so
the Content-Security-Policy allows them as ``'self'`` and nothing else: no script runs on the
page. The top bar is the hub's markup (its Bootstrap classes), with the signed-in reader, Home
(back to the hub) and Logout. If the hub's stylesheet ever failed to load, the page would
still read: the service's own ``static/usage.css`` styles the tables and the chart.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from .events import EventError, parse_time
from .service import _Base, _narrow, token_reach

STATIC_DIR = Path(__file__).with_name("static")
# Only the hub's stylesheet, fonts, favicon and logo (same origin) and our own stylesheet; the
# stylesheet's icons are data: URIs. No script, no form, no frame around the page.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Every page's headers (its redirect to sign in included), and a page's type.
PAGE_HEADERS = {"Content-Security-Policy": CSP, "Referrer-Policy": "same-origin"}
HTML = ("Content-Type", "text/html; charset=utf-8")
NOSNIFF = ("X-Content-Type-Options", "nosniff")
DAYS = 14
RECENT = 50
BAR_WIDTH, BAR_GAP, CHART_HEIGHT = 12, 3, 60


@functools.cache
def _templates():
    """The service's pages (``spawner/audit/templates/``), autoescaped."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(
        loader=PackageLoader("spawner.audit", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


# ---- times ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Moment:
    """One instant as the page shows it."""

    iso: str  # for <time datetime>: 2026-11-29T06:14:03Z
    text: str  # what a person reads: 2026-11-29 06:14 UTC
    exact: str  # on hover: 2026-11-29 06:14:03 UTC
    ago: str  # 3 min ago


def ago(seconds: float) -> str:
    """How long ago, in the largest whole unit; a time up to a minute ahead (a sender's clock)
    is "just now"."""
    s = int(seconds)
    if s < 60:
        return "just now"
    if s < 3600:
        return f"{s // 60} min ago"
    if s < 86400:
        return f"{s // 3600} h ago"
    days = s // 86400
    return "1 day ago" if days == 1 else f"{days} days ago"


def moment(when: datetime | str | None, now: datetime) -> Moment | None:
    """``when`` (a UTC datetime, or an event's ISO time) as the page shows it; None for none."""
    if when is None:
        return None
    if isinstance(when, str):
        try:
            when = parse_time(when)
        except EventError:
            return Moment("", when, when, "")  # never stored (times are checked): shown as is
    when = when.astimezone(UTC)
    return Moment(
        iso=when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        text=when.strftime("%Y-%m-%d %H:%M UTC"),
        exact=when.strftime("%Y-%m-%d %H:%M:%S UTC"),
        ago=ago((now - when).total_seconds()),
    )


def duration(seconds) -> str:
    """A length of time in its two largest units: 45 s, 12 min, 2 h 5 min, 3 days 4 h."""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        hours, minutes = divmod(s // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(s // 3600, 24)
    return ("1 day" if days == 1 else f"{days} days") + (f" {hours} h" if hours else "")


# ---- events in words --------------------------------------------------------------------------
STOP_REASONS = {
    "user": "by its owner",
    "admin": "by an admin",
    "viewer": "by a viewer",
    "culler": "idle: no viewer for its idle timeout",
    "service": "by a service",
    "crash": "it crashed",
}


def _extra_words(extra: dict) -> str:
    """What an event's ``extra`` holds that its description did not say, as key: value."""
    parts = []
    for key in sorted(extra):
        value = extra[key]
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}: {text}")
    return " · ".join(parts)


def _share_target(extra: dict) -> tuple[str, set[str]]:
    if isinstance(extra.get("user"), str):
        return f"with {extra['user']}", {"user"}
    if isinstance(extra.get("group"), str):
        return f"with the group {extra['group']}", {"group"}
    return "", set()


def describe(ev: dict) -> tuple[str, str, str]:
    """(what happened, its details, the rest of ``extra``) for one event, in words."""
    kind = ev.get("type") or ""
    extra = ev.get("extra") if isinstance(ev.get("extra"), dict) else {}
    outcome, reason = ev.get("outcome"), ev.get("reason")
    used: set[str] = set()
    if kind == "authorize":
        what = {"allowed": "Let in", "refused": "Turned away"}.get(outcome, f"Sign-in: {outcome}")
        detail = ""
    elif kind == "session_start":
        what, detail = "Opened the app", ""
    elif kind == "session_end":
        what = "Left the app"
        detail = duration(ev["duration_s"]) if ev.get("duration_s") is not None else ""
        if reason and reason != "closed":
            detail = f"{detail}, {reason}" if detail else reason
    elif kind == "page_view":
        what, detail = "Viewed a page", ev.get("page") or ""
    elif kind == "app_start":
        what = {"refused": "Start refused", "failed": "Start failed"}.get(
            outcome, "Started the app"
        )
        detail = reason if outcome in ("refused", "failed") and reason else ""
        if not detail and ev.get("profile"):
            detail = f"size {ev['profile']}"
    elif kind == "app_stop":
        what = "App crashed" if reason == "crash" else "Stopped the app"
        detail = "" if reason == "crash" else STOP_REASONS.get(reason, reason or "")
    elif kind in ("share_granted", "share_revoked"):
        granted = kind == "share_granted"
        detail, used = _share_target(extra)
        if extra.get("via") == "link":
            what, used = "Joined through a share link", used | {"via"}
            detail = ""
        elif extra.get("link"):
            what = "Made a share link" if granted else "Revoked the share links"
            used = used | {"link"}
            if isinstance(extra.get("expires_in"), int):
                detail, used = f"expires in {duration(extra['expires_in'])}", used | {"expires_in"}
        else:
            what = "Shared the app" if granted else "Stopped sharing"
    elif kind == "app_deploy":
        version = ev.get("version")
        failed = outcome == "failed"
        what = "Deploy failed" if failed else f"Deployed {version}" if version else "Deployed"
        detail = (reason or "") if failed else ""
    elif kind == "app_activate":
        what = f"Made {ev.get('version')} active"
        if isinstance(extra.get("previous"), str):
            detail, used = f"instead of {extra['previous']}", {"previous"}
        else:
            detail = ""
    elif kind in ("app_secret_set", "app_secret_deleted"):
        what = "Set a secret" if kind == "app_secret_set" else "Deleted a secret"
        if isinstance(extra.get("secret"), str):  # its name; the value is never recorded
            detail, used = extra["secret"], {"secret"}
        else:
            detail = ""
    else:
        what, detail = kind, ""
    return what, detail, _extra_words({k: v for k, v in extra.items() if k not in used})


def event_row(ev: dict, me: str, now: datetime) -> dict:
    """One line of the recent events: when, which app, who (the viewer, or who acted) and
    whether it was the owner visiting their own app, what happened."""
    what, detail, rest = describe(ev)
    viewer = ev.get("viewer")
    own = bool(viewer) and viewer == ev.get("owner")
    return {
        "type": ev.get("type") or "",
        "when": moment(ev.get("time"), now),
        "owner": ev.get("owner") or "",
        "app": ev.get("app") or "",
        "who": viewer or ev.get("actor") or "",
        "own": ("your own visit" if viewer == me else "the owner’s own visit") if own else "",
        "what": what,
        "detail": detail,
        "extra": rest,
    }


# ---- the chart --------------------------------------------------------------------------------
def bar_chart(daily: list[tuple[str, int]], days: list[str]) -> dict | None:
    """The geometry of the daily bars for ``days`` (zeros included); None when no day in them
    has a page view. Every day with a view has a bar at least 1 pixel high."""
    counts = dict(daily)
    if not any(counts.get(d) for d in days):
        return None
    top = max(counts.get(d, 0) for d in days)
    bars = []
    for i, day in enumerate(days):
        n = counts.get(day, 0)
        height = max(1, round(CHART_HEIGHT * n / top)) if n else 0
        x = i * (BAR_WIDTH + BAR_GAP)
        bars.append({"x": x, "y": CHART_HEIGHT - height, "h": height, "day": day, "n": n})
    return {
        "bars": bars,
        "bar": BAR_WIDTH,
        "base": CHART_HEIGHT,
        "width": len(days) * (BAR_WIDTH + BAR_GAP),
        "height": CHART_HEIGHT + 16,
        "top": top,
        "first": days[0][5:],
        "last": days[-1][5:],
    }


# ---- the pages --------------------------------------------------------------------------------
def render_usage_page(
    me: str,
    everything: bool,
    summary: dict,
    recent: list[dict],
    days: int,
    prefix: str,
    only: tuple[str, str] | None = None,
    *,
    hub: str = "/hub/",
    now: datetime | None = None,
) -> str:
    """The usage page of reader ``me``: every app (``everything``), one app (``only``) or the
    reader's own apps; ``hub``: the hub's URL prefix (its pages, stylesheet and logo)."""
    now = datetime.now(UTC) if now is None else now
    today = now.date()
    day_list = [(today - timedelta(days=days - 1 - i)).isoformat() for i in range(days)]
    apps = [
        {
            "owner": owner,
            "app": app,
            **s,
            "last": moment(s["last"], now),
            "chart": bar_chart(summary["daily"].get((owner, app), []), day_list),
        }
        for (owner, app), s in sorted(summary["apps"].items())
    ]
    scope = (
        "all apps"
        if everything
        else f"the app {only[0]}/{only[1]}"
        if only
        else f"apps owned by {me}"
    )
    return (
        _templates()
        .get_template("usage.html")
        .render(
            me=me,
            scope=scope,
            everything=everything,
            days=days,
            apps=apps,
            events=[event_row(ev, me, now) for ev in recent],
            prefix=prefix,
            hub=hub,
        )
    )


def render_error_page(status: int, message: str, prefix: str, hub: str) -> str:
    return (
        _templates()
        .get_template("error.html")
        .render(me=None, status=status, message=message, prefix=prefix, hub=hub)
    )


class UsagePageHandler(HubOAuthenticated, _Base):
    """``/services/audit/``: per app, viewers' page views and distinct viewers by day, the
    owner's own visits apart, and the recent events, for what the reader may see."""

    def initialize(self):
        # HubOAuthenticated's own ``hub_auth`` (the singleton) would win over _Base's: use the
        # service's, as every other handler does (the same object outside of tests).
        self.hub_auth = self.settings["hub_auth"]

    def set_default_headers(self):
        for name, value in PAGE_HEADERS.items():
            self.set_header(name, value)

    async def get(self):
        model = await self.caller()
        if not model:
            self.redirect(self.get_login_url())  # the hub's OAuth, with state and PKCE
            return
        reach = token_reach(model)
        owners, only = (None, {}) if reach is None else _narrow(reach, {})
        since = datetime.now(UTC) - timedelta(days=DAYS)
        summary = await self.db(self.store.summary, owners=owners, since=since, app=only.get("app"))
        recent, _ = await self.db(self.store.query, owners=owners, limit=RECENT, **only)
        self.set_header(*HTML)
        self.finish(
            render_usage_page(
                model["name"],
                owners is None,
                summary,
                recent,
                DAYS,
                self.settings["prefix"],
                only=(only["owner"], only["app"]) if only else None,
                hub=self.settings["hub_prefix"],
            )
        )

    def write_error(self, status_code, **kwargs):
        """A person's page fails as a page in the frame, saying why, never as JSON."""
        message = self.error_message(status_code, **kwargs)
        self.set_header(*HTML)
        self.finish(
            render_error_page(
                status_code, message, self.settings["prefix"], self.settings["hub_prefix"]
            )
        )


class StaticHandler(web.StaticFileHandler):
    """The pages' own stylesheet (``spawner/audit/static/``), for anyone: it holds no data."""

    def set_default_headers(self):
        self.set_header(*NOSNIFF)
