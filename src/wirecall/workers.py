"""Serving on every core: a supervisor running N worker processes that share every listener.

``wirecall serve TARGET --listen URL... --workers N`` (or :func:`serve_workers`) starts N
copies of ``wirecall serve TARGET --listen URL...``. How a listener is shared
(:func:`share_listeners`, ``--share``):

* SO_REUSEPORT (tcp, tls, grpc, grpcs, http, https, ws, wss, gob, gobs, jsonrpc, any: the
  default): each worker binds the address itself and the kernel spreads new connections
  among them. A port 0 is reserved here first (a socket bound, not listening, held for the
  supervisor's life so restarted workers find the same port);
* an inherited socket (unix://, or any of the above with ``--share inherit``): the supervisor
  binds and listens once; the workers inherit the socket (``pass_fds``, its fd named in
  ``WIRECALL_WORKER_FDS``) and accept from its one queue, so a retiring worker's closing
  drops no queued connection. quic:// is refused (UDP: see ``_QUIC_REFUSED``).

Supervision:

* a worker that exits on its own (a crash, ``kill -9``) is started again (after 0.5 s if it
  died within a second of starting, so a broken target does not spin);
* SIGTERM or SIGINT: every worker gets SIGTERM and drains gracefully (calls in flight finish,
  ``Server.serve_forever(handle_signals=True)``); the supervisor exits once all have;
* SIGHUP: workers are replaced one by one: a new one is started and, once it listens, the old
  one is sent SIGTERM. A worker's server has a hand-over (``Server.handoff``): it stops
  accepting, gives connections accepted just before a moment to send their first calls, sends
  a two-step GOAWAY (calls crossing it are served) and drains, so no call fails.

``--admin URL`` is served once, by the supervisor, from the workers' own admin listeners
(``wirecall.workers_admin``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

__all__ = ["FDS_ENV", "REUSE_PORT_SCHEMES", "SHARE_MODES", "WORKER_ENV", "Shared",
           "fix_ports", "inherited_sockets", "serve_workers", "share_listeners"]

#: set in a worker's environment (its index): ``wirecall serve`` then binds with reuse_port
WORKER_ENV = "WIRECALL_WORKER"
#: set in a worker's environment: per listen URL, the inherited listening socket's fd or "-"
FDS_ENV = "WIRECALL_WORKER_FDS"
REUSE_PORT_SCHEMES = frozenset({"tcp", "tls", "grpc", "grpcs", "http", "https", "ws", "wss",
                                "gob", "gobs", "jsonrpc", "jsonrpcs", "any"})
#: ``--share``: auto (SO_REUSEPORT where it applies, an inherited socket otherwise),
#: reuseport (every worker binds; unix:// refused), inherit (the supervisor binds once)
SHARE_MODES = ("auto", "reuseport", "inherit")
_QUIC_REFUSED = (
    "--workers cannot share quic:// listeners ({url}): QUIC runs over UDP, where the kernel "
    "picks a worker per datagram by hashing its addresses, so a connection would move to "
    "another worker (which does not know it) when the client's address changes (migration, "
    "NAT rebinding) or when a SIGHUP adds and removes workers; serve quic:// from a single "
    "process")


@dataclass
class Shared:
    """The listeners as the supervisor shares them (:func:`share_listeners`)."""

    #: the listen URLs with every port 0 replaced by the port reserved or bound here
    urls: list[str]
    #: per URL, the fd of the listening socket the workers inherit, or None (they bind it
    #: themselves with SO_REUSEPORT)
    fds: list[int | None]
    #: sockets to keep open while the workers run (reserved ports, inherited listeners)
    held: list[socket.socket]
    #: unix socket paths bound here (removed by :meth:`close`)
    paths: list[str]

    def close(self) -> None:
        for s in self.held:
            s.close()
        for path in self.paths:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _bind(parts: SplitResult, url: str, listening: bool) -> socket.socket:
    """A TCP socket bound to ``parts``' host and port (listening, or only reserving the port
    with SO_REUSEPORT)."""
    host = parts.hostname or "127.0.0.1"
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if not listening:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((host, parts.port or 0))
        if listening:
            s.listen(1024)
    except OSError as exc:
        s.close()
        raise ValueError(f"cannot bind {url}: {exc.strerror or exc}") from None
    return s


def share_listeners(urls: Sequence[str], share: str = "auto") -> Shared:
    """Prepare ``urls`` for N workers. ``share``: "reuseport" (each worker binds every URL
    with SO_REUSEPORT; a port 0 is reserved here first), "inherit" (each URL is bound and
    listening here once; the workers inherit the socket and accept from its one queue) or
    "auto" (reuseport where the OS and the scheme have it, else inherit: unix://).
    quic:// is refused (UDP: see the error)."""
    if share not in SHARE_MODES:
        raise ValueError(f"--share must be one of {', '.join(SHARE_MODES)}, got {share!r}")
    has_reuseport = hasattr(socket, "SO_REUSEPORT")
    out = Shared([], [], [], [])
    try:
        for url in urls:
            parts = urlsplit(url)
            scheme = parts.scheme
            if scheme == "quic":
                raise ValueError(_QUIC_REFUSED.format(url=url))
            if scheme not in REUSE_PORT_SCHEMES and scheme != "unix":
                raise ValueError(f"--workers cannot share {scheme}:// listeners ({url}); use "
                                 f"one of {', '.join(sorted(REUSE_PORT_SCHEMES | {'unix'}))}")
            inherit = share == "inherit" or scheme == "unix" or (
                share == "auto" and not has_reuseport)
            if not inherit and not has_reuseport:
                raise ValueError("--share reuseport needs SO_REUSEPORT, which this OS does not "
                                 "have; use --share inherit")
            if share == "reuseport" and scheme == "unix":
                raise ValueError(f"--share reuseport cannot share {url}: unix sockets have no "
                                 "SO_REUSEPORT; use --share auto or inherit")
            if inherit and scheme == "unix":
                out.held.append(_bind_unix(parts.path, url))
                out.paths.append(parts.path)
                out.fds.append(out.held[-1].fileno())
            elif inherit:
                s = _bind(parts, url, listening=True)
                out.held.append(s)
                out.fds.append(s.fileno())
                parts = _with_port(parts, s)
            else:
                out.fds.append(None)
                if parts.port == 0:
                    s = _bind(parts, url, listening=False)
                    out.held.append(s)
                    parts = _with_port(parts, s)
            out.urls.append(url if scheme == "unix" else urlunsplit(parts))
    except BaseException:
        out.close()
        raise
    return out


def _with_port(parts: SplitResult, s: socket.socket) -> SplitResult:
    host = parts.hostname or "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    return parts._replace(netloc=f"{shown}:{s.getsockname()[1]}")


def _bind_unix(path: str, url: str) -> socket.socket:
    if not path:
        raise ValueError(f"{url}: a unix:// URL needs a path (unix:///run/app.sock)")
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)  # a stale socket file, as a single server replaces it
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(path)
        s.listen(1024)
    except OSError as exc:
        s.close()
        raise ValueError(f"cannot bind {url}: {exc.strerror or exc}") from None
    return s


