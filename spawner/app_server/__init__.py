"""Runs inside each app server: Streamlit behind hub OAuth, in one process.

Importing this package must stay cheap: it must not import ``jupyterhub`` (which pulls in
SQLAlchemy, about +47 MB per app server). It speaks the hub's OAuth endpoints directly.
"""
