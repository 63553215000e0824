"""What the observability tests share: a small service (Shop), a server with every wire, and
headless Chromium driven over its DevTools protocol (the dashboard test)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from wirecall import Client, Context, NotFound, method

#: the wires every observability feature is checked on (any:// is checked through tcp)
WIRES = ("tcp", "unix", "http", "ws", "grpc", "gob", "jsonrpc")
#: the wires that carry metadata (and so a W3C traceparent)
METADATA_WIRES = ("tcp", "unix", "http", "ws", "grpc")


class Args(msgspec.Struct):
    A: int
    B: int


class Shop:
    """Go-compatible signatures (one struct argument), so every wire can call it."""

    def __init__(self) -> None:
        #: the client onward calls go through (set by the test)
        self.onward: Client | None = None

    @method(inline=True)
    def Add(self, args: Args) -> int:
        return args.A + args.B

    @method(inline=True)
    def Refuse(self, args: Args) -> int:
        """Inline and failing: the fast lane's error path."""
        if args.A < 0:
            raise ValueError("negative")  # INTERNAL for the caller
        raise NotFound(message=f"refused {args.A}")

    def Fail(self, args: Args) -> int:
        raise NotFound(message=f"no item {args.A}")

    async def Slow(self, args: Args) -> int:
        await asyncio.sleep(args.A / 1000)
        return args.A

    async def Relay(self, args: Args, ctx: Context) -> int:
        """An onward call: Shop.Add through ``self.onward``."""
        assert self.onward is not None
        result: int = await self.onward.call("Shop.Add", args, result_type=int)
        return result

    async def Count(self, args: Args) -> AsyncIterator[int]:
        for i in range(args.A):
            yield i


def listen_urls(tmp: Path, wires: tuple[str, ...] = WIRES) -> list[str]:
    urls = {
        "tcp": "tcp://127.0.0.1:0", "unix": f"unix://{tmp}/shop.sock",
        "http": "http://127.0.0.1:0", "ws": "ws://127.0.0.1:0/ws",
        "grpc": "grpc://127.0.0.1:0", "gob": "gob://127.0.0.1:0",
        "jsonrpc": "jsonrpc://127.0.0.1:0", "any": "any://127.0.0.1:0",
    }
    return [urls[w] for w in wires]


# -- headless Chromium over the DevTools protocol ---------------------------------------------

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,900",
)


def chromium_path() -> str:
    """The Chromium binary; skipped when absent outside CI, a failure under CI=true."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed (scripts/setup.sh installs the Debian package)")
    pytest.skip("chromium is not installed (scripts/setup.sh installs it)")


class Browser:
    """One headless Chromium process with one page, driven by CDP over a WebSocket."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.profile = tempfile.mkdtemp(prefix="wirecall-chromium-")
        self._ws: Any = None
        self._session: Any = None
        self._id = 0

    async def start(self, timeout: float = 30.0) -> None:
        import aiohttp

        self.proc = subprocess.Popen(
            [chromium_path(), *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as r:
            pages = [t for t in await r.json() if t["type"] == "page"]
        self._ws = await self._session.ws_connect(pages[0]["webSocketDebuggerUrl"],
                                                  max_msg_size=64 * 1024 * 1024)
        await self.send("Page.enable")
        await self.send("Runtime.enable")

    async def send(self, method_: str, **params: Any) -> Any:
        self._id += 1
        my = self._id
        await self._ws.send_str(json.dumps({"id": my, "method": method_, "params": params}))
        while True:
            msg = await asyncio.wait_for(self._ws.receive_json(), 30)
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method_}: {msg['error']}")
                return msg.get("result")

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        res = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return res["result"].get("value")

    async def screenshot(self, path: Path) -> Path:
        """The whole page (not only the window), as PNG."""
        metrics = await self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        res = await self.send("Page.captureScreenshot", format="png", clip=clip,
                              captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(res["data"]))
        return path

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.profile)
