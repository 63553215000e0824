"""Helpers for business code talking to a coordinator: sagas, TCC, 2-phase messages, XA.

    txn = await TxnClient.connect("tcp://127.0.0.1:36789")
    await txn.saga(gid, [{"url": bank, "action": "Bank.TransOut",
                          "compensate": "Bank.TransOutCompensate", "payload": {...}}, ...],
                   wait=5)

    async with txn.tcc(gid) as tcc:                   # submit on success, abort on error
        await tcc.branch("01", bank, "Bank.TryOut", "Bank.ConfirmOut", "Bank.CancelOut", p)

    msg = txn.msg(gid, branches, query_prepared={"url": me, "method": "Shop.QueryPrepared"})
    await msg.do_and_submit(local_transaction)       # prepare, local tx, submit

A branch method receives the named parameters ``gid``, ``branch_id``, ``op`` and ``payload``.
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Callable
from typing import Any

import wirecall
from wirecall.errors import Aborted

__all__ = ["Msg", "Tcc", "TxnClient"]

BranchCall = dict[str, Any]


class TxnClient:
    """A coordinator's client (``Txn.*`` calls)."""

    def __init__(self, client: wirecall.Client) -> None:
        self.client = client

    @classmethod
    async def connect(cls, url: str, **options: Any) -> TxnClient:
        return cls(await wirecall.connect(url, **options))

    async def close(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> TxnClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def call(self, method: str, **params: Any) -> Any:
        return await self.client.invoke(f"Txn.{method}", params)

    async def new_gid(self) -> str:
        return str(await self.call("NewGid"))

    async def saga(self, gid: str, branches: list[BranchCall],
                   options: dict[str, Any] | None = None, wait: float = 0.0) -> dict[str, Any]:
        """Submit a saga; with ``wait``, answer when it is terminal (or ``wait`` passed)."""
        return dict(await self.call("Saga", gid=gid, branches=branches, options=options,
                                    wait=wait))

    async def query(self, gid: str) -> dict[str, Any]:
        return dict(await self.call("Query", gid=gid))

    async def wait(self, gid: str, timeout: float = 10.0) -> dict[str, Any]:
        return dict(await self.call("Wait", gid=gid, timeout=timeout))

    def tcc(self, gid: str, options: dict[str, Any] | None = None, *, wait: float = 0.0,
            mode: str = "tcc") -> Tcc:
        return Tcc(self, gid, options, wait, mode)

    def xa(self, gid: str, options: dict[str, Any] | None = None, *, wait: float = 0.0) -> Tcc:
        """XA/2PC: like TCC, branches prepare (``PREPARE TRANSACTION``) in their action and
        the coordinator commits or rolls them back (``wirecall.txn.xa`` on the branch side)."""
        return Tcc(self, gid, options, wait, "xa")

    def msg(self, gid: str, branches: list[BranchCall], *,
            query_prepared: dict[str, str] | None = None,
            options: dict[str, Any] | None = None) -> Msg:
        return Msg(self, gid, branches, query_prepared, options)


class Tcc:
    """A TCC (or XA) global transaction as an async context manager: ``Begin`` on entry,
    ``Submit`` on a clean exit, ``Abort`` when the block raises."""

    def __init__(self, txn: TxnClient, gid: str, options: dict[str, Any] | None, wait: float,
                 mode: str) -> None:
        self.txn, self.gid, self.options, self.wait, self.mode = txn, gid, options, wait, mode
        self.result: dict[str, Any] = {}
        self._clients: dict[str, wirecall.Client] = {}

    async def __aenter__(self) -> Tcc:
        await self.txn.call("Begin", gid=self.gid, mode=self.mode, options=self.options)
        return self

    async def branch(self, branch_id: str, url: str, first: str, forward: str, backward: str,
                     payload: Any = None, *, timeout: float | None = 10.0) -> Any:
        """Register the branch's second-phase methods, then call its first phase (TCC: try,
        XA: the local work that ends in ``PREPARE TRANSACTION``) and return its result."""
        ops = ({"confirm": forward, "cancel": backward} if self.mode == "tcc"
               else {"commit": forward, "rollback": backward})
        await self.txn.call("Register", gid=self.gid, branch_id=branch_id, url=url, ops=ops,
                            payload=payload)
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = await wirecall.connect(url)
        return await client.invoke(first, {"gid": self.gid, "branch_id": branch_id,
                                           "op": "try" if self.mode == "tcc" else "action",
                                           "payload": payload}, timeout=timeout)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: types.TracebackType | None) -> None:
        try:
            if exc is None:
                self.result = dict(await self.txn.call("Submit", gid=self.gid, wait=self.wait))
            else:
                self.result = dict(await self.txn.call("Abort", gid=self.gid, wait=self.wait))
        finally:
            for c in self._clients.values():
                await c.close()


class Msg:
    """A 2-phase message: ``prepare``, the local transaction, ``submit``. If the submitter
    dies between them, the coordinator asks ``query_prepared`` (see
    :func:`wirecall.txn.barrier.query_prepared`) whether the local transaction committed."""

    def __init__(self, txn: TxnClient, gid: str, branches: list[BranchCall],
                 query_prepared: dict[str, str] | None, options: dict[str, Any] | None) -> None:
        self.txn, self.gid, self.branches = txn, gid, branches
        self.options = dict(options or {})
        if query_prepared is not None:
            self.options["query_prepared"] = query_prepared

    async def prepare(self) -> dict[str, Any]:
        return dict(await self.txn.call("Prepare", gid=self.gid, branches=self.branches,
                                        options=self.options))

    async def submit(self, wait: float = 0.0) -> dict[str, Any]:
        return dict(await self.txn.call("Submit", gid=self.gid, wait=wait))

    async def abort(self) -> dict[str, Any]:
        return dict(await self.txn.call("Abort", gid=self.gid))

    async def do_and_submit(self, local: Callable[[], Awaitable[Any]], wait: float = 0.0
                            ) -> dict[str, Any]:
        """Prepare, run ``local`` (the local transaction, using
        :func:`wirecall.txn.barrier.msg_local`), then submit. ``local`` raising ABORTED
        aborts the message; any other error leaves it prepared for the check-back to settle
        (it may have committed before the error)."""
        await self.prepare()
        try:
            await local()
        except Aborted:
            await self.abort()
            raise
        return await self.submit(wait)
