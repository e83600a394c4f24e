"""``streamlit-hub-audit``: the hub-managed audit service at ``/services/audit/``.

One job: receive audit events, keep them (append-only, deduplicated by id, retention in
days), and serve them to the people allowed to read them.

Who may write what (the caller is identified by the hub from its token, never by the body):

- an **app server**, with its own server token: only ``session_start``, ``page_view`` and
  ``session_end``, and only for its own app. The owner and app come from the token's
  ``!server=owner/app`` scopes; an event naming another owner or app is refused.
- the **hub** (the recorder in the hub process, with this service's own API token, or a
  service named in ``STREAMLIT_HUB_AUDIT_TRUSTED``): any event. ``authorize``, ``app_start``,
  ``app_stop`` and the share events come only from here, so an app cannot forge them.

Who may read: holders of the ``custom:audit:read`` scope (the ``audit-reader`` role; admins
in the default config) read everything; an app server's own token reads only its own app's
events; any other user token reads the events of its user's apps; a service without the
scope reads nothing.

The usage page at ``/services/audit/`` (and its error page) is in ``pages.py``, with
the same reach rules.

Bodies: any shape or depth of JSON gets a 4xx, never a 500; a non-finite number (``NaN``,
``Infinity``, ``1e999``) anywhere in an event is refused naming the field (strict JSON
readers of the export could not read it back).

Environment (the hub sets the ``JUPYTERHUB_*`` ones for a managed service):
``STREAMLIT_HUB_AUDIT_DB_URL`` (SQLAlchemy URL, default sqlite in the working directory),
``STREAMLIT_HUB_AUDIT_RETENTION_DAYS`` (default 365), ``STREAMLIT_HUB_AUDIT_TRUSTED``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler
from tornado import web
from tornado.ioloop import IOLoop, PeriodicCallback

from .events import TYPES, EventError, parse_event, parse_time
from .settings import AuditServiceSettings, ServiceConfigError
from .store import AuditStore, CursorError

log = logging.getLogger("streamlit_hub.audit.service")

READ_SCOPE = "custom:audit:read"
APP_SERVER_TYPES = frozenset({"session_start", "page_view", "session_end"})
MAX_BATCH = 5000
MAX_BODY = 8 * 1024 * 1024
EXPORT_CAP = 1_000_000
_SERVER_SCOPE = re.compile(r"^[a-z:]+!server=([^/]+)/(.+)$")
CSV_FIELDS = (
    "time",
    "type",
    "owner",
    "app",
    "viewer",
    "actor",
    "viewer_groups",
    "page",
    "session",
    "profile",
    "version",
    "outcome",
    "reason",
    "duration_s",
    "client",
    "user_agent",
    "extra",
    "id",
)
OPENAPI_FILE = Path(__file__).with_name("openapi.json")


def app_of_token(model: dict) -> tuple[str, str] | None:
    """(owner, app) when the token is one app server's own token, else None."""
    servers = {m.groups() for m in map(_SERVER_SCOPE.match, model.get("scopes") or []) if m}
    if len(servers) != 1:
        return None
    owner, app = next(iter(servers))
    return (owner, app) if owner == model.get("name") else None


def token_reach(model: dict) -> tuple[set[str], tuple[str, str] | None] | None:
    """What a token may read: None for everything (``custom:audit:read``); else (owners,
    app): the events of those owners' apps, narrowed to one ``(owner, app)`` for an app
    server's own token (it must not read the rest of its owner's trail)."""
    if READ_SCOPE in (model.get("scopes") or []):
        return None
    if model.get("kind", "user") != "user":
        return set(), None
    own_app = app_of_token(model)
    if own_app is not None:
        return {own_app[0]}, own_app
    return {model["name"]}, None


def _narrow(reach, args: dict) -> tuple[set[str] | None, dict] | None:
    """(owners, filters) for the store, with the token's reach applied to the asked filters;
    None when the asked filters and the reach cannot overlap (the answer is empty)."""
    if reach is None:
        return None, args
    owners, own_app = reach
    if own_app is None:
        return owners, args
    owner, app = own_app
    if args.get("owner", owner) != owner or args.get("app", app) != app:
        return None
    return owners, {**args, "owner": owner, "app": app}


