"""Transports under packet loss: tcp://, grpc:// and quic:// with 64 calls in flight over a
link with 20 ms RTT and 0 %, 1 % and 5 % loss; and on plain loopback, quic:// against
tcp:// with a profile of where the time goes.

The lossy link is a network namespace this script creates (``ip netns add``), whose loopback
gets ``tc qdisc add dev lo root netem delay 10ms loss N%`` and an MTU of 1500: every packet
crosses lo once each way, so the RTT is 20 ms and each packet (data or ACK) is lost with
probability N. The server and each client run inside it (``ip netns exec``) on 127.0.0.1.
Where the kernel has no netem (this sandbox: "Specified qdisc kind is unknown"), the same
link is made in user space (``lossy_link.py``): two namespaces joined by TUN devices and a
forwarder delaying each packet 10 ms each way and dropping N %, the server on 10.177.0.1 in
one, the clients in the other (a private range that exists only inside them). Namespaces
are deleted at the end (also on error or Ctrl-C). Needs root (CAP_NET_ADMIN).

Per transport and loss rate: a fresh client process makes 64 concurrent callers, each
calling ``Echo(512 bytes)`` in a loop for ``--seconds``; reported: p50 and p99 latency and
calls/s, medians over ``--rounds`` interleaved rounds.

    sudo .venv/bin/python benchmarks/bench_loss.py --rounds 2 --seconds 8
    .venv/bin/python benchmarks/bench_loss.py --loopback --seconds 3   # + pyinstrument profile
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from wirecall import method  # noqa: E402

SCHEMES = ("tcp", "grpc", "quic")
LOSSES = (0, 1, 5)
PAYLOAD = b"x" * 512
CONCURRENCY = 64


class Echo:
    @method(inline=True)  # cheap: runs on the loop (no worker-thread hop on any wire)
    def Echo(self, data: bytes) -> bytes:
        return data


# -- the network namespace -----------------------------------------------------------------
def sh(*cmd: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {(r.stderr or r.stdout).strip()}")


@contextlib.contextmanager
def namespace(name: str) -> Iterator[str]:
    """A fresh network namespace with lo up (MTU 1500); deleted on exit."""
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "mtu", "1500", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def set_link(ns: str, delay_ms: float, loss: float) -> None:
    """netem on the namespace's lo: ``delay`` each way, ``loss`` % of packets dropped."""
    subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "lo", "root"],
                   capture_output=True, check=False)
    args = ["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
            "delay", f"{delay_ms}ms"]
    if loss:
        args += ["loss", f"{loss}%"]
    sh(*args)


# -- server and client processes -------------------------------------------------------------
async def serve(certdir: str, host: str) -> None:
    from wirecall import Server
    from wirecall.transport.quic import write_self_signed

    crt, key = write_self_signed(certdir, (host, "localhost"))
    server = Server()
    server.register(Echo())
    urls = await server.start(f"tcp://{host}:0", f"grpc://{host}:0")
    cc = os.environ.get("WIRECALL_BENCH_QUIC_CC")
    urls += await server.start(f"quic://{host}:0", certfile=crt, keyfile=key,
                               **({"congestion_control": cc} if cc else {}))
    print(json.dumps({"urls": urls, "cafile": crt}), flush=True)
    await server.serve_forever()


