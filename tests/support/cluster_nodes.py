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


async def all_ready(client: Any, timeout: float = 20.0) -> None:
    """Wait until every endpoint of a cluster client has been dialled: until then the ready
    ones take all the calls, so a test that counts the spread starts from here."""
    import time

    deadline = time.monotonic() + timeout
    while not all(r["ready"] for r in client.endpoints()):
        assert time.monotonic() < deadline, client.endpoints()
        await asyncio.sleep(0.02)


def static_target(urls: list[str]) -> str:
    return "static://" + ",".join(urls)


class NodeProcess:
    """``wirecall serve support.cluster_nodes:Node --register URL`` as a subprocess (stopped
    by PID): ``start()`` returns once it is registered."""

    def __init__(self, name: str, register: str, *extra: str, ttl: float = 2.0) -> None:
        import tempfile

        self.name = name
        self.register = register
        self.extra = [*extra, "--ttl", str(ttl)]
        self.proc: Any = None
        self.url = ""
        self.log = tempfile.NamedTemporaryFile(prefix=f"wc-{name}-", suffix=".log",  # noqa: SIM115
                                               delete=False)

    def start(self, timeout: float = 20.0) -> NodeProcess:
        import subprocess
        import sys
        import time

        from support.servers import ROOT

        env = dict(os.environ, PYTHONUNBUFFERED="1", NODE_NAME=self.name)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wirecall.cli", "serve", "support.cluster_nodes:Node",
             "--listen", "tcp://127.0.0.1:0", "--register", self.register, *self.extra],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("listening on "):
                self.url = line.split()[-1]
            if line.startswith("registered in "):
                return self
            if not line and self.proc.poll() is not None:
                break
        self.kill()
        with open(self.log.name) as f:
            raise RuntimeError(f"{self.name} did not register: {f.read()[-2000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, 9)
            self.proc.wait(10)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, 15)

    def wait(self, timeout: float = 15.0) -> int:
        return int(self.proc.wait(timeout))

    def cleanup(self) -> None:
        self.kill()
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        os.unlink(self.log.name)
