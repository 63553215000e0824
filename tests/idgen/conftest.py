"""Real registries and PostgreSQL for the ID generator tests (session-scoped)."""

from support.etcd import etcd_server  # noqa: F401  (re-exported fixtures)
from support.postgres import postgres_cluster  # noqa: F401
from support.zookeeper import zookeeper_server  # noqa: F401
