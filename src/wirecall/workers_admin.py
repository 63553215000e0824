"""The admin listener of ``wirecall serve --workers N --admin URL``: one address for N workers.

Each worker runs its own admin listener on loopback, port 0 (``--admin http://127.0.0.1:0``);
the supervisor listens on the ``--admin`` address once and answers from theirs:

=====================  =====================================================================
``/metrics``           every worker's Prometheus exposition merged: each sample labelled
                       ``worker="i"``, each metric family once (its HELP and TYPE once)
``/api/snapshot``      JSON: ``rate`` and ``inflight`` summed over the workers, and
                       ``workers``: per worker its index, pid, admin URL and own snapshot
``/api/workers``       JSON: per worker its index, pid and admin URL
``/``                  a page linking each worker's own dashboard
=====================  =====================================================================

A worker whose admin does not answer (starting, restarting) is left out of that answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import msgspec

__all__ = ["merge_metrics", "serve_admin"]

Workers = Callable[[], list[tuple[int, int, str]]]  # (index, pid, admin URL)
FETCH_TIMEOUT = 5.0
_encode = msgspec.json.Encoder().encode
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?(\s.*)$")


async def serve_admin(url: str, workers: Workers) -> tuple[asyncio.AbstractServer, str]:
    """Listen on ``url`` (``http://host:port``; port 0 picks one); returns the server and
    the real URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise ValueError(f"admin address must be http://host:port, got {url!r}")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            line = head.split(b"\r\n", 1)[0].split(b" ")
            if len(line) != 3 or line[0] not in (b"GET", b"HEAD"):
                await _respond(writer, 405, b"only GET and HEAD\n", "text/plain")
                return
            path = line[1].decode("latin-1").split("?", 1)[0]
            status, ctype, body = await _route(path, workers())
            await _respond(writer, status, b"" if line[0] == b"HEAD" else body, ctype)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, parts.hostname, parts.port)
    port = server.sockets[0].getsockname()[1]
    host = parts.hostname
    return server, f"http://{f'[{host}]' if ':' in host else host}:{port}"


async def _route(path: str, workers: list[tuple[int, int, str]]) -> tuple[int, str, bytes]:
    if path == "/api/workers":
        return 200, "application/json", _encode(
            [{"index": i, "pid": pid, "admin": a} for i, pid, a in workers])
    if path == "/metrics":
        got = await _fetch_all(workers, "/metrics")
        bodies = [(i, b.decode()) for i, b in got if b is not None]
        if not bodies:
            return 503, "text/plain", b"no worker's /metrics answered (serve with --metrics)\n"
        return 200, "text/plain; version=0.0.4; charset=utf-8", merge_metrics(bodies).encode()
    if path == "/api/snapshot":
        snaps = dict(await _fetch_all(workers, "/api/snapshot"))
        rows: list[dict[str, Any]] = []
        for i, pid, a in workers:
            body = snaps.get(i)
            if body is not None:
                rows.append({"index": i, "pid": pid, "admin": a,
                             "snapshot": msgspec.json.decode(body)})
        return 200, "application/json", _encode({
            "rate": sum(r["snapshot"].get("rate", 0.0) for r in rows),
            "inflight": sum(r["snapshot"].get("inflight", 0) for r in rows),
            "workers": rows})
    if path in ("/", "/index.html"):
        items = "".join(
            f'<li>worker {i} (pid {pid}): <a href="{html.escape(a)}/">{html.escape(a)}</a></li>'
            for i, pid, a in workers)
        return 200, "text/html; charset=utf-8", (
            "<!doctype html><title>wirecall workers</title><h1>wirecall workers</h1>"
            f"<ul>{items}</ul><p><a href=\"/metrics\">/metrics</a> (merged) · "
            "<a href=\"/api/snapshot\">/api/snapshot</a></p>").encode()
    return 404, "text/plain", f"no such page: {path}\n".encode()


async def _fetch_all(workers: list[tuple[int, int, str]], path: str
                     ) -> list[tuple[int, bytes | None]]:
    bodies = await asyncio.gather(*(_fetch(a, path) for _, _, a in workers))
    return [(w[0], b) for w, b in zip(workers, bodies, strict=True)]


async def _fetch(admin: str, path: str) -> bytes | None:
    """GET ``admin + path`` (HTTP/1.1, the worker closes after answering); None unless 200."""
    parts = urlsplit(admin)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port), FETCH_TIMEOUT)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     "Connection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), FETCH_TIMEOUT)
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return body if head.startswith(b"HTTP/1.1 200") else None


def merge_metrics(bodies: list[tuple[int, str]]) -> str:
    """Prometheus text expositions, one per worker, merged into one: every sample gets a
    ``worker`` label, and the samples of one family stay together under one HELP/TYPE."""
    families: dict[str, list[str]] = {}  # family -> HELP/TYPE lines, then samples
    for index, text in bodies:
        family = ""
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                words = line.split(None, 3)
                if len(words) >= 3 and words[1] in ("HELP", "TYPE"):
                    family = words[2]
                    lines = families.setdefault(family, [])
                    if line not in lines:
                        lines.append(line)
                continue
            m = _SAMPLE.match(line)
            if m is None:
                continue
            name, labels, rest = m.groups()
            label = f'worker="{index}"'
            labels = f"{{{label},{labels[1:]}" if labels and labels != "{}" else f"{{{label}}}"
            families.setdefault(family or name, []).append(f"{name}{labels}{rest}")
    return "".join(line + "\n" for lines in families.values() for line in lines)


async def _respond(writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str) -> None:
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed",
              503: "Service Unavailable"}.get(status, "Error")
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                 f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
                 "Connection: close\r\n\r\n".encode() + body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