def _parse_body(raw: bytes):
    """The JSON body, or HTTP 400 for anything that is not JSON, however deep or odd."""
    try:
        return json.loads(raw or b"null")
    except RecursionError:
        raise web.HTTPError(
            400, 'Body nests too deeply; send {"events": [ … ]} with plain events.'
        ) from None
    except ValueError:
        raise web.HTTPError(400, 'Body is not JSON; send {"events": [ … ]}.') from None


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = ",".join(value)
    elif isinstance(value, dict):  # ``extra``: its JSON, keys sorted
        value = json.dumps(value, sort_keys=True, ensure_ascii=False) if value else ""
    text = str(value)
    # Spreadsheet formula injection: a viewer name or page starting with = + - @ is data.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def emit_json_lines(events, stream) -> None:
    """Each newly stored event as one JSON line on stdout, for log collectors (Datadog, Cloud
    Logging): ``{"log_type": "streamlit_hub_audit", ...event}``. Resends are not repeated."""
    if not events or stream is None:
        return
    stream.write(
        "".join(
            json.dumps({"log_type": "streamlit_hub_audit", **e.to_json()}, ensure_ascii=False)
            + "\n"
            for e in events
        )
    )
    stream.flush()


class _Base(web.RequestHandler):
    @property
    def store(self) -> AuditStore:
        return self.settings["audit_store"]

    @property
    def hub_auth(self):
        return self.settings["hub_auth"]

    async def db(self, fn, *args, **kwargs):
        return await IOLoop.current().run_in_executor(
            self.settings["audit_executor"], lambda: fn(*args, **kwargs)
        )

    def error_message(self, status_code: int, **kwargs) -> str:
        """The sentence a failed request answers with (never a traceback)."""
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            return exc.log_message
        if status_code >= 500:
            return "The audit service failed; the error is in its log."
        return self._reason

    def write_error(self, status_code, **kwargs):
        message = self.error_message(status_code, **kwargs)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

    async def caller(self, *, header_only: bool = False) -> dict | None:
        if header_only:
            value = self.request.headers.get("Authorization", "")
            kind, _, token = value.partition(" ")
            if kind.lower() not in ("token", "bearer") or not token.strip():
                return None
            return await self.hub_auth.user_for_token(token.strip(), sync=False)
        return await self.hub_auth.get_user(self, sync=False)


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app instance)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.received = Counter(
            "streamlit_hub_audit_events_received",
            "Valid events received (resends included), by type.",
            ["type"],
            registry=self.registry,
        )
        self.stored = Counter(
            "streamlit_hub_audit_events_stored",
            "Events stored for the first time.",
            registry=self.registry,
        )
        self.rejected = Counter(
            "streamlit_hub_audit_events_rejected",
            "Events refused as malformed or forged.",
            registry=self.registry,
        )
        self.page_views = Counter(
            "streamlit_hub_audit_page_views",
            "Page views stored, by app.",
            ["owner", "app"],
            registry=self.registry,
        )
        self.lag = Histogram(
            "streamlit_hub_audit_delivery_lag_seconds",
            "Seconds from an event happening to the service storing it.",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, float("inf")),
            registry=self.registry,
        )

    def totals(self) -> dict:
        """Counts since the service started (``/api/stats``), read from the counters above."""

        def total(metric) -> int:
            return int(
                sum(
                    s.value
                    for m in metric.collect()
                    for s in m.samples
                    if s.name.endswith("_total")
                )
            )

        return {"received": total(self.received), "stored": total(self.stored)}

    def observe(self, good, new_ids, rejected: int) -> None:
        now = datetime.now(UTC)
        for e in good:
            self.received.labels(e.type).inc()
        for e in {e.id: e for e in good if e.id in new_ids}.values():
            self.stored.inc()
            self.lag.observe(max(0.0, (now - e.time).total_seconds()))
            if e.type == "page_view":
                self.page_views.labels(e.owner, e.app).inc()
        if rejected:
            self.rejected.inc(rejected)


