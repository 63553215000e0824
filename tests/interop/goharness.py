"""Build and run the Go programs under ``tests/interop/go/`` (the tutorial's code).

Programs are built once per session with Debian's ``golang-go`` in GOPATH mode (offline,
stdlib only) into ``tests/interop/_build/`` (git-ignored), rebuilt only when their source
changed. Servers are started on 127.0.0.1 with port 0; they print ``{"listen": "host:port"}``
first, and are stopped by PID. If ``go`` is missing the tests fail with a message saying what
to install: they are never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GO_SRC = HERE / "go"
BUILD = HERE / "_build"
_lock = threading.Lock()
_built: dict[str, Path] = {}


class GoMissing(RuntimeError):
    pass


def go_binary() -> str:
    go = shutil.which("go")
    if go is None and Path("/usr/lib/go/bin/go").exists():
        go = "/usr/lib/go/bin/go"
    if go is None:
        raise GoMissing(
            "the Go toolchain is needed for the Go interop tests and was not found: "
            "install Debian's golang-go (apt-get install -y golang-go)"
        )
    return go


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GO111MODULE="off",
        GOPATH=f"/usr/share/gocode:{BUILD / 'gopath'}",
        GOCACHE=str(BUILD / "gocache"),
        GOFLAGS="",
        CGO_ENABLED="0",
    )
    return env


def build(prog: str) -> Path:
    """Build ``tests/interop/go/<prog>`` (cached by a hash of its sources); return the binary."""
    with _lock:
        if prog in _built:
            return _built[prog]
        src = GO_SRC / prog
        files = sorted(src.glob("*.go"))
        if not files:
            raise FileNotFoundError(f"no Go sources in {src}")
        digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
        BUILD.mkdir(parents=True, exist_ok=True)
        out = BUILD / f"{prog}-{digest}"
        if not out.exists():
            go = go_binary()
            tmp = out.with_suffix(".tmp")
            res = subprocess.run(
                [go, "build", "-o", str(tmp), "."],
                cwd=src,
                env=go_env(),
                capture_output=True,
                text=True,
                timeout=300,
            )
            if res.returncode != 0:
                raise RuntimeError(f"go build {prog} failed:\n{res.stderr}")
            tmp.replace(out)
        _built[prog] = out
        return out


def run(prog: str, *args: str, stdin: str | None = None, timeout: float = 60) -> list[Any]:
    """Run a Go program to completion; return its stdout JSON lines (fails on exit != 0)."""
    exe = build(prog)
    res = subprocess.run(
        [str(exe), *args], input=stdin, capture_output=True, text=True, timeout=timeout
    )
    if res.returncode != 0:
        raise AssertionError(
            f"{prog} {' '.join(args)} exited {res.returncode}\nstdout:\n{res.stdout}\n"
            f"stderr:\n{res.stderr}"
        )
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


class GoServer:
    """A Go server subprocess; ``addr`` is the ``host:port`` it listens on."""

    def __init__(self, proc: subprocess.Popen[str], addr: str) -> None:
        self.proc = proc
        self.addr = addr
        host, _, port = addr.rpartition(":")
        self.host = host
        self.port = int(port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


def start_server(prog: str, *args: str, timeout: float = 20) -> GoServer:
    exe = build(prog)
    proc = subprocess.Popen(
        [str(exe), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    result: list[str] = []

    def read_first() -> None:
        assert proc.stdout is not None
        result.append(proc.stdout.readline())

    t = threading.Thread(target=read_first, daemon=True)
    t.start()
    t.join(timeout)
    line = result[0] if result else ""
    if not line:
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"{prog} did not report its address within {timeout}s: {err}")
    addr = json.loads(line)["listen"]
    return GoServer(proc, addr)


@contextlib.contextmanager
def go_server(prog: str, *args: str) -> Iterator[GoServer]:
    srv = start_server(prog, *args)
    try:
        yield srv
    finally:
        srv.stop()


async def run_go_client(addr: str, mode: str, case: str) -> dict[str, dict[str, object]]:
    exe = build("calcclient")
    proc = await asyncio.create_subprocess_exec(
        str(exe), "-addr", addr, "-mode", mode, "-case", case,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(x) for x in out.decode().splitlines() if x.strip()]
    return {line["case"]: line for line in lines}
