"""The cluster layer: targets with many endpoints (``static://``, ``dns://``, ``etcd://``,
``zk://``), registration, balancers, breakers, outlier ejection, retries, hedging, server-side
limits (docs/cluster.md). ``wirecall.connect(target)`` returns a
:class:`wirecall.cluster.client.ClusterClient` for a cluster target; ``Client`` calls one
endpoint through the per-endpoint :class:`Pool`.

This package imports only what ``Client`` needs and the policy vocabulary; the client, the
registries and the resolvers are imported from their modules (``wirecall.cluster.client``...),
since they are built on ``wirecall.client``.
"""

from .policy import HedgePolicy, MethodPolicy, RetryBudget, RetryPolicy, policy
from .pool import Pool

__all__ = ["HedgePolicy", "MethodPolicy", "Pool", "RetryBudget", "RetryPolicy", "policy"]