def fix_ports(urls: Sequence[str]) -> tuple[list[str], list[socket.socket]]:
    """The URLs with every port 0 replaced by a port reserved here (the sockets holding them
    are returned; keep them open), for workers binding with SO_REUSEPORT."""
    shared = share_listeners(urls, "reuseport")
    return shared.urls, shared.held


def inherited_sockets(count: int) -> list[socket.socket | None]:
    """(In a worker:) per listen URL, the listening socket inherited from the supervisor, or
    None (the worker binds it with SO_REUSEPORT)."""
    text = os.environ.get(FDS_ENV, "")
    fds = text.split(",") if text else []
    if len(fds) not in (0, count):
        raise ValueError(f"{FDS_ENV}={text!r} does not match the {count} listen URLs")
    return [None if f == "-" else socket.socket(fileno=int(f)) for f in fds] or [None] * count


@dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process
    started: float
    ready: asyncio.Future[None]
    retiring: bool = False
    watcher: asyncio.Future[None] | None = None
    #: the worker's own admin listener (``--admin`` with ``--workers``: loopback, port 0)
    admin: str = ""


class _Supervisor:
    def __init__(self, argv: list[str], n: int, listeners: int,
                 fds: Sequence[int | None] = ()) -> None:
        self.argv = argv
        self.n = n
        self.listeners = listeners
        self.fds = list(fds)
        self.workers: dict[int, _Worker] = {}
        self.stopping = False
        self.done = asyncio.Event()
        self.restarts = 0
        self._reload: asyncio.Task[None] | None = None

    def admins(self) -> list[tuple[int, int, str]]:
        """(index, pid, admin URL) of each current worker that has an admin listener."""
        return [(i, w.proc.pid, w.admin) for i, w in sorted(self.workers.items()) if w.admin]

    async def spawn(self, index: int) -> _Worker:
        env = dict(os.environ, **{WORKER_ENV: str(index)})
        env.pop(FDS_ENV, None)
        inherit = [f for f in self.fds if f is not None]
        if inherit:
            env[FDS_ENV] = ",".join("-" if f is None else str(f) for f in self.fds)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wirecall.cli", *self.argv, env=env,
            stdout=asyncio.subprocess.PIPE, start_new_session=True, pass_fds=inherit,
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
            elif line.startswith("admin on "):
                w.admin = line.split()[2]  # served through the supervisor's admin listener
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