class MetricsHandler(_Base):
    """Prometheus text format; for tokens with ``read:metrics`` or the audit read scope."""

    async def get(self):
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        model = await self.caller(header_only=True)
        if not model:
            raise web.HTTPError(401, "Scrape with a hub API token (read:metrics).")
        if not {"read:metrics", READ_SCOPE} & set(model.get("scopes") or []):
            raise web.HTTPError(403, "This token has neither read:metrics nor custom:audit:read.")
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.settings["metrics"].registry))


class HealthHandler(_Base):
    def get(self):
        self.finish({"status": "ok"})


class EventsHandler(_Base):
    async def post(self):
        """Ingest a batch: ``{"events": [...]}``. Answers what was stored and what was refused."""
        try:
            model = await self.caller(header_only=True)
        except web.HTTPError as e:
            raise web.HTTPError(503, "The hub could not check this token; retry later.") from e
        if not model:
            raise web.HTTPError(401, "Send events with a hub API token: Authorization: token …")
        trusted = model.get("kind") == "service" and model.get("name") in self.settings["trusted"]
        own_app = None if trusted else app_of_token(model)
        if not trusted and own_app is None:
            raise web.HTTPError(
                403,
                f"{model.get('kind', 'user')} {model.get('name')!r} may "
                "not write audit events: only an app server's own token or "
                "the hub may.",
            )
        if len(self.request.body) > MAX_BODY:
            raise web.HTTPError(413, f"Body over {MAX_BODY} bytes; send smaller batches.")
        body = _parse_body(self.request.body)
        raw_events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(raw_events, list):
            raise web.HTTPError(400, 'Expected a JSON object {"events": [ … ]}.')
        if len(raw_events) > MAX_BATCH:
            raise web.HTTPError(413, f"At most {MAX_BATCH} events per request.")
        good, rejected, forged = [], [], False
        for i, raw in enumerate(raw_events):
            if own_app is not None and isinstance(raw, dict):
                owner, app = own_app
                kind = raw.get("type")
                if not isinstance(kind, str) or kind not in APP_SERVER_TYPES:
                    forged = True
                    rejected.append(
                        {
                            "index": i,
                            "message": f"type: an app server may send only "
                            f"{', '.join(sorted(APP_SERVER_TYPES))}",
                        }
                    )
                    continue
                if raw.get("owner", owner) != owner or raw.get("app", app) != app:
                    forged = True
                    rejected.append(
                        {
                            "index": i,
                            "message": f"owner/app: this token belongs to "
                            f"{owner}/{app} and may write only its events",
                        }
                    )
                    continue
                raw = {**raw, "owner": owner, "app": app}
            try:
                good.append(parse_event(raw))
            except EventError as e:
                rejected.append({"index": i, "message": str(e)})
        if raw_events and not good:
            self.settings["metrics"].observe([], set(), len(rejected))
            log.warning(
                "refused a batch of %d events from %s %s: %s",
                len(raw_events),
                model.get("kind", "user"),
                model.get("name"),
                rejected[0]["message"],
            )
            self.set_status(403 if forged else 400)
            self.finish(
                {
                    "status": self.get_status(),
                    "stored": 0,
                    "rejected": rejected[:100],
                    "message": rejected[0]["message"],
                }
            )
            return
        new_ids = await self.db(self.store.add_new, good)
        stored = len(new_ids)
        emit_json_lines(
            [e for e in {e.id: e for e in good}.values() if e.id in new_ids],
            self.settings["event_stream"],
        )
        self.settings["metrics"].observe(good, new_ids, len(rejected))
        if rejected:
            log.warning(
                "refused %d of %d events from %s %s: %s",
                len(rejected),
                len(raw_events),
                model.get("kind", "user"),
                model.get("name"),
                rejected[0]["message"],
            )
        self.finish(
            {
                "received": len(good),
                "stored": stored,
                "duplicates": len(good) - stored,
                "rejected": rejected[:100],
            }
        )

    async def get(self):
        """Query, newest first: JSON pages (``next`` cursor), or a full CSV / JSON-lines export."""
        model = await self.caller()
        if not model:
            raise web.HTTPError(401, "Sign in through the hub, or send a hub API token.")
        args = self._filters()
        fmt = self.get_argument("format", "json")
        if fmt not in ("json", "csv", "jsonl"):
            raise web.HTTPError(400, "format: expected json, csv or jsonl")
        narrowed = _narrow(token_reach(model), args)
        owners, args = narrowed if narrowed is not None else (set(), args)
        if fmt == "json":
            limit = self._int("limit", 100, 1, 1000)
            try:
                events, nxt = await self.db(
                    self.store.query,
                    owners=owners,
                    limit=limit,
                    cursor=self.get_argument("next", None),
                    **args,
                )
            except CursorError as e:
                raise web.HTTPError(400, str(e)) from None
            self.finish({"events": events, "next": nxt})
            return
        await self._export(fmt, owners, args)

    async def _export(self, fmt, owners, args):
        self.set_header(
            "Content-Type",
            "text/csv; charset=utf-8" if fmt == "csv" else "application/jsonl; charset=utf-8",
        )
        self.set_header("Content-Disposition", f'attachment; filename="audit-events.{fmt}"')
        if fmt == "csv":
            buf = io.StringIO()
            csv.writer(buf).writerow(CSV_FIELDS)
            self.write(buf.getvalue())
        cursor, sent = None, 0
        while sent < EXPORT_CAP:
            events, cursor = await self.db(
                self.store.query, owners=owners, limit=1000, cursor=cursor, **args
            )
            buf = io.StringIO()
            writer = csv.writer(buf)
            for e in events:
                if fmt == "csv":
                    writer.writerow([_csv_cell(e.get(k)) for k in CSV_FIELDS])
                else:
                    buf.write(json.dumps(e, ensure_ascii=False) + "\n")
            self.write(buf.getvalue())
            await self.flush()
            sent += len(events)
            if cursor is None:
                break
        self.finish()

    def _int(self, name, default, low, high) -> int:
        raw = self.get_argument(name, None)
        if raw is None:
            return default
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise web.HTTPError(400, f"{name}: expected a whole number from {low} to {high}")
        return int(raw)

    def _filters(self) -> dict:
        out = {}
        for name in ("owner", "app", "viewer", "type"):
            value = self.get_argument(name, None)
            if value is not None:
                if not value or len(value) > 255:
                    raise web.HTTPError(400, f"{name}: expected 1 to 255 characters")
                out[name] = value
        if out.get("type") and out["type"] not in TYPES:
            raise web.HTTPError(400, f"type: expected one of {', '.join(TYPES)}")
        for name in ("since", "until"):
            value = self.get_argument(name, None)
            if value is not None:
                try:
                    out[name] = parse_time(value)
                except EventError as e:
                    raise web.HTTPError(400, str(e).replace("time:", f"{name}:", 1)) from None
        return out


