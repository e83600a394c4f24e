"""Two small hub APIs about one app.

``GET /hub/api/streamlit/apps/{user}/{app}/status``: is it starting, ready or failed, with
the latest spawn step (the spawner's ``progress_snapshot()``). For whoever may start it (its
owner, admins, and viewers it is shared with ``start:servers``), so a viewer waking it sees
its progress without ``read:servers`` (JupyterHub's own progress API needs that). Nothing
about its output.

``GET /hub/api/streamlit/apps/{user}/{app}/output``: why did my app fail? (owners only)

Returns the last lines of the app server's output (Streamlit's stderr, the traceback, the
memory watchdog's reason) and ``problem``, the one sentence about the app's code in its latest
run (why the app server would not start it, e.g. "apps/x/app.py imports plotly, which the app
environment does not have", else the latest error its code raised for a viewer, who saw only
"This app has an error; its owner has been told"; ``null`` when there is none), to the app's
owner and to admins: whoever holds
``read:servers`` on that server. A viewer the app is shared with holds only ``access:servers``
and gets a 404, as does anyone else, so the answer does not even confirm the app exists.
"""

from __future__ import annotations

import json

from jupyterhub.apihandlers import APIHandler
from tornado import web


class _AppAPIHandler(APIHandler):
    def app_spawner(self, user_name: str, app: str, scopes: tuple[str, ...], refusal: str):
        """The app's spawner, if the caller holds one of ``scopes`` on it; else a 404 that
        does not even confirm the app exists."""
        target = f"{user_name}/{app}"
        if self.current_user is None or not any(
            self.has_scope(f"{s}!server={target}") for s in scopes
        ):
            raise web.HTTPError(404, refusal)
        user = self.find_user(user_name)
        if user is None or app not in user.orm_spawners:
            raise web.HTTPError(404, refusal)
        return user.spawners[app]


class AppOutputAPIHandler(_AppAPIHandler):
    async def get(self, user_name: str, app: str):
        spawner = self.app_spawner(
            user_name, app, ("read:servers",), "No such app, or it is not yours."
        )
        from .mixin import app_problem

        tail = getattr(spawner, "app_failure_details", None)
        output = tail() if callable(tail) else ""
        lines = output.splitlines()
        status = await spawner.poll() if spawner.active else getattr(spawner, "last_exit", None)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(
            json.dumps(
                {
                    "app": app,
                    "owner": user_name,
                    "running": bool(spawner.ready),
                    "exit_status": status,
                    "stop_reason": getattr(spawner, "stop_reason", "") or None,
                    "lines": lines,
                    "problem": app_problem(output),
                }
            )
        )


class AppStatusAPIHandler(_AppAPIHandler):
    async def get(self, user_name: str, app: str):
        spawner = self.app_spawner(
            user_name,
            app,
            ("start:servers", "read:servers"),
            "No such app, or you may not start it.",
        )
        progress = spawner.progress_snapshot()
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(
            json.dumps(
                {
                    "app": app,
                    "owner": user_name,
                    "ready": bool(spawner.ready),
                    "pending": spawner.pending,
                    "progress": progress.progress,
                    "message": progress.message,
                    "failed": progress.failed,
                }
            )
        )
