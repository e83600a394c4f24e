"""The audit trail: who opened which app, which page, when.

- ``events``       the event model and its validation, derived from ``audit-event.schema.json``
- ``store``        the append-only store (SQLAlchemy Core; sqlite WAL, or PostgreSQL by URL)
- ``client``       lossless delivery: a disk spool and a sender that resends with backoff
- ``hub_recorder`` the hub's half, inside the hub process
- ``service``      ``streamlit-hub-audit``: the hub-managed service at ``/services/audit/``
- ``pages``        its usage page, in the hub's frame (Jinja templates in ``templates/``)
- ``settings``     the service's settings
"""
