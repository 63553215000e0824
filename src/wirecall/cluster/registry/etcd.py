"""The etcd v3 backend: etcd's own gRPC API (KV, Lease, Watch) through grpcio's asyncio channel.

``aetcd`` (pinned in the ``etcd`` extra) is used for its generated stubs of etcd's ``.proto``
files and nothing else: its watcher turns history compaction into an error that ends the
watch and yields events one by one, while a registry needs revision-exact resumption, a full
re-list when that is impossible, and batches. So the calls below are the raw RPCs.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from .base import (
    Lease,
    LeaseLost,
    Registry,
    RegistryError,
    RegistryUnavailable,
    WatchEvent,
    missing_extra,
    warn_watch_error,
)

try:
    import grpc
    from aetcd import rpc
except ImportError as exc:  # pragma: no cover - exercised by the missing-extra test
    raise missing_extra("etcd", "aetcd") from exc

__all__ = ["EtcdLease", "EtcdRegistry"]

OP_TIMEOUT = 5.0
_UNAVAILABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED}
# Ask etcd to end watches served by a member that lost its leader (clientv3 WithRequireLeader).
_REQUIRE_LEADER = (("hasleader", "true"),)


def _prefix_end(prefix: bytes) -> bytes:
    """The exclusive end of the key range sharing ``prefix`` (etcd's GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


def _error(exc: BaseException, what: str) -> RegistryError:
    if isinstance(exc, grpc.aio.AioRpcError):
        if exc.code() in _UNAVAILABLE:
            return RegistryUnavailable(f"etcd {what}: {exc.code().name} {exc.details()}")
        return RegistryError(f"etcd {what}: {exc.code().name} {exc.details()}")
    if isinstance(exc, TimeoutError):
        return RegistryUnavailable(f"etcd {what}: timed out")
    return RegistryError(f"etcd {what}: {exc}")


class EtcdLease(Lease):
    def __init__(self, registry: EtcdRegistry, lease_id: int, ttl: float) -> None:
        super().__init__(lease_id, ttl)
        self._registry = registry
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._keepalive_loop())

    async def keepalive_once(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(f"lease {self.id:x} is lost")
        sent = time.monotonic()
        call = self._registry.lease_stub.LeaseKeepAlive(timeout=OP_TIMEOUT)
        try:
            await call.write(rpc.LeaseKeepAliveRequest(ID=self.id))
            reply = await call.read()
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            raise _error(exc, "lease keepalive") from None
        finally:
            call.cancel()
        if reply is grpc.aio.EOF or reply.TTL <= 0:
            self.mark_lost("etcd no longer knows it (expired or revoked)")
            raise LeaseLost(f"lease {self.id:x} expired")
        # The registry restarted the TTL when it received the request, not when we read it.
        self.mark_renewed(sent)

    async def revoke(self) -> None:
        self.stop()
        if self.lost.is_set():
            return
        try:
            await self._registry.lease_stub.LeaseRevoke(
                rpc.LeaseRevokeRequest(ID=self.id), timeout=OP_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise _error(exc, "lease revoke") from None
        self.mark_lost("revoked", expected=True)

    def stop(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None


class EtcdRegistry(Registry):
    """``etcd://host:port``: one gRPC channel to one etcd member."""

    def __init__(self, host: str, port: int, *, url: str = "") -> None:
        self.url = url or f"etcd://{host}:{port}"
        self._channel = grpc.aio.insecure_channel(
            f"{host}:{port}",
            options=[("grpc.use_local_subchannel_pool", 1),
                     ("grpc.keepalive_time_ms", 5000), ("grpc.keepalive_timeout_ms", 3000),
                     ("grpc.keepalive_permit_without_calls", 1),
                     ("grpc.initial_reconnect_backoff_ms", 200),
                     ("grpc.max_reconnect_backoff_ms", 1000)],
        )
        self.kv = rpc.KVStub(self._channel)
        self.lease_stub = rpc.LeaseStub(self._channel)
        self.watch_stub = rpc.WatchStub(self._channel)
        self._leases: set[EtcdLease] = set()

    async def _unary(self, what: str, method: Callable[..., Any], request: Any) -> Any:
        try:
            # wait_for_ready: a registry restarting for a moment delays the call (up to
            # OP_TIMEOUT) instead of failing it at once.
            return await method(request, timeout=OP_TIMEOUT, wait_for_ready=True)
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            raise _error(exc, what) from None

    async def grant_lease(self, ttl: float) -> EtcdLease:
        if ttl <= 0:
            raise ValueError(f"lease ttl must be > 0, got {ttl}")
        reply = await self._unary("lease grant", self.lease_stub.LeaseGrant,
                                  rpc.LeaseGrantRequest(TTL=math.ceil(ttl)))
        if reply.error:
            raise RegistryError(f"etcd lease grant: {reply.error}")
        lease = EtcdLease(self, reply.ID, float(reply.TTL))
        self._leases.add(lease)
        lease.on_lost(lambda _: self._leases.discard(lease))
        lease.start()
        return lease

    @staticmethod
    def _lease_id(lease: Lease | None) -> int:
        if lease is None:
            return 0
        if lease.lost.is_set():
            raise LeaseLost(f"lease {lease.id:x} is lost")
        return lease.id

    async def put(self, key: str, value: bytes, *, lease: Lease | None = None) -> None:
        await self._unary("put", self.kv.Put, rpc.PutRequest(
            key=key.encode(), value=bytes(value), lease=self._lease_id(lease)))

    async def create(self, key: str, value: bytes, *, lease: Lease | None = None) -> bool:
        k = key.encode()
        txn = rpc.TxnRequest(
            compare=[rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, key=k,
                                 create_revision=0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(
                key=k, value=bytes(value), lease=self._lease_id(lease)))],
        )
        reply = await self._unary("create", self.kv.Txn, txn)
        return bool(reply.succeeded)

    async def get(self, key: str) -> bytes | None:
        reply = await self._unary("get", self.kv.Range, rpc.RangeRequest(key=key.encode()))
        return bytes(reply.kvs[0].value) if reply.kvs else None

    async def _range(self, prefix: str) -> tuple[dict[str, bytes], int]:
        p = prefix.encode()
        reply = await self._unary("get prefix", self.kv.Range,
                                  rpc.RangeRequest(key=p, range_end=_prefix_end(p)))
        items = {kv.key.decode(): bytes(kv.value) for kv in reply.kvs}
        return items, int(reply.header.revision)

    async def get_prefix(self, prefix: str) -> dict[str, bytes]:
        return (await self._range(prefix))[0]

    async def delete(self, key: str) -> None:
        await self._unary("delete", self.kv.DeleteRange,
                          rpc.DeleteRangeRequest(key=key.encode()))

    async def watch_prefix(
        self, prefix: str, *, on_error: Callable[[BaseException], None] | None = None
    ) -> AsyncIterator[list[WatchEvent]]:
        report = on_error or warn_watch_error(prefix)
        revision: int | None = None  # None: re-list (first time, compaction, cancel)
        backoff = 0.1
        while True:
            try:
                if revision is None:
                    items, revision = await self._range(prefix)
                    yield [WatchEvent("reset", prefix)] + [
                        WatchEvent("put", k, v) for k, v in sorted(items.items())]
                async for batch, seen in self._watch_from(prefix, revision):
                    backoff = 0.1
                    revision = seen
                    if batch is None:  # compacted or cancelled by etcd: re-list
                        revision = None
                        break
                    if batch:
                        yield batch
            except (RegistryError, grpc.aio.AioRpcError, TimeoutError) as exc:
                report(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _watch_from(
        self, prefix: str, revision: int
    ) -> AsyncIterator[tuple[list[WatchEvent] | None, int]]:
        p = prefix.encode()
        call = self.watch_stub.Watch(metadata=_REQUIRE_LEADER)
        try:
            await call.write(rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
                key=p, range_end=_prefix_end(p), start_revision=revision + 1,
                progress_notify=True)))
            while True:
                reply = await call.read()
                if reply is grpc.aio.EOF:
                    raise RegistryUnavailable("etcd watch stream ended")
                if reply.compact_revision or reply.canceled:
                    yield None, revision
                    return
                batch = [
                    WatchEvent("put", ev.kv.key.decode(), bytes(ev.kv.value)) if ev.type == 0
                    else WatchEvent("delete", ev.kv.key.decode())
                    for ev in reply.events
                ]
                if reply.events:  # resume after the last event we delivered
                    revision = max(revision, *(int(ev.kv.mod_revision) for ev in reply.events))
                elif not reply.created:  # a progress notification: nothing below it is missing
                    revision = max(revision, int(reply.header.revision))
                yield batch, revision
        finally:
            call.cancel()

    async def close(self) -> None:
        for lease in list(self._leases):
            lease.stop()
        self._leases.clear()
        with contextlib.suppress(Exception):
            await self._channel.close()
