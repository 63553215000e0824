"""Streaming calls, independent of the wire (see ``docs/streaming.md``).

:mod:`wirecall.streaming.model` holds the primitives every wire shares (what a transport may
import); :mod:`wirecall.streaming.handler` drives a streaming handler on the server side
(reached through :meth:`wirecall.Server.start_stream`, and not imported here, so that a
transport importing the model loads nothing of the server side). Users import from here.
"""

from . import model
from .model import *  # noqa: F403  (the names of model.__all__)

__all__ = list(model.__all__)
