"""Fixtures for the transaction coordinator's tests: the session PostgreSQL cluster."""

from support.postgres import postgres_cluster  # noqa: F401  (the session fixture)
