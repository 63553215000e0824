"""The service the cluster tests run on many servers (in process or ``wirecall serve
support.cluster_nodes:Node``): it says who answered, works for a while, fails on demand and
counts what it saw."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import wirecall
from wirecall import method


class Node:
    def __init__(self, name: str | None = None) -> None:
        self.name = name or os.environ.get("NODE_NAME") or f"pid{os.getpid()}"
        self.calls = 0
        self.cancelled = 0
        self.delay = 0.0
        self.failing: str | None = None  # a status name to fail every call with

    @method
    async def Who(self) -> str:
        self.calls += 1
        return self.name

    @method
    async def Work(self, ms: float) -> str:
        self.calls += 1
        if self.failing:
            raise wirecall.RpcError(wirecall.Status[self.failing], f"{self.name} is failing")
        try:
            await asyncio.sleep(ms / 1000 + self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return self.name

    @method
    async def Stats(self) -> dict[str, Any]:
        return {"name": self.name, "calls": self.calls, "cancelled": self.cancelled}


async def start_nodes(n: int, scheme: str = "tcp", **kw: Any) -> tuple[list[wirecall.Server],
                                                                      list[Node], list[str]]:
    servers, nodes, urls = [], [], []
    for i in range(n):
        node = Node(f"n{i}")
        s = wirecall.Server(**kw)
        s.register(node, name="Node")
        urls += await s.start(f"{scheme}://127.0.0.1:0")
        servers.append(s)
        nodes.append(node)
    return servers, nodes, urls


def static_target(urls: list[str]) -> str:
    return "static://" + ",".join(urls)
