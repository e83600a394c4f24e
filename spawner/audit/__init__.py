"""The audit trail: who opened which app, which page, when.

- ``events``: the event model, version 1, and its validation (pure).
- ``store``: the append-only store (SQLAlchemy Core; sqlite WAL by default, PostgreSQL by URL).

The hub-managed audit service that receives, keeps and serves events builds on these.
"""
