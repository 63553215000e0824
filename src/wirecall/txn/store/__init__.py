"""Where the coordinator keeps its transactions: :func:`open_store` by URL.

``sqlite:///path/to/file.db`` (the default; stdlib ``sqlite3``, WAL, synchronous=FULL) or
``postgresql://user@host:port/db`` (psycopg 3, the ``txn-postgres`` extra): several
coordinators may share one PostgreSQL database and claim due transactions by lease.
"""

from __future__ import annotations

from .base import Store, open_store

__all__ = ["Store", "open_store"]
