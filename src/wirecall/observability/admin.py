"""The admin listener: ``/metrics``, the live dashboard and its JSON and SSE endpoints.

::

    admin = Admin(server, metrics=True)              # CallStats installed on the server
    url = await admin.start("http://127.0.0.1:9090")  # port 0 picks one
    ...
    await admin.close()

It listens on its own address (never on a service port: nothing administrative is reachable
from the network unless started on purpose), speaks just enough HTTP/1.1 for a browser and a
Prometheus scraper (GET and HEAD, one request per connection, 8 KiB of headers, 10 s to send
them), and serves:

=====================  =====================================================================
``/``                  the dashboard (``dashboard/index.html``: a static page, no build step)
``/metrics``           Prometheus text format (needs ``wirecall[metrics]``; else 404 naming it)
``/api/snapshot``      JSON: per method and wire calls/s, error rate, p50/p90/p99, in flight;
                       open connections per wire; the slowest recent calls; the cluster view
``/api/events``        the same snapshot as Server-Sent Events, once per ``interval`` seconds
``/dashboard.js|.css`` the page's script and style
=====================  =====================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from .metrics import listener_counts
from .stats import CallStats

if TYPE_CHECKING:
    from ..server import Server
    from .metrics import Metrics

__all__ = ["Admin", "parse_admin_url"]

log = logging.getLogger("wirecall.admin")

MAX_HEADER = 8192
HEADER_TIMEOUT = 10.0
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}
_encode = msgspec.json.Encoder().encode


def parse_admin_url(url: str) -> tuple[str, int]:
    """``http://host:port`` -> ``(host, port)``; anything else is a ValueError naming it."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme != "http":
        raise ValueError(f"admin URL must be http://host:port, not {url!r}")
    rest = rest.rstrip("/")
    if "/" in rest:
        raise ValueError(f"admin URL takes no path: {url!r}")
    host, colon, port = rest.rpartition(":")
    if not colon or not port.isdigit():
        raise ValueError(f"admin URL needs a port: {url!r}")
    host = host.strip("[]")
    if not host:
        raise ValueError(f"admin URL needs a host: {url!r}")
    return host, int(port)


def _static(name: str) -> bytes:
    return importlib.resources.files("wirecall.observability").joinpath(
        "dashboard", name).read_bytes()


class Admin:
    """The admin HTTP listener of one server.

    ``stats``: the :class:`CallStats` the dashboard shows (default: the server's existing one,
    or a new one added as an observer). ``metrics``: a :class:`Metrics` to serve at
    ``/metrics``, or ``True`` to make one (needs prometheus-client), or ``False``/``None``.
    ``cluster``: an optional callable returning a JSON-able cluster view for the dashboard.
    ``interval``: seconds between two SSE snapshots.
    """

    def __init__(
        self,
        server: Server,
        *,
        stats: CallStats | None = None,
        metrics: Metrics | bool | None = None,
        cluster: Callable[[], Any] | None = None,
        interval: float = 1.0,
        window: float = 10.0,
    ) -> None:
        self.server = server
        if stats is None:
            stats = next((o for o in server.observers if isinstance(o, CallStats)), None)
        if stats is None:
            stats = CallStats()
            server.add_observer(stats)
        self.stats = stats
        if metrics is True:
            from .metrics import Metrics

            metrics = Metrics(server, stats=stats)
        self.metrics: Metrics | None = metrics or None
        self.cluster = cluster
        self.interval = interval
        self.window = window
        self.url = ""
        self._aserver: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[Any]] = set()
        self._started = time.time()

    async def start(self, url: str = "http://127.0.0.1:9090") -> str:
        host, port = parse_admin_url(url)
        self._aserver = await asyncio.start_server(self._serve, host, port, limit=MAX_HEADER)
        real = self._aserver.sockets[0].getsockname()
        shown = f"[{real[0]}]" if ":" in real[0] else real[0]
        self.url = f"http://{shown}:{real[1]}"
        log.info("admin listener on %s", self.url)
        return self.url

    async def close(self) -> None:
        if self._aserver is not None:
            self._aserver.close()
        for t in list(self._conns):
            t.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)
        if self._aserver is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._aserver.wait_closed(), 2.0)
            self._aserver = None

    # -- the snapshot ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What ``/api/snapshot`` returns (and each SSE event carries)."""
        rows = self.stats.snapshot(self.window)
        calls = [r for r in rows if r["kind"] == "call"]
        total_rate = sum(r["rate"] for r in calls)
        error_rate = (sum(r["rate"] * r["error_rate"] for r in calls) / total_rate
                      if total_rate else 0.0)
        cluster = None
        if self.cluster is not None:
            try:
                cluster = self.cluster()
            except Exception as exc:  # the view is best effort; the dashboard says why
                cluster = {"error": f"{type(exc).__name__}: {exc}"}
        return {
            "time": time.time(),
            "uptime": time.time() - self._started,
            "urls": self.server.urls,
            "inflight": self.server.inflight,
            "rate": total_rate,
            "error_rate": error_rate,
            "window": self.window,
            "methods": rows,
            "connections": listener_counts(self.server),
            "slowest": [
                {"method": s.method, "wire": s.wire, "peer": s.peer, "status": s.status,
                 "duration_ms": s.duration * 1e3, "at": s.at}
                for s in self.stats.slowest()
            ],
            "cluster": cluster,
        }

    # -- HTTP -----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT)
        except asyncio.LimitOverrunError:
            await _respond(writer, 431, b"request headers too large\n")
            return
        if len(head) > MAX_HEADER:
            await _respond(writer, 431, b"request headers too large\n")
            return
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            await _respond(writer, 400, b"bad request line\n")
            return
        verb, target = parts[0].decode("latin-1"), parts[1].decode("latin-1")
        if verb not in ("GET", "HEAD"):
            await _respond(writer, 405, b"only GET and HEAD\n", extra=b"Allow: GET, HEAD\r\n")
            return
        path = target.split("?", 1)[0]
        head_only = verb == "HEAD"
        if path == "/api/events" and not head_only:
            await self._events(writer)
            return
        status, ctype, body = self._route(path)
        await _respond(writer, status, body, ctype, head_only=head_only)

    def _route(self, path: str) -> tuple[int, str, bytes]:
        if path in _STATIC:
            name, ctype = _STATIC[path]
            return 200, ctype, _static(name)
        if path == "/api/snapshot":
            return 200, "application/json", _encode(self.snapshot())
        if path == "/metrics":
            if self.metrics is None:
                return 404, "text/plain", (
                    b"metrics are off: serve with --metrics "
                    b"(needs pip install 'wirecall[metrics]')\n")
            return 200, self.metrics.content_type, self.metrics.exposition()
        return 404, "text/plain", f"no such page: {path}\n".encode()

    async def _events(self, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n")
        while True:
            writer.write(b"data: " + _encode(self.snapshot()) + b"\n\n")
            await writer.drain()
            await asyncio.sleep(self.interval)


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large"}


async def _respond(writer: asyncio.StreamWriter, status: int, body: bytes,
                   ctype: str = "text/plain; charset=utf-8", *, head_only: bool = False,
                   extra: bytes = b"") -> None:
    writer.write(
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
        f"X-Content-Type-Options: nosniff\r\nConnection: close\r\n".encode() + extra + b"\r\n")
    if not head_only:
        writer.write(body)
    await writer.drain()
