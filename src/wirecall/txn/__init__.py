"""Distributed transactions: a coordinator (saga, TCC, 2-phase message, XA) served over
wirecall, the sub-transaction barrier for branch authors, and the transactional outbox.

    wirecall txn serve                       # the coordinator, SQLite store, tcp://127.0.0.1:36789

See docs/transactions.md. Submodules: :mod:`.model` and :mod:`.plan` (sans-IO),
:mod:`.coordinator` (the asyncio driver), :mod:`.service` (the ``Txn`` RPC API),
:mod:`.client` (saga / TCC / msg / XA helpers for business code), :mod:`.barrier`,
:mod:`.outbox`, :mod:`.store`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .coordinator import Coordinator
from .model import Mode, Options, Outcome, TxStatus
from .service import Txn

if TYPE_CHECKING:
    from wirecall.server import Server

__all__ = ["Coordinator", "Mode", "Options", "Outcome", "TxStatus", "Txn", "serve"]

DEFAULT_LISTEN = "tcp://127.0.0.1:36789"


async def serve(store_url: str | None = None, listen: tuple[str, ...] = (DEFAULT_LISTEN,), *,
                name: str | None = None, lease: float = 15.0, poll_interval: float = 1.0
                ) -> tuple[Server, Coordinator, list[str]]:
    """Start a coordinator and a server for it; returns ``(server, coordinator, urls)``."""
    from wirecall.server import Server

    from .store import open_store

    coordinator = Coordinator(open_store(store_url), name=name, lease=lease,
                              poll_interval=poll_interval)
    await coordinator.start()
    server = Server()
    server.register(Txn(coordinator))
    urls = await server.start(*listen)
    return server, coordinator, urls
