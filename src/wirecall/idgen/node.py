"""One ID node: a generator (snowflake with a static or leased worker id, or segment mode),
the ``IdGen`` service and its listeners. What ``wirecall idgen serve`` runs.

    node = IdNode(NodeConfig(listen=["tcp://127.0.0.1:0"], registry="etcd://127.0.0.1:2379"))
    urls = await node.start()
    ...
    await node.close()        # stop issuing, drain the calls, give the worker id back

Startup prints (``on_event``) ``worker N leased ...`` / ``segment store ...`` before the
listeners open, so a process supervisor (or a test) sees which id the node holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wirecall.server import Server

from .lease import WorkerLease
from .segment import SegmentAllocator, SegmentStore
from .service import SegmentIdGen, SnowflakeIdGen, ThreadedSnowflakeIdGen, register
from .snowflake import Layout, Snowflake
from .state import LocalState
from .stores import open_store

__all__ = ["CLOCK_OFFSET_ENV", "IdNode", "NodeConfig", "default_data_dir"]

log = logging.getLogger("wirecall.idgen.node")

#: the node's clock offset in milliseconds when ``--clock-offset-ms`` is not given (tests)
CLOCK_OFFSET_ENV = "WIRECALL_IDGEN_CLOCK_OFFSET_MS"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "wirecall" / "idgen"


@dataclass
class NodeConfig:
    """Everything a node needs. Snowflake mode: ``worker_id`` (static) or ``registry``
    (leased); segment mode: ``store`` (``sqlite:///path`` or ``postgresql://...``)."""

    listen: list[str] = field(default_factory=lambda: ["tcp://127.0.0.1:7070"])
    worker_id: int | None = None
    registry: str | None = None
    store: str | None = None
    #: segment tags to create if absent: (tag, first id, step)
    tags: list[tuple[str, int, int]] = field(default_factory=list)
    layout: Layout = field(default_factory=Layout)
    prefix: str = "/wirecall/idgen/default"
    ttl: float = 6.0
    margin: float | None = None
    max_workers: int | None = None
    acquire_timeout: float | None = None
    clock_offset_ms: int = 0
    max_backward_ms: int = 5
    data_dir: Path | None = None
    #: register the listeners in etcd/ZooKeeper under ``service`` (clients find the nodes
    #: with ``IdClient.open("etcd://host:port/<service>")``)
    register: str | None = None
    service: str = "idgen"
    segment_options: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        modes = [x is not None for x in (self.worker_id, self.registry, self.store)]
        if sum(modes) != 1:
            raise ValueError("choose one of a static worker id, a registry (leased worker "
                             "ids) or a segment store")
        if self.tags and self.store is None:
            raise ValueError("segment tags need a segment store")
        if self.worker_id is not None and not 0 <= self.worker_id <= self.layout.max_worker:
            raise ValueError(f"worker id {self.worker_id} outside 0..{self.layout.max_worker}")


class IdNode:
    """A running ID node (see the module docstring)."""

    def __init__(self, config: NodeConfig, *, server: Server | None = None,
                 on_event: Callable[[str], None] | None = None) -> None:
        config.check()
        self.config = config
        self.server = server or Server()
        self.on_event = on_event or (lambda line: log.info("%s", line))
        self.lease: WorkerLease | None = None
        self.registry: Any = None
        self.store: SegmentStore | None = None
        self.allocator: SegmentAllocator | None = None
        self.service: SnowflakeIdGen | SegmentIdGen | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._settle: Callable[[], None] | None = None

    def _state(self) -> LocalState:
        d = self.config.data_dir or default_data_dir()
        return LocalState(Path(d) / "idgen-state.json")

    async def start(self) -> list[str]:
        cfg = self.config
        if cfg.store is not None:
            self.service = await self._segment_service()
        else:
            gen = await (self._leased() if cfg.registry else self._static())
            await self._wait_for_floor(gen)
            cls = SnowflakeIdGen if cfg.layout.unit_ms <= 10 else ThreadedSnowflakeIdGen
            self.service = cls(gen)
        register(self.server, self.service)
        urls = await self.server.start(*cfg.listen)
        if cfg.register:
            await self.server.register_in(cfg.register, cfg.service)
            self.on_event(f"registered as {cfg.service!r} in {cfg.register}")
        return urls

    async def _wait_for_floor(self, gen: Snowflake) -> None:
        """After a crash the floor (the reserved horizon) is up to one ttl ahead: wait that
        out before listening. Further ahead (the clock was set back) the node listens and
        refuses with UNAVAILABLE until its clock passes it."""
        ahead = gen.last_ms - gen.now_ms()
        if 0 < ahead <= self.config.ttl * 1000 + 1000:
            self.on_event(f"waiting {ahead} ms for the clock to pass the last possible "
                          "timestamp of this worker id")
            await asyncio.sleep(ahead / 1000 + gen.layout.unit_ms / 1000)
        elif ahead > 0:
            self.on_event(f"clock is {ahead} ms behind this worker id's last possible "
                          "timestamp: refusing (UNAVAILABLE) until it passes")

    async def _segment_service(self) -> SegmentIdGen:
        assert self.config.store is not None
        self.store = open_store(self.config.store)
        for tag, start, step in self.config.tags:
            await self.store.create_tag(tag, start=start, step=step)
        self.allocator = SegmentAllocator(self.store, **self.config.segment_options)
        tags = await self.allocator.preload()
        self.on_event(f"segment store {self.config.store.split('@')[-1]}: tags {tags}")
        return SegmentIdGen(self.allocator)

    async def _leased(self) -> Snowflake:
        from wirecall.cluster.registry import open_registry

        cfg = self.config
        assert cfg.registry is not None
        self.registry = open_registry(cfg.registry)
        self.lease = WorkerLease(
            self.registry, layout=cfg.layout, prefix=cfg.prefix, ttl=cfg.ttl,
            margin=cfg.margin, max_workers=cfg.max_workers, state=self._state(),
            clock_offset_ms=cfg.clock_offset_ms, max_backward_ms=cfg.max_backward_ms,
            on_generator=self._swap)
        gen = await self.lease.acquire(cfg.acquire_timeout)
        self.on_event(f"worker {gen.worker_id} leased (floor {self.lease.floor_ms}, "
                      f"clock offset {cfg.clock_offset_ms} ms)")
        self._tasks.append(asyncio.ensure_future(self.lease.run()))
        return gen

    def _swap(self, gen: Snowflake) -> None:
        if isinstance(self.service, SnowflakeIdGen):
            self.service.generator = gen
        self.on_event(f"worker {gen.worker_id} leased again")

    async def _static(self) -> Snowflake:
        """A static worker id: the horizon is persisted in the local state file only."""
        cfg = self.config
        assert cfg.worker_id is not None
        state = self._state()
        key = f"static/{cfg.worker_id}"
        floor = state.get(key)
        gen = Snowflake(cfg.worker_id, cfg.layout, clock_offset_ms=cfg.clock_offset_ms,
                        max_backward_ms=cfg.max_backward_ms, floor_ms=floor)
        horizon = max(1000, int(cfg.ttl * 1000))

        async def reserve() -> None:
            until = max(gen.now_ms(), floor) + horizon
            await asyncio.to_thread(state.put, key, until)
            gen.reserve_until(until)

        gen.reserve_until(floor)
        await reserve()

        async def keep() -> None:
            while True:
                await asyncio.sleep(horizon / 4000)
                try:
                    await reserve()
                except OSError as exc:  # disk full...: the horizon runs out, issuing stops
                    log.warning("idgen: persisting the horizon failed: %s", exc)

        self._tasks.append(asyncio.ensure_future(keep()))
        self._settle = lambda: state.settle(key, gen.last_ms)
        self.on_event(f"worker {cfg.worker_id} static (floor {floor}, "
                      f"clock offset {cfg.clock_offset_ms} ms)")
        return gen

    async def serve_forever(self) -> None:
        await self.server.serve_forever(handle_signals=True)

    async def close(self) -> None:
        """Stop issuing, close the listeners, give the worker id back."""
        for t in self._tasks:
            t.cancel()
        if isinstance(self.service, SnowflakeIdGen):
            self.service.generator.set_fence(0.0)
        await self.server.close()
        if self._settle is not None:
            self._settle()
        if self.lease is not None:
            await self.lease.close()
        if self.registry is not None:
            with contextlib.suppress(Exception):
                await self.registry.close()
        if self.allocator is not None:
            a = self.allocator
            self.on_event(f"segment stats: fetches={a.fetches} stalls={a.stalls} "
                          f"batch_waits={a.batch_waits}")
            await a.close()
        if self.store is not None:
            await self.store.close()
