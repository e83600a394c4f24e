"""A small OAuth2 provider double on 127.0.0.1, shaped like Google's endpoints.

``/authorize`` consents at once for ``self.email`` and redirects back with a code,
``/token`` swaps the code for an access token, ``/userinfo`` returns the user's claims.
It lets the real ``GoogleOAuthenticator`` code run end to end with no network.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from urllib.parse import urlencode

import tornado.web
from tornado.httpserver import HTTPServer

from .hub import free_port


class OAuthProviderDouble:
    def __init__(self, domain: str = "example.com"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.domain = domain
        self.email = f"alice@{domain}"
        self.codes: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.requests: list[str] = []
        self._loop = None
        self._thread = None

    def _app(self):
        double = self

        class Authorize(tornado.web.RequestHandler):
            def get(self):
                double.requests.append("authorize")
                code = secrets.token_urlsafe(16)
                double.codes[code] = double.email
                target = self.get_argument("redirect_uri")
                self.redirect(
                    target
                    + "?"
                    + urlencode({"code": code, "state": self.get_argument("state", "")})
                )

        class Token(tornado.web.RequestHandler):
            def post(self):
                double.requests.append("token")
                email = double.codes.pop(self.get_argument("code"), None)
                if email is None:
                    raise tornado.web.HTTPError(400)
                token = secrets.token_urlsafe(16)
                double.tokens[token] = email
                self.write(
                    {
                        "access_token": token,
                        "token_type": "Bearer",
                        "expires_in": 3600,
                        "scope": "openid email",
                    }
                )

        class UserInfo(tornado.web.RequestHandler):
            def get(self):
                double.requests.append("userinfo")
                token = self.request.headers.get("Authorization", "").split(" ")[-1]
                email = double.tokens.get(token)
                if email is None:
                    raise tornado.web.HTTPError(401)
                self.set_header("Content-Type", "application/json")
                self.write(
                    json.dumps(
                        {
                            "email": email,
                            "verified_email": True,
                            "hd": double.domain,
                            "name": email.split("@")[0],
                        }
                    )
                )

        return tornado.web.Application(
            [(r"/authorize", Authorize), (r"/token", Token), (r"/userinfo", UserInfo)]
        )

    def start(self):
        ready = threading.Event()

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            server = HTTPServer(self._app())
            server.listen(self.port, address="127.0.0.1")
            ready.set()
            self._loop.run_forever()
            server.stop()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self):
        if self._loop:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