class StatsHandler(_Base):
    def get(self):
        self.finish(self.settings["metrics"].totals())


class OpenAPIHandler(_Base):
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(OPENAPI_FILE.read_bytes())


def make_app(env=None, *, hub_auth=None, event_stream=None) -> tuple[web.Application, dict]:
    # Here, not at the top: the pages' handler is built on this module's _Base.
    from .pages import STATIC_DIR, StaticHandler, UsagePageHandler

    env = os.environ if env is None else env
    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX", "/services/audit/")
    if not prefix.endswith("/"):
        prefix += "/"
    # The hub's URL prefix (its pages, stylesheet and logo, for the pages' frame).
    hub_prefix = env.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub/"
    own = AuditServiceSettings(environ=env)
    db_url = own.db_url
    retention = own.retention_days
    trusted = {env.get("JUPYTERHUB_SERVICE_NAME", "audit"), *own.trusted}
    if hub_auth is None:
        # The singleton, so the OAuth callback handler and the usage page share it.
        hub_auth = HubOAuth.instance(cache_max_age=60)
    store = AuditStore(db_url)
    executor = ThreadPoolExecutor(
        1 if store.engine.dialect.name == "sqlite" else 4, thread_name_prefix="audit-db"
    )
    settings = {
        "audit_store": store,
        "hub_auth": hub_auth,
        "audit_executor": executor,
        "trusted": trusted,
        "prefix": prefix,
        "hub_prefix": hub_prefix,
        "retention_days": retention,
        "event_stream": event_stream,
        "metrics": Metrics(),
    }
    app = web.Application(
        [
            (prefix + "api/health", HealthHandler),
            (prefix + "api/events", EventsHandler),
            (prefix + "api/stats", StatsHandler),
            (prefix + "metrics", MetricsHandler),
            (prefix + "api/openapi.json", OpenAPIHandler),
            (prefix + "oauth_callback", HubOAuthCallbackHandler),
            (prefix + "static/(.*)", StaticHandler, {"path": str(STATIC_DIR)}),
            (prefix, UsagePageHandler),
        ],
        **settings,
        cookie_secret=os.urandom(32),
        log_function=_quiet_log,
    )
    return app, settings


