"""The cluster layer ``Client`` calls through: today the per-endpoint connection pool;
resolvers, balancers and breakers will live here too."""

from .pool import Pool

__all__ = ["Pool"]