async def client(url: str, cafile: str, seconds: float, concurrency: int,
                 rate: float = 0.0) -> dict[str, Any]:
    """``concurrency`` callers in a loop; with ``rate``, each caller starts a call every
    ``concurrency / rate`` s (below the transport's CPU limit, so latency is the link's)."""
    import wirecall

    opts: dict[str, Any] = {"cafile": cafile} if url.startswith("quic") else {}
    if url.startswith("quic") and os.environ.get("WIRECALL_BENCH_QUIC_CC"):
        opts["congestion_control"] = os.environ["WIRECALL_BENCH_QUIC_CC"]
    lat: list[float] = []
    async with await wirecall.connect(url, **opts) as c:
        assert await c.call("Echo.Echo", PAYLOAD) == PAYLOAD
        stop = time.monotonic() + seconds
        errors = 0

        gap = concurrency / rate if rate else 0.0

        async def worker(k: int) -> None:
            nonlocal errors
            if gap:
                await asyncio.sleep(gap * k / concurrency)  # spread the callers' phases
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                if gap:
                    next_at = time.monotonic() + gap
                try:
                    await c.call("Echo.Echo", PAYLOAD, timeout=30)
                except wirecall.RpcError:
                    errors += 1
                    continue
                lat.append(time.perf_counter() - t0)
                if gap:
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        t0 = time.perf_counter()
        await asyncio.gather(*[worker(k) for k in range(concurrency)])
        elapsed = time.perf_counter() - t0
    lat.sort()
    n = len(lat)
    return {"calls": n, "errors": errors, "rate": n / elapsed,
            "p50": lat[n // 2] * 1e3 if n else None,
            "p99": lat[min(n - 1, int(n * 0.99))] * 1e3 if n else None}


async def burst_client(url: str, cafile: str, n: int) -> None:
    """Warm the connection up, then on each ``go`` line from stdin fire ``n`` calls at once
    and print their latencies (ms) as a JSON list."""
    import wirecall

    opts = {"cafile": cafile} if url.startswith("quic") else {}
    loop = asyncio.get_running_loop()
    async with await wirecall.connect(url, **opts) as c:
        for _ in range(5):  # grow the congestion window past one burst
            await asyncio.gather(*[c.call("Echo.Echo", PAYLOAD) for _ in range(n)])
        print("ready", flush=True)
        while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "go":

            async def one() -> float:
                t0 = time.perf_counter()
                await c.call("Echo.Echo", PAYLOAD, timeout=30)
                return (time.perf_counter() - t0) * 1e3

            lat = await asyncio.gather(*[one() for _ in range(n)])
            print(json.dumps(lat), flush=True)


def hol(args: argparse.Namespace) -> None:
    """One chosen loss: the first data packet of a burst of 64 calls is dropped, and we
    count the calls it delays. Behind a lost TCP segment every later byte waits (all calls
    whose requests follow it); on QUIC only the streams with bytes in the lost packet."""
    from lossy_link import TunLink

    rows = []
    with TunLink(f"wcA{os.getpid() % 10000}", f"wcB{os.getpid() % 10000}",
                 "10.177.0.1", "10.177.0.2") as link, \
            server_process(link.ns_a, link.addr_a) as (urls, cafile):
        link.set(10, 0)
        for scheme in SCHEMES:
            cmd = ["ip", "netns", "exec", link.ns_b, sys.executable, __file__, "--burst",
                   urls[scheme], "--cafile", cafile]
            p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert p.stdin is not None and p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
            results: dict[bool, list[list[float]]] = {False: [], True: []}
            for trial in range(2 * args.trials):
                dropped = trial % 2 == 1
                time.sleep(0.1)
                if dropped:
                    link.drop_next(400)
                p.stdin.write("go\n")
                p.stdin.flush()
                results[dropped].append(json.loads(p.stdout.readline()))
            p.stdin.close()
            p.wait(10)
            # a call "delayed by the loss": slower than the slowest call of a loss-free burst
            clean_worst = statistics.median(max(b) for b in results[False])
            for dropped in (False, True):
                bursts = results[dropped]
                late = [sum(1 for x in b if x > clean_worst) for b in bursts]
                p50 = statistics.median(statistics.median(b) for b in bursts)
                worst = statistics.median(max(b) for b in bursts)
                rows.append((scheme, dropped, statistics.median(late), p50, worst))
                print(f"{scheme} drop={dropped}: late per burst {late}", file=sys.stderr)
    print(f"\nOne lost packet in a burst of {CONCURRENCY} calls (20 ms RTT; medians of "
          f"{args.trials} bursts each)\n")
    print("| transport | first data packet lost | calls slower than the slowest loss-free call "
          "| burst p50 ms | slowest call ms |")
    print("|---|---|---:|---:|---:|")
    for scheme, dropped, late, p50, worst in rows:
        print(f"| {scheme}:// | {'yes' if dropped else 'no'} | {late:g} of {CONCURRENCY} | "
              f"{p50:.1f} | {worst:.1f} |")


def run_client(ns: str | None, url: str, cafile: str, seconds: float,
               rate: float = 0.0) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--client", url, "--cafile", cafile,
           "--seconds", str(seconds), "--rate", str(rate)]
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 4 + 60,
                       check=False)
    if r.returncode != 0:
        raise RuntimeError(f"client {url} failed: {r.stderr.strip()[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@contextlib.contextmanager
def server_process(ns: str | None, host: str = "127.0.0.1",
                   ) -> Iterator[tuple[dict[str, str], str]]:
    with tempfile.TemporaryDirectory(prefix="wirecall-loss-") as d:
        cmd = [sys.executable, __file__, "--serve", d, "--host", host]
        if ns:
            cmd = ["ip", "netns", "exec", ns, *cmd]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        try:
            assert p.stdout is not None
            info = json.loads(p.stdout.readline())
            urls = {u.split("://")[0]: u for u in info["urls"]}
            yield urls, info["cafile"]
        finally:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


class NetemLink:
    """One namespace whose lo carries netem: server and clients both inside it."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.server_ns = self.client_ns = ns
        self.host = "127.0.0.1"

    def set(self, delay_ms: float, loss: float) -> None:
        set_link(self.ns, delay_ms, loss)


@contextlib.contextmanager
def lossy_link() -> Iterator[Any]:
    """netem in a namespace if the kernel has it, else the user-space TUN link."""
    from lossy_link import TunLink

    name = f"wcloss{os.getpid()}"
    with namespace(name) as ns:
        try:
            set_link(ns, 10, 0)
            netem_error = None
        except RuntimeError as exc:
            netem_error = str(exc)
        if netem_error is None:
            yield NetemLink(ns)
            return
    print(f"netem unavailable ({netem_error}): using the user-space TUN link "
          "(benchmarks/lossy_link.py)", file=sys.stderr)
    with TunLink(f"wcA{os.getpid() % 10000}", f"wcB{os.getpid() % 10000}",
                 "10.177.0.1", "10.177.0.2") as link:
        link.server_ns, link.client_ns, link.host = link.ns_a, link.ns_b, link.addr_a
        yield link


def lossy(args: argparse.Namespace) -> None:
    results: dict[tuple[int, str], list[dict[str, Any]]] = {}
    with lossy_link() as link, server_process(link.server_ns, link.host) as (urls, cafile):
        for rnd in range(args.rounds):
            for loss in LOSSES:
                link.set(10, loss)
                order = SCHEMES if rnd % 2 == 0 else tuple(reversed(SCHEMES))
                for scheme in order:
                    r = run_client(link.client_ns, urls[scheme], cafile, args.seconds)
                    results.setdefault((loss, scheme), []).append(r)
                    print(f"round {rnd + 1} loss {loss}% {scheme}: {r}", file=sys.stderr)
                    if args.paced:
                        r = run_client(link.client_ns, urls[scheme], cafile, args.seconds,
                                       args.paced)
                        results.setdefault((loss, scheme + " paced"), []).append(r)
                        print(f"round {rnd + 1} loss {loss}% {scheme} paced: {r}",
                              file=sys.stderr)
    modes = [("", "64 callers, as fast as they can")]
    if args.paced:
        modes.append((" paced", f"64 callers paced to {args.paced:g} calls/s in all"))
    for suffix, title in modes:
        print(f"\n{title} (20 ms RTT; medians of {args.rounds} rounds)\n")
        print("| loss | transport | p50 ms | p99 ms | calls/s | errors |")
        print("|---:|---|---:|---:|---:|---:|")
        for loss in LOSSES:
            for scheme in SCHEMES:
                rs = results[(loss, scheme + suffix)]
                med = {k: statistics.median(r[k] for r in rs) for k in ("p50", "p99", "rate")}
                err = sum(r["errors"] for r in rs)
                print(f"| {loss}% | {scheme}:// | {med['p50']:.1f} | {med['p99']:.1f} | "
                      f"{med['rate']:,.0f} | {err} |")


async def in_process(scheme: str, seconds: float, certdir: str) -> dict[str, Any]:
    from wirecall import Server
    from wirecall.transport.quic import write_self_signed

    crt, key = write_self_signed(certdir)
    server = Server()
    server.register(Echo())
    opts = {"certfile": crt, "keyfile": key} if scheme == "quic" else {}
    [url] = await server.start(f"{scheme}://127.0.0.1:0", **opts)
    try:
        return await client(url, crt, seconds, CONCURRENCY)
    finally:
        await server.close(drain_timeout=1)


def loopback(args: argparse.Namespace) -> None:
    """quic:// vs tcp:// on plain loopback, 64 in flight, server and client in separate
    processes; then one in-process run of each under pyinstrument (where the time goes)."""
    rates: dict[str, list[float]] = {"tcp": [], "quic": []}
    with server_process(None) as (urls, cafile):
        for rnd in range(args.rounds):
            for scheme in (("tcp", "quic") if rnd % 2 == 0 else ("quic", "tcp")):
                r = run_client(None, urls[scheme], cafile, args.seconds)
                rates[scheme].append(r["rate"])
                print(f"round {rnd + 1} {scheme}: {r}", file=sys.stderr)
    tcp, quic = statistics.median(rates["tcp"]), statistics.median(rates["quic"])
    print("| transport (loopback, 64 in flight) | calls/s | vs tcp:// |")
    print("|---|---:|---:|")
    print(f"| tcp:// | {tcp:,.0f} | 1.00x |")
    print(f"| quic:// | {quic:,.0f} | {quic / tcp:.2f}x |")
    if args.profile:
        profile(args.seconds)


def profile(seconds: float) -> None:
    """One process, client and server on one loop, under pyinstrument: the share of time
    in aioquic, wirecall, asyncio and the rest, per transport."""
    from pyinstrument import Profiler

    for scheme in ("tcp", "quic"):
        with tempfile.TemporaryDirectory() as d:
            prof = Profiler(interval=0.0005)
            prof.start()
            r = asyncio.run(in_process(scheme, seconds, d))
            prof.stop()
        shares: dict[str, float] = {}
        session = prof.last_session
        assert session is not None
        root = session.root_frame()
        assert root is not None
        total = root.time

        def walk(frame: Any, parent: str = "", shares: dict[str, float] = shares) -> None:
            own = max(0.0, frame.time - sum(c.time for c in frame.children))
            # pyinstrument's synthetic frames ("[self]", "[await]") have no file: the caller's
            path = frame.file_path or parent
            if path.startswith("<"):  # C code (<built-in>): charged to its Python caller
                path = parent
            if "/aioquic/" in path:
                key = "aioquic (QUIC + TLS + packet crypto)"
            elif "/cryptography/" in path or "pylsqpack" in path:
                key = "cryptography (AEAD, header protection)"
            elif "/wirecall/" in path:
                key = "wirecall"
            elif "/asyncio/" in path or "selectors" in path or "uvloop" in path:
                key = "asyncio / event loop / sockets"
            elif "msgspec" in path:
                key = "msgspec"
            else:
                key = "other"
            shares[key] = shares.get(key, 0.0) + own
            for c in frame.children:
                walk(c, path)

        walk(root)
        print(f"\n{scheme}:// in one process for {seconds:g}s ({r['rate']:,.0f} calls/s under "
              "the profiler): where the time goes")
        print("| part | share |")
        print("|---|---:|")
        for k, v in sorted(shares.items(), key=lambda kv: -kv[1]):
            print(f"| {k} | {v / total:.0%} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--loopback", action="store_true", help="quic vs tcp on plain loopback")
    ap.add_argument("--profile", action="store_true", help="with --loopback: pyinstrument")
    ap.add_argument("--serve", metavar="CERTDIR", help=argparse.SUPPRESS)
    ap.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    ap.add_argument("--cafile", help=argparse.SUPPRESS)
    ap.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    ap.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--burst", metavar="URL", help=argparse.SUPPRESS)
    ap.add_argument("--hol", action="store_true",
                    help="one chosen lost packet per burst of 64 calls (TUN link)")
    ap.add_argument("--trials", type=int, default=15)
    ap.add_argument("--paced", type=float, default=400.0,
                    help="also run each case with the callers paced to this many calls/s "
                         "in all (0: off)")
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.host))
    elif args.burst:
        asyncio.run(burst_client(args.burst, args.cafile, CONCURRENCY))
    elif args.hol:
        hol(args)
    elif args.client:
        print(json.dumps(asyncio.run(client(args.client, args.cafile, args.seconds,
                                            CONCURRENCY, args.rate))))
    elif args.loopback:
        loopback(args)
    else:
        lossy(args)


if __name__ == "__main__":
    main()
