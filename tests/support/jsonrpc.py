"""Helpers for the JSON-RPC / HTTP tests: the spec's functions and a raw HTTP poster."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec

import wirecall
from wirecall import RpcError, Status

NOTIFIED: list[tuple[str, tuple[Any, ...]]] = []


def subtract(minuend: int, subtrahend: int) -> int:
    return minuend - subtrahend


def sum_(*nums: int) -> int:
    total = 0
    for n in nums:
        total += n
    return total


def update(*args: Any) -> None:
    NOTIFIED.append(("update", args))


def notify_hello(*args: Any) -> None:
    NOTIFIED.append(("notify_hello", args))


def get_data() -> list[Any]:
    return ["hello", 5]


def spec_server(**kw: Any) -> wirecall.Server:
    """A server with the JSON-RPC 2.0 specification's example functions."""
    s = wirecall.Server(**kw)
    s.register_function(subtract)
    s.register_function(sum_, name="sum")
    s.register_function(update)
    s.register_function(notify_hello)
    s.register_function(get_data)
    return s


class Args(msgspec.Struct):
    A: int
    B: int


class Calculator:
    """The tutorial's Calculator (until wirecall.tutorial.calculator exists)."""

    def __init__(self) -> None:
        self.calls = 0
        self.slow = 0.0

    async def Add(self, args: Args) -> int:
        self.calls += 1
        if self.slow:
            await asyncio.sleep(self.slow)
        return args.A + args.B

    async def Divide(self, args: Args) -> float:
        self.calls += 1
        if args.B == 0:
            raise RpcError(Status.INVALID_ARGUMENT, "除数不能为零")
        return args.A / args.B


async def post(
    port: int,
    body: bytes | str,
    path: str = "/rpc",
    content_type: str | None = "application/json",
    extra_headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 POST on a fresh connection; returns (status, headers, body)."""
    if isinstance(body, str):
        body = body.encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    for k, v in (extra_headers or {}).items():
        head += f"{k}: {v}\r\n"
    writer.write(head.encode() + b"\r\n" + body)
    await writer.drain()
    try:
        return await asyncio.wait_for(read_response(reader), 10)
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed without a response")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    body = await reader.readexactly(n) if n else b""
    return status, headers, body


def loads(body: bytes) -> Any:
    return json.loads(body) if body else None
