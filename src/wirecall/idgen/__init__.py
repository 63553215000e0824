"""Globally unique IDs (the tutorial's section 6): snowflake IDs from leased worker ids, and
Leaf's segment mode, served as the ``IdGen`` service on every wire (``docs/idgen.md``).

* :mod:`.snowflake`: the bit layout and the generator (``Layout``, ``Snowflake``);
* :mod:`.lease`: worker ids leased from etcd or ZooKeeper and fenced;
* :mod:`.state`: the last possible timestamp of each worker id, persisted locally;
* :mod:`.segment` and :mod:`.stores`: segment mode (double buffer, adaptive step;
  SQLite or PostgreSQL);
* :mod:`.service`: ``IdGen.Next(tag)``, ``IdGen.Batch(tag, n)``, ``IdGen.Decode(id)``;
* :mod:`.node`: one ID node (generator + lease + server), what ``wirecall idgen serve`` runs;
* :mod:`.client`: a client that prefetches batches and fails over across nodes.
"""

from .segment import SegmentAllocator, SegmentStore, SegmentUnavailable, UnknownTag
from .snowflake import PRESETS, Decoded, IssueRefused, Layout, Snowflake

__all__ = [
    "PRESETS",
    "Decoded",
    "IssueRefused",
    "Layout",
    "SegmentAllocator",
    "SegmentStore",
    "SegmentUnavailable",
    "Snowflake",
    "UnknownTag",
]
