"""Real registries for the cluster tests (session-scoped: ZooKeeper's JVM starts once)."""

from support.etcd import etcd_server  # noqa: F401  (re-exported fixtures)
from support.zookeeper import zookeeper_server  # noqa: F401
