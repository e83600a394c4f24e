"""Runs inside each app server: Streamlit behind hub OAuth, in one process.

Importing this package must stay cheap: it must not import ``jupyterhub`` (which pulls in
SQLAlchemy, about +47 MB per app server). It speaks the hub's OAuth endpoints directly.

- ``launcher``       ``streamlit-hub-app``: reads the settings, starts Streamlit behind the layer
- ``settings``       what an app server reads from its environment, once
- ``auth``           the ASGI middleware: OAuth with the hub, every request and websocket checked
- ``scopes``         does a token's scope list grant access to this app? (pure)
- ``hub_client``     the few hub API calls an app server makes
- ``activity``       activity posted only when viewers used the app
- ``audit_sessions`` the app server's half of the audit trail (sessions, page views)
- ``workers``        several Streamlit worker processes behind the one auth layer (the front)
- ``worker``         one such worker process: Streamlit without auth, on a private Unix socket
- ``healthcheck``    exit 0 if the app server answers HTTP (container health checks)
- ``published``      Kubernetes: fetch, verify and extract the published version a pod runs,
                     and build its environment
"""
