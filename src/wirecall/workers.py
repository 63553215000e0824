"""Serving on every core: a supervisor running N worker processes that share every listener.

``wirecall serve TARGET --listen URL... --workers N`` (or :func:`serve_workers`) starts N
copies of ``wirecall serve TARGET --listen URL...``; each binds the same addresses with
``SO_REUSEPORT`` and the kernel spreads new connections among them. A listen URL with port 0
gets its port here first (a socket bound, not listening, with ``SO_REUSEPORT``, held for the
supervisor's life so restarted workers find the same port).

Supervision:

* a worker that exits on its own (a crash, ``kill -9``) is started again (after 0.5 s if it
  died within a second of starting, so a broken target does not spin);
* SIGTERM or SIGINT: every worker gets SIGTERM and drains gracefully (calls in flight finish,
  ``Server.serve_forever(handle_signals=True)``); the supervisor exits once all have;
* SIGHUP: workers are replaced one by one: a new one is started and, once it listens, the old
  one is sent SIGTERM and drains. There is always at least N-1 listening.

Limits: only wires that accept ``reuse_port`` (tcp, tls, grpc, grpcs, http, https, ws, wss,
gob, jsonrpc, any); ``unix://`` and ``quic://`` are refused with ``--workers`` (they would need
an inherited socket, not done yet). Linux drops the connections still in a closing listener's
accept queue (net.ipv4.tcp_migrate_req=1 moves them to a sibling); the drain is started only
after the replacement listens, so the window is the accept-queue backlog of the old worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

__all__ = ["REUSE_PORT_SCHEMES", "WORKER_ENV", "fix_ports", "serve_workers"]

#: set in a worker's environment (its index): ``wirecall serve`` then binds with reuse_port
WORKER_ENV = "WIRECALL_WORKER"
REUSE_PORT_SCHEMES = frozenset({"tcp", "tls", "grpc", "grpcs", "http", "https", "ws", "wss",
                                "gob", "gobs", "jsonrpc", "any"})


def fix_ports(urls: Sequence[str]) -> tuple[list[str], list[socket.socket]]:
    """The URLs with every port 0 replaced by a port reserved here (the sockets holding them
    are returned; keep them open). Refuses schemes without SO_REUSEPORT sharing."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("--workers needs SO_REUSEPORT, which this OS does not have")
    out: list[str] = []
    held: list[socket.socket] = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in REUSE_PORT_SCHEMES:
            raise ValueError(f"--workers cannot share {parts.scheme}:// listeners "
                             f"({url}); use one of {', '.join(sorted(REUSE_PORT_SCHEMES))}")
        if parts.port == 0:
            host = parts.hostname or "127.0.0.1"
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind((host, 0))
            held.append(s)
            port = s.getsockname()[1]
            shown = f"[{host}]" if ":" in host else host
            parts = parts._replace(netloc=f"{shown}:{port}")
        out.append(urlunsplit(parts))
    return out, held


@dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process
    started: float
    ready: asyncio.Future[None]
    retiring: bool = False
    watcher: asyncio.Future[None] | None = None


class _Supervisor:
    def __init__(self, argv: list[str], n: int, listeners: int) -> None:
        self.argv = argv
        self.n = n
        self.listeners = listeners
        self.workers: dict[int, _Worker] = {}
        self.stopping = False
        self.done = asyncio.Event()
        self.restarts = 0
        self._reload: asyncio.Task[None] | None = None

    async def spawn(self, index: int) -> _Worker:
        env = dict(os.environ, **{WORKER_ENV: str(index)})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wirecall.cli", *self.argv, env=env,
            stdout=asyncio.subprocess.PIPE, start_new_session=True,
        )
        w = _Worker(index, proc, time.monotonic(), asyncio.get_running_loop().create_future())
        w.ready.add_done_callback(lambda f: f.cancelled() or f.exception())  # (retrieved)
        w.watcher = asyncio.ensure_future(self._watch(w))
        return w

    async def _watch(self, w: _Worker) -> None:
        assert w.proc.stdout is not None
        seen = 0
        async for raw in w.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line.startswith("listening on "):
                seen += 1
                if seen == self.listeners and not w.ready.done():
                    w.ready.set_result(None)
            elif line:
                print(f"[worker {w.index} pid {w.proc.pid}] {line}", flush=True)
        code = await w.proc.wait()
        if not w.ready.done():
            w.ready.set_exception(RuntimeError(f"worker {w.index} exited with {code} "
                                               "before listening"))
        if self.workers.get(w.index) is w:
            del self.workers[w.index]
            if not self.stopping and not w.retiring:
                print(f"worker {w.index} (pid {w.proc.pid}) exited with {code}: restarting",
                      flush=True)
                if time.monotonic() - w.started < 1.0:
                    await asyncio.sleep(0.5)
                if not self.stopping:
                    self.restarts += 1
                    await self._start(w.index)
        if self.stopping and not self.workers:
            self.done.set()

    async def _start(self, index: int) -> _Worker:
        w = await self.spawn(index)
        self.workers[index] = w
        return w

    async def start_all(self) -> None:
        ws = [await self._start(i) for i in range(self.n)]
        await asyncio.gather(*(w.ready for w in ws))

    def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        print(f"stopping {len(self.workers)} workers", flush=True)
        for w in list(self.workers.values()):
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signal.SIGTERM)
        if not self.workers:
            self.done.set()

    def reload(self) -> None:
        if self._reload is None or self._reload.done():
            self._reload = asyncio.ensure_future(self._replace_all())

    async def _replace_all(self) -> None:
        print("SIGHUP: replacing workers one by one", flush=True)
        for index in range(self.n):
            if self.stopping:
                return
            old = self.workers.get(index)
            new = await self.spawn(index)
            try:
                await new.ready
            except RuntimeError as exc:
                print(f"replacement worker failed ({exc}); keeping the old one", flush=True)
                continue
            if old is not None:
                old.retiring = True
            self.workers[index] = new
            if old is not None:
                with contextlib.suppress(ProcessLookupError):
                    old.proc.send_signal(signal.SIGTERM)
                await old.proc.wait()
        print(f"replaced {self.n} workers", flush=True)


async def serve_workers(argv: Sequence[str], urls: Sequence[str], n: int) -> int:
    """Run ``wirecall <argv>`` (a ``serve`` command listening on ``urls``, already given in
    ``argv``) as ``n`` supervised workers until SIGTERM/SIGINT. Returns the exit status."""
    sup = _Supervisor(list(argv), n, len(urls))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, sup.stop)
    loop.add_signal_handler(signal.SIGINT, sup.stop)
    loop.add_signal_handler(signal.SIGHUP, sup.reload)
    try:
        try:
            await sup.start_all()
        except RuntimeError as exc:
            sup.stopping = True
            print(f"wirecall: {exc}", file=sys.stderr, flush=True)
            return 1
        for u in urls:
            print(f"listening on {u}", flush=True)
        print(f"workers: {n} (pids {' '.join(str(w.proc.pid) for w in sup.workers.values())})",
              flush=True)
        await sup.done.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        for w in list(sup.workers.values()):
            with contextlib.suppress(ProcessLookupError):
                w.proc.kill()
    print("stopped", flush=True)
    return 0
