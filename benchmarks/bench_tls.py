"""TLS vs plaintext on the native protocol (issue #15): ``tls://`` against ``tcp://``.

Two workloads, each on one connection to a server in its own process:

* calls/s with 64 calls in flight (``Echo.Say`` with a short string);
* 64 KiB echo in MB/s (``Echo.Bytes``: 64 KiB up and 64 KiB back per call, 8 in flight;
  MB/s counts the request and the reply);
* and, for the cost of ``wirecall.auth.Auth``, calls/s on plain tcp:// with a bearer token
  checked on every call (measured after the tcp/tls pair in each round), two ways:
  ``auth.install(server)`` (a call observer: the native fast lane stays open) and the
  interceptor (``Server(interceptors=[auth])``: every call in a task).

``--instructions``: the same Auth variants counted by callgrind instead (server and client in
one process, 64 in flight, instructions per call = (run with N calls - run with 0) / N), with
"bearer, no Auth" (the metadata's own cost) beside plain calls: load-independent.

Rounds interleave the two wires (tcp, tls, then tls, tcp ...) so drift on a shared machine
hits both; the figures are medians over the rounds, and the ratio is the median of the paired
per-round ratios. Certificates: an EC P-256 CA and server certificate made for the run
(``tests/support/tls.py``); TLS 1.3 as negotiated by Python's ``ssl`` (OpenSSL).

    .venv/bin/python benchmarks/bench_tls.py [--rounds 5] [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import wirecall  # noqa: E402


class Echo:
    @wirecall.method(inline=True)
    def Say(self, text: str) -> str:
        return text

    @wirecall.method(inline=True)
    def Bytes(self, data: bytes) -> bytes:
        return data


def _loop_policy() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _server(variant: str) -> wirecall.Server:
    """A server for ``variant``: "" (nothing), "auth" (Auth.install: a call observer) or
    "auth-icpt" (Auth as an interceptor)."""
    from wirecall.auth import Auth

    server = wirecall.Server()
    if variant == "auth":
        Auth(tokens={"bench-token": "bench"}).install(server)
    elif variant == "auth-icpt":
        server.add_interceptor(Auth(tokens={"bench-token": "bench"}))
    server.register(Echo())
    return server


async def _serve(url: str, cert: str, key: str) -> None:
    url, _, variant = url.partition("#")
    server = _server(variant)
    opts = {"certfile": cert, "keyfile": key} if url.startswith("tls") else {}
    [real] = await server.start(url, **opts)
    print(real, flush=True)
    await server.serve_forever(handle_signals=True)


async def _calls(url: str, opts: dict[str, Any], seconds: float) -> float:
    c = await wirecall.connect(url, **opts)  # (metadata= in opts: sent with every call)
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await c.call("Echo.Say", "hello", timeout=10)
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(64)))
    rate = done / (time.perf_counter() - t0)
    await c.close()
    return rate


async def _bulk(url: str, opts: dict[str, Any], seconds: float) -> float:
    c = await wirecall.connect(url, **opts)
    blob = os.urandom(64 * 1024)
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            out = await c.call("Echo.Bytes", blob, timeout=10)
            assert len(out) == len(blob)
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(8)))
    mbps = done * 2 * len(blob) / (time.perf_counter() - t0) / 1e6
    await c.close()
    return mbps


def _start(url: str, cert: str, key: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", url, cert, key],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    real = proc.stdout.readline().strip()
    if not real:
        proc.kill()
        raise RuntimeError(f"server for {url} did not start")
    return proc, real


INSTR_VARIANTS = {  # name: (server variant, client sends a bearer token)
    "plain": ("", False), "bearer, no Auth": ("", True),
    "Auth.install (observer)": ("auth", True), "Auth interceptor": ("auth-icpt", True)}


async def _instr_workload(variant: str, bearer_token: bool, calls: int) -> None:
    from wirecall.auth import bearer

    server = _server(variant)
    [url] = await server.start("tcp://127.0.0.1:0")
    c = await wirecall.connect(url, **({"metadata": bearer("bench-token")} if bearer_token
                                        else {}))
    await c.call("Echo.Say", "warm")
    sem = asyncio.Semaphore(64)

    async def one() -> None:
        async with sem:
            await c.call("Echo.Say", "hello")

    await asyncio.gather(*(one() for _ in range(calls)))
    await c.close()
    await server.close()


def _instructions(calls: int) -> None:
    import re

    def count(name: str, n: int) -> int:
        r = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
             __file__, "--instr-run", name, "--calls", str(n)],
            capture_output=True, text=True, timeout=1800)
        m = re.search(r"Collected : (\d+)", r.stderr)
        if r.returncode != 0 or m is None:
            raise SystemExit(f"callgrind failed:\n{r.stderr[-2000:]}")
        return int(m.group(1))

    print(f"tcp://, 64 in flight, {calls} calls, callgrind (client + server, one process)\n")
    print("| variant | instructions/call | plain/variant |")
    print("|---|---|---|")
    base = 0.0
    for name in INSTR_VARIANTS:
        per = (count(name, calls) - count(name, 0)) / calls
        base = base or per
        print(f"| {name} | {per:,.0f} | {base / per:.2f}x |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--instructions", action="store_true",
                    help="count instructions per call of the Auth variants (callgrind)")
    ap.add_argument("--calls", type=int, default=2000, help="with --instructions")
    ap.add_argument("--serve", nargs=3, metavar=("URL", "CERT", "KEY"), help=argparse.SUPPRESS)
    ap.add_argument("--instr-run", choices=list(INSTR_VARIANTS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    _loop_policy()
    if args.serve:
        asyncio.run(_serve(*args.serve))
        return
    if args.instr_run:
        asyncio.run(_instr_workload(*INSTR_VARIANTS[args.instr_run], args.calls))
        return
    if args.instructions:
        _instructions(args.calls)
        return
    from support.tls import make_certs

    with tempfile.TemporaryDirectory() as d:
        certs = make_certs(Path(d))
        procs = {}
        urls = {}
        wires = ("tcp", "tls", "auth", "auth-icpt")
        for wire in wires:
            listen = f"tcp://127.0.0.1:0#{wire}" if "auth" in wire else f"{wire}://127.0.0.1:0"
            procs[wire], urls[wire] = _start(listen, certs.server.cert, certs.server.key)
        from wirecall.auth import bearer

        token = {"metadata": bearer("bench-token")}
        client_opts: dict[str, dict[str, Any]] = {
            "tcp": {}, "tls": {"cafile": certs.ca}, "auth": token, "auth-icpt": token}
        results: dict[str, dict[str, list[float]]] = {
            w: {"calls": [], "bulk": []} for w in wires}
        try:
            for r in range(args.rounds):
                order = ("tcp", "tls") if r % 2 == 0 else ("tls", "tcp")
                for kind, fn in (("calls", _calls), ("bulk", _bulk)):
                    for wire in (*order, "auth", "auth-icpt") if kind == "calls" else order:
                        v = asyncio.run(fn(urls[wire], client_opts[wire], args.seconds))
                        results[wire][kind].append(v)
                print(f"round {r + 1}/{args.rounds}: "
                      + ", ".join(f"{w} {results[w]['calls'][-1]:,.0f} calls/s "
                                  f"{results[w]['bulk'][-1]:,.0f} MB/s" for w in order),
                      file=sys.stderr, flush=True)
        finally:
            for p in procs.values():
                p.terminate()
                p.wait(10)
    print(f"\nbench_tls: {args.rounds} interleaved rounds of {args.seconds:g}s, "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs (shared machine)\n")
    print("| workload | tcp:// | tls:// | tls/tcp (median of paired ratios) |")
    print("|---|---|---|---|")
    for kind, label, unit in (("calls", "calls/s, 64 in flight", "{:,.0f}"),
                              ("bulk", "64 KiB echo MB/s, 8 in flight", "{:,.0f}")):
        plain, tls = results["tcp"][kind], results["tls"][kind]
        ratio = statistics.median(t / p for t, p in zip(tls, plain, strict=True))
        print(f"| {label} | {unit.format(statistics.median(plain))} | "
              f"{unit.format(statistics.median(tls))} | {ratio:.2f}x |")
    print()
    for wire, label in (("auth", "Auth.install (a call observer: the fast lane stays open)"),
                        ("auth-icpt", "Auth as an interceptor (every call in a task)")):
        auth = results[wire]["calls"]
        ratio = statistics.median(
            a / p for a, p in zip(auth, results["tcp"]["calls"], strict=True))
        print(f"{label}, bearer token, tcp://, 64 in flight: {statistics.median(auth):,.0f} "
              f"calls/s, {ratio:.2f}x plain tcp://")


if __name__ == "__main__":
    main()
