"""The tutorial's section 2.2.3: nginx ``least_conn`` in front of two wirecall HTTP servers.

Starts two servers (``Calculator`` on ``http://127.0.0.1:<free port>``), renders
``nginx.conf.template`` into a temporary directory, runs Debian's ``nginx`` there as an
unprivileged foreground process, sends calls through it and prints how many each server got.

    python examples/nginx/run_nginx.py
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

import wirecall
from wirecall.tutorial.calculator import Args

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "nginx.conf.template"


def nginx_binary() -> str:
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if exe is None:
        raise RuntimeError("nginx is not installed: apt-get install -y nginx")
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render(prefix: Path, listen: int, upstreams: tuple[int, int]) -> Path:
    """Write ``nginx.conf`` for ``prefix`` (temp dirs made world-writable for the workers)."""
    text = TEMPLATE.read_text()
    for key, value in {"PREFIX": str(prefix), "LISTEN": str(listen),
                       "UPSTREAM1": str(upstreams[0]), "UPSTREAM2": str(upstreams[1])}.items():
        text = text.replace("{{" + key + "}}", value)
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    for d in (prefix, prefix / "tmp"):
        os.chmod(d, 0o777)
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    return conf


class Nginx:
    """``nginx -p prefix -c conf -g 'daemon off;'``, stopped by PID."""

    def __init__(self, upstreams: tuple[int, int]) -> None:
        self.prefix = Path(tempfile.mkdtemp(prefix="wirecall-nginx-"))
        self.port = free_port()
        self.conf = render(self.prefix, self.port, upstreams)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            [nginx_binary(), "-p", str(self.prefix), "-c", str(self.conf), "-g", "daemon off;"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.proc.stderr.read() if self.proc.stderr else b"").decode()
                raise RuntimeError(f"nginx exited at start ({self.proc.returncode}): {err}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen on {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None:
            for f in (self.proc.stdout, self.proc.stderr):
                if f:
                    f.close()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def error_log(self) -> str:
        p = self.prefix / "error.log"
        return p.read_text() if p.exists() else ""


class CountingCalculator:
    """The tutorial's Calculator, counting calls (and slow when ``delay`` is set)."""

    def __init__(self) -> None:
        self.calls = 0
        self.delay = 0.0

    async def Add(self, args: Args) -> int:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return args.A + args.B


async def main() -> None:
    calcs = [CountingCalculator(), CountingCalculator()]
    servers = []
    ports = []
    for c in calcs:
        s = wirecall.Server()
        s.register(c, name="Calculator")
        [url] = await s.start("http://127.0.0.1:0")
        servers.append(s)
        ports.append(int(url.rsplit(":", 1)[1]))
    nginx = Nginx((ports[0], ports[1]))
    await asyncio.to_thread(nginx.start)
    try:
        url = f"http://127.0.0.1:{nginx.port}/rpc"
        async with aiohttp.ClientSession() as http:
            payload = {"jsonrpc": "2.0", "method": "Calculator.Add",
                       "params": [{"A": 10, "B": 5}], "id": 1}
            for _ in range(20):
                async with http.post(url, json=payload) as r:
                    assert (await r.json())["result"] == 15
        print("服务器响应 counts per server:", [c.calls for c in calcs])
        # the same through wirecall's own client
        async with await wirecall.connect(url) as client:
            print("Calculator.Add via nginx:", await client.call("Calculator.Add", Args(A=10, B=5)))
    finally:
        nginx.stop()
        for s in servers:
            await s.close()


if __name__ == "__main__":
    asyncio.run(main())
