"""The ZooKeeper backend, on kazoo (threaded): every blocking kazoo call runs in a worker thread
(``asyncio.to_thread``) and kazoo's watch/state callbacks are handed to the event loop with
``call_soon_threadsafe``, so no event-loop thread ever waits on ZooKeeper.

Keys map to znodes: ``a/b/c`` is ``/a/b/c`` (parents are created as persistent nodes). A
lease is a ZooKeeper session of its own (its session timeout is the ttl: the server must allow
it, ``minSessionTimeout``..``maxSessionTimeout``, by default 2..20 ticks); keys written with a
lease are ephemeral nodes of that session. ``get_prefix``/``watch_prefix`` read the tree below
the prefix's parent node, keeping nodes whose path starts with the prefix and that hold data
or have no children (pure directory nodes are not keys). A watch re-reads that tree whenever
ZooKeeper notifies a change (one-shot watches re-armed by the read) or the connection comes
back, and reports the difference; so a new session, a lost notification or a restarted
server all end in an exact picture.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    from kazoo.client import KazooClient, KazooState
    from kazoo.exceptions import (
        ConnectionLoss,
        KazooException,
        NodeExistsError,
        NoNodeError,
        NotEmptyError,
        SessionExpiredError,
    )
    from kazoo.handlers.threading import KazooTimeoutError
except ImportError as exc:  # pragma: no cover - exercised by the missing-extra test
    raise missing_extra("zookeeper", "kazoo") from exc

__all__ = ["ZkLease", "ZkRegistry"]

OP_TIMEOUT = 5.0
MAIN_SESSION_TIMEOUT = 10.0


def _path(key: str) -> str:
    key = key.strip("/")
    if not key:
        raise ValueError("empty registry key")
    return "/" + key


def _error(exc: BaseException, what: str) -> RegistryError:
    if isinstance(exc, (ConnectionLoss, SessionExpiredError, KazooTimeoutError, TimeoutError)):
        return RegistryUnavailable(f"zookeeper {what}: {type(exc).__name__}")
    return RegistryError(f"zookeeper {what}: {type(exc).__name__} {exc}")


async def _call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), OP_TIMEOUT + 1)
    except (KazooException, KazooTimeoutError, TimeoutError) as exc:
        raise _error(exc, what) from None


def _new_client(hosts: str, timeout: float) -> Any:
    return KazooClient(hosts=hosts, timeout=timeout, connection_retry={"max_tries": -1,
                       "delay": 0.1, "max_delay": 1.0}, command_retry=None)


class ZkLease(Lease):
    """A ZooKeeper session: lost when the session expires (or is closed by ``revoke``)."""

    def __init__(self, client: Any, ttl: float) -> None:
        super().__init__(0, ttl)
        self.client = client
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        self.revoking = False

    async def start(self) -> None:
        await _call("session start", self.client.start, OP_TIMEOUT)
        self.id = int(self.client.client_id[0])
        self.mark_renewed()
        self.client.add_listener(self._on_state)
        self._task = self._loop.create_task(self._keepalive_loop())

    def _on_state(self, state: str) -> None:  # kazoo thread
        if state == KazooState.LOST and not self.revoking:
            self._loop.call_soon_threadsafe(self.mark_lost, "ZooKeeper session expired")

    async def keepalive_once(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(f"session {self.id:x} is lost")
        sent = time.monotonic()
        try:
            await _call("session ping",
                        lambda: self.client.exists_async("/").get(timeout=OP_TIMEOUT))
        except RegistryError:
            if self.client.client_state == "CLOSED":
                self.mark_lost("session closed")
                raise LeaseLost(f"session {self.id:x} is lost") from None
            raise
        self.mark_renewed(sent)

    async def revoke(self) -> None:
        self.revoking = True
        if self._task is not None:
            self._task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.client.stop)
        await asyncio.to_thread(self.client.close)
        self.mark_lost("revoked", expected=True)


class ZkRegistry(Registry):
    """``zk://host:port``: one kazoo session for plain keys, one more per lease."""

    def __init__(self, host: str, port: int, *, url: str = "") -> None:
        self.url = url or f"zk://{host}:{port}"
        self._hosts = f"{host}:{port}"
        self._client = _new_client(self._hosts, MAIN_SESSION_TIMEOUT)
        self._started = False
        self._start_lock = asyncio.Lock()
        self._leases: set[ZkLease] = set()

    async def _main(self) -> Any:
        if not self._started:
            async with self._start_lock:
                if not self._started:
                    await _call("connect", self._client.start, OP_TIMEOUT)
                    self._started = True
        return self._client

    def _session_of(self, lease: Lease | None) -> Any:
        if lease is None:
            return None
        if not isinstance(lease, ZkLease):
            raise TypeError("a ZooKeeper key needs a ZooKeeper lease")
        if lease.lost.is_set():
            raise LeaseLost(f"session {lease.id:x} is lost")
        return lease.client

    async def grant_lease(self, ttl: float) -> ZkLease:
        if ttl <= 0:
            raise ValueError(f"lease ttl must be > 0, got {ttl}")
        lease = ZkLease(_new_client(self._hosts, ttl), ttl)
        await lease.start()
        self._leases.add(lease)
        lease.on_lost(lambda _: self._leases.discard(lease))
        return lease

    async def put(self, key: str, value: bytes, *, lease: Lease | None = None) -> None:
        session = self._session_of(lease)
        client = session or await self._main()
        path = _path(key)

        def do() -> None:
            try:
                client.set_async(path, bytes(value)).get(timeout=OP_TIMEOUT)
            except NoNodeError:
                try:
                    client.create_async(path, bytes(value), ephemeral=session is not None,
                                        makepath=True).get(timeout=OP_TIMEOUT)
                except NodeExistsError:
                    client.set_async(path, bytes(value)).get(timeout=OP_TIMEOUT)
        await _call("put", do)

    async def create(self, key: str, value: bytes, *, lease: Lease | None = None) -> bool:
        session = self._session_of(lease)
        client = session or await self._main()

        def do() -> bool:
            try:
                client.create_async(_path(key), bytes(value), ephemeral=session is not None,
                                    makepath=True).get(timeout=OP_TIMEOUT)
            except NodeExistsError:
                return False
            return True
        return bool(await _call("create", do))

    async def get(self, key: str) -> bytes | None:
        client = await self._main()

        def do() -> bytes | None:
            try:
                return bytes(client.get_async(_path(key)).get(timeout=OP_TIMEOUT)[0])
            except NoNodeError:
                return None
        result: bytes | None = await _call("get", do)
        return result

    def _read_tree(self, prefix: str, on_change: Callable[..., None] | None) -> dict[str, bytes]:
        """(worker thread) keys under ``prefix``; arms one-shot watches when asked."""
        client = self._client
        stripped = prefix.strip("/")
        parent = "/" + stripped.rpartition("/")[0] if prefix.strip("/") else "/"
        full = "/" + stripped if stripped else "/"
        if prefix.endswith("/") and stripped:
            parent = full
        out: dict[str, bytes] = {}

        def walk(path: str) -> None:
            try:
                children = client.get_children_async(path, watch=on_change).get(timeout=OP_TIMEOUT)
            except NoNodeError:
                if on_change is not None:
                    client.exists_async(path, watch=on_change).get(timeout=OP_TIMEOUT)
                return
            for name in children:
                child = path.rstrip("/") + "/" + name
                if not (child.startswith(full) or full.startswith(child)):
                    continue
                try:
                    data, stat = client.get_async(child, watch=on_change).get(timeout=OP_TIMEOUT)
                except NoNodeError:
                    continue
                if child.startswith(full) and (data or stat.numChildren == 0):
                    out[child[1:]] = bytes(data)
                if stat.numChildren:
                    walk(child)
        walk(parent)
        return out

    async def get_prefix(self, prefix: str) -> dict[str, bytes]:
        await self._main()
        result: dict[str, bytes] = await _call("get prefix", self._read_tree, prefix, None)
        return result

    async def delete(self, key: str) -> None:
        client = await self._main()

        def do() -> None:
            with contextlib.suppress(NoNodeError):
                client.delete_async(_path(key)).get(timeout=OP_TIMEOUT)
        try:
            await _call("delete", do)
        except RegistryError as exc:
            if isinstance(exc.__context__, NotEmptyError):
                raise RegistryError(f"zookeeper delete {key!r}: it has children") from None
            raise

    async def watch_prefix(
        self, prefix: str, *, on_error: Callable[[BaseException], None] | None = None
    ) -> AsyncIterator[list[WatchEvent]]:
        report = on_error or warn_watch_error(prefix)
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def poke(*_: Any) -> None:  # kazoo thread: a watch fired or the connection changed
            loop.call_soon_threadsafe(changed.set)

        known: dict[str, bytes] | None = None
        backoff = 0.1
        try:
            self._client.add_listener(poke)
            while True:
                changed.clear()
                try:
                    await self._main()
                    current = await _call("watch", self._read_tree, prefix, poke)
                except RegistryError as exc:
                    report(exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                backoff = 0.1
                if known is None:
                    yield [WatchEvent("reset", prefix)] + [
                        WatchEvent("put", k, v) for k, v in sorted(current.items())]
                else:
                    batch = [WatchEvent("delete", k) for k in sorted(known.keys() - current)]
                    batch += [WatchEvent("put", k, v) for k, v in sorted(current.items())
                              if known.get(k) != v]
                    if batch:
                        yield batch
                known = current
                await changed.wait()
        finally:
            self._client.remove_listener(poke)

    async def close(self) -> None:
        for lease in list(self._leases):
            with contextlib.suppress(Exception):
                await lease.revoke()
        self._leases.clear()
        if self._started:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._client.stop)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._client.close)
            self._started = False