async def serve_workers(argv: Sequence[str], urls: Sequence[str], n: int,
                        fds: Sequence[int | None] = (), admin: str = "") -> int:
    """Run ``wirecall <argv>`` (a ``serve`` command listening on ``urls``, already given in
    ``argv``) as ``n`` supervised workers until SIGTERM/SIGINT. ``fds``: per URL, a listening
    socket's fd the workers inherit, or None (``Shared.fds`` of :func:`share_listeners`).
    ``admin``: an ``http://host:port`` the supervisor serves, aggregating the workers' own
    admin listeners (``argv`` then gives each worker ``--admin http://127.0.0.1:0``).
    Returns the exit status."""
    sup = _Supervisor(list(argv), n, len(urls), fds)
    admin_server: asyncio.AbstractServer | None = None
    admin_url = ""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, sup.stop)
    loop.add_signal_handler(signal.SIGINT, sup.stop)
    loop.add_signal_handler(signal.SIGHUP, sup.reload)
    try:
        if admin:  # bound first: a taken or malformed address stops here, before any worker
            from .workers_admin import serve_admin

            try:
                admin_server, admin_url = await serve_admin(admin, sup.admins)
            except (OSError, ValueError) as exc:
                print(f"wirecall: --admin {admin}: {exc}", file=sys.stderr, flush=True)
                return 1
        try:
            await sup.start_all()
        except RuntimeError as exc:
            sup.stopping = True
            print(f"wirecall: {exc}", file=sys.stderr, flush=True)
            return 1
        for u in urls:
            print(f"listening on {u}", flush=True)
        if admin_server is not None:
            print(f"admin on {admin_url} (the {n} workers' admin listeners, aggregated)",
                  flush=True)
        print(f"workers: {n} (pids {' '.join(str(w.proc.pid) for w in sup.workers.values())})",
              flush=True)
        await sup.done.wait()
    finally:
        if admin_server is not None:
            admin_server.close()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        for w in list(sup.workers.values()):
            with contextlib.suppress(ProcessLookupError):
                w.proc.kill()
    print("stopped", flush=True)
    return 0