def _quiet_log(handler):
    status = handler.get_status()
    if status >= 400 or handler.request.method != "POST":
        log.info(
            "%d %s %s %.1fms",
            status,
            handler.request.method,
            handler.request.path,
            1000 * handler.request.request_time(),
        )


def store_problem(db_url: str, error: Exception) -> str:
    """One sentence about an audit store the service cannot use, its password hidden."""
    from sqlalchemy.engine import make_url

    try:
        where = make_url(db_url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: say which setting, not its text
        where = "(unparsable URL)"
    cause = getattr(error, "orig", None) or error
    first = (str(cause).splitlines() or [""])[0]
    return (
        f"cannot use the audit store {where} (STREAMLIT_HUB_AUDIT_DB_URL): "
        f"{type(cause).__name__}: {first}"
    )


def main(argv=None) -> int:
    logging.basicConfig(level="INFO", format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    from sqlalchemy.exc import SQLAlchemyError

    try:
        own = AuditServiceSettings()
        app, settings = make_app(event_stream=sys.stdout)
    except (ServiceConfigError, ValueError) as e:
        print(f"streamlit-hub-audit: {e}", file=sys.stderr)
        return 2
    except SQLAlchemyError as e:
        print(f"streamlit-hub-audit: {store_problem(own.db_url, e)}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(own.log_level)  # STREAMLIT_HUB_LOG_LEVEL
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8082"))
    store = settings["audit_store"]

    def purge():
        n = store.purge_older_than(settings["retention_days"])
        if n:
            log.info(
                "retention: removed %d events older than %s days", n, settings["retention_days"]
            )

    async def run():
        try:
            await IOLoop.current().run_in_executor(settings["audit_executor"], purge)
        except SQLAlchemyError as e:
            raise ServiceConfigError(store_problem(own.db_url, e)) from None
        PeriodicCallback(
            lambda: IOLoop.current().run_in_executor(settings["audit_executor"], purge), 3600 * 1000
        ).start()
        bind = own.bind or url.hostname or "127.0.0.1"
        port = url.port or 8082
        try:
            app.listen(port, bind, xheaders=True)
        except OSError as e:
            raise ServiceConfigError(
                f"cannot listen on {bind}:{port} (the hub's STREAMLIT_HUB_AUDIT_PORT): "
                f"{e.strerror or e}"
            ) from None
        log.info(
            "audit service on %s (store %s, retention %s days)",
            url.geturl(),
            store.engine.url.render_as_string(hide_password=True),
            settings["retention_days"],
        )
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    except ServiceConfigError as e:
        print(f"streamlit-hub-audit: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
