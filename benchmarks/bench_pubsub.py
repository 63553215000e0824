"""Pub/Sub fan-out, side by side in one run (issue #12): messages/s delivered and
publish-to-receive latency (p50/p99) with 1, 10 and 100 subscribers, for

* wirecall's PubSub server (a subprocess) on Redis Pub/Sub (grpc:// and tcp://), on Redis
  Streams (each subscriber its own consumer group, so every one gets every message: fan-out)
  and on the in-memory broker;
* the tutorial's Go server (redigo, a SUBSCRIBE connection per subscriber) on the same Redis,
  driven over gRPC by the same wirecall client as wirecall's grpc:// server;
* redis-py publishing and subscribing directly (one PubSub connection per subscriber): the
  floor a Python user would write by hand.

Every contender is measured the same way, by the same worker processes: one **publisher
process** and ``--sub-procs`` **subscriber processes** (the subscribers spread over them), each
subscriber on its own connection (a redis-py ``PubSub`` connection, or a wirecall client
connection carrying one ``Subscribe`` stream); the servers and Redis run in their own
processes. Per message the publisher does one publish and waits for its reply (redis-py:
``PUBLISH`` answered with the receiver count; RPC servers: ``Publish`` answered with
``success``), ``--window`` of them in flight; each subscriber parses the message text.

Throughput: deliveries / (last delivery in any subscriber process - first publish).
Latency: then ``LATENCY_MESSAGES`` messages at a low fixed rate (one publish at a time, then
a pause of max(2 ms, 0.3 ms per subscriber)), each delivery's publish-to-receipt time
(CLOCK_MONOTONIC, shared by the processes). Rounds are interleaved (system order rotates)
and medians reported.

    .venv/bin/python benchmarks/bench_pubsub.py --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

LATENCY_MESSAGES = 200
IDLE = 10.0  # a subscriber process gives up after this long without a message


class Result:
    def __init__(self, rate: float, p50: float, p99: float, lost: int,
                 cpu: dict[str, float] | None = None) -> None:
        self.rate, self.p50, self.p99, self.lost = rate, p50, p99, lost
        #: CPU microseconds per delivery during the throughput phase, by process kind
        self.cpu = cpu or {}


def _cpu() -> float:
    """This process's CPU seconds (user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def proc_cpu(pid: int) -> float:
    """Another process's CPU seconds (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- worker processes -------------------------------------------------------------------

async def _line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def _say(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _rpc_connect(url: str) -> Any:
    import wirecall

    return await wirecall.connect(url, **({"codec": "proto"} if url.startswith("tcp") else {}))


async def sub_worker(spec: dict[str, Any]) -> None:
    """Subscribe ``spec["subs"]`` subscribers, say ready, count the throughput messages, say
    drained, then record the latency messages' publish-to-receipt times."""
    n_msgs, n_lat = spec["msgs"], spec["lat_msgs"]
    closers: list[Any] = []
    readers: list[Any] = []
    if spec["kind"] == "redis":
        import redis.asyncio as aioredis

        r = aioredis.Redis.from_url(spec["url"], protocol=2, max_connections=spec["subs"] + 4)
        closers.append(r.aclose)
        for _ in range(spec["subs"]):
            ps = r.pubsub(ignore_subscribe_messages=True)
            await ps.subscribe(spec["topic"])
            await ps.get_message(timeout=5)  # the subscribe confirmation
            closers.insert(0, ps.aclose)

            async def read(ps: Any = ps) -> str:
                while True:
                    msg = await ps.get_message(timeout=None)
                    if msg is not None and msg["type"] == "message":
                        return str(msg["data"].decode())

            readers.append(read)
    else:
        from wirecall.pubsub.service import PubSubStub, SubscribeRequest

        for i in range(spec["subs"]):
            client = await _rpc_connect(spec["url"])
            closers.append(client.close)
            md = {"wirecall-group": f"g{spec['first'] + i}"} if spec["kind"] == "streams" else {}
            if spec["kind"] != "go":
                md["wirecall-pubsub-confirm"] = "1"
            st = PubSubStub(client).Subscribe(SubscribeRequest(topic=spec["topic"]),
                                              metadata=md)
            closers.insert(0, st.cancel)
            if spec["kind"] != "go":  # the first message says the subscription is live
                await asyncio.wait_for(st.recv(), 20)

            async def read(st: Any = st) -> str:
                return str((await st.recv()).message)

            readers.append(read)
    _say({"ready": True})
    cpu0 = _cpu()
    got = [0]
    last = [0.0]
    lats: list[float] = []
    phase_done = asyncio.Event()
    drained = [0]
    progress = [0]  # messages read by this process (the watchdog's view)

    async def reader(read: Any) -> None:
        mine = 0
        try:
            while mine < n_msgs + n_lat:
                text = await read()
                now = time.monotonic()
                progress[0] += 1
                kind, sent, _ = text.split(" ", 2)
                if kind == "w":  # the publisher's warm-up, if it came after subscribing
                    continue
                mine += 1
                if kind == "t":
                    got[0] += 1
                    last[0] = max(last[0], now)
                    if mine == n_msgs:
                        drained[0] += 1
                        if drained[0] == len(readers):
                            phase_done.set()
                else:
                    lats.append(now - float(sent))
        except asyncio.CancelledError:  # the watchdog: nothing came for IDLE seconds
            if mine < n_msgs:
                drained[0] += 1  # gave up: count it as drained so the run goes on
                if drained[0] >= len(readers):
                    phase_done.set()

    tasks = [asyncio.ensure_future(reader(rd)) for rd in readers]

    async def watchdog() -> None:  # one timer for all readers, not one per message
        seen = -1
        while seen != progress[0]:
            seen = progress[0]
            await asyncio.sleep(IDLE)
        for t in tasks:
            t.cancel()

    dog = asyncio.ensure_future(watchdog())
    await phase_done.wait()
    _say({"drained": True, "cpu": _cpu() - cpu0})
    await asyncio.gather(*tasks)
    dog.cancel()
    _say({"got": got[0], "last": last[0], "lats": lats})
    for close in closers:
        r = close()
        if asyncio.iscoroutine(r):
            await r


async def pub_worker(spec: dict[str, Any]) -> None:
    """Say ready; on ``go`` publish the throughput messages and say the start time; on
    ``lat`` the latency messages, one at a time with a pause between them.

    ``mode`` ``each``: every publish waits for its reply, ``window`` in flight (redis-py:
    ``PUBLISH``; RPC servers: the unary ``Publish``). ``batch``: without a reply each:
    redis-py pipelines ``window`` ``PUBLISH`` per write (one batch in flight, its replies
    read together); wirecall streams them into ``PubSubStream.Publish`` (the server pipelines
    them to Redis; one reply at the end)."""
    topic, pad, mode = spec["topic"], "x" * 64, spec["mode"]
    stream: Any = None
    if spec["kind"] == "redis":
        import redis.asyncio as aioredis

        r = aioredis.Redis.from_url(spec["url"], protocol=2,
                                    max_connections=spec["window"] + 4)

        async def publish(m: str) -> Any:
            return await r.publish(topic, m)

        async def publish_batch(ms: list[str]) -> None:
            for i in range(0, len(ms), spec["window"]):
                pipe = r.pipeline(transaction=False)
                for m in ms[i:i + spec["window"]]:
                    pipe.publish(topic, m)
                await pipe.execute()

        close: Any = r.aclose
    else:
        from wirecall.pubsub.client import stream_publisher
        from wirecall.pubsub.service import PublishRequest, PubSubStub

        client = await _rpc_connect(spec["url"])
        stub = PubSubStub(client)

        async def publish(m: str) -> Any:
            if stream is not None:
                return await stream.send(topic, m)
            return await stub.Publish(PublishRequest(topic=topic, message=m), timeout=30)

        async def publish_batch(ms: list[str]) -> None:
            for m in ms:
                await stream.send(topic, m)

        async def close() -> None:
            if stream is not None:
                await stream.__aexit__(None, None, None)
            await client.close()

        if mode == "batch":
            stream = await stream_publisher(spec["url"], client=client).__aenter__()
    await publish(f"w 0 {pad}")  # warm the connection (no subscriber counts a "w")
    _say({"ready": True})
    await _line()
    cpu0 = _cpu()
    t0 = time.monotonic()
    if mode == "batch":
        await publish_batch([f"t {time.monotonic()} {i} {pad}" for i in range(spec["msgs"])])
    else:  # ``window`` publishers, each publishing the next message once its last is answered
        seq = iter(range(spec["msgs"]))

        async def lane() -> None:
            for i in seq:
                await publish(f"t {time.monotonic()} {i} {pad}")

        await asyncio.gather(*(lane() for _ in range(spec["window"])))
    _say({"t0": t0, "published": time.monotonic(), "cpu": _cpu() - cpu0})
    await _line()
    for i in range(spec["lat_msgs"]):
        await publish(f"l {time.monotonic()} {i}")
        await asyncio.sleep(spec["lat_gap"])
    _say({"done": True})
    await close()


async def server_worker(url: str, broker: str) -> None:
    """A wirecall PubSub server: the tutorial's ``PubSub`` and ``PubSubStream`` on one
    broker (``python -m wirecall.tutorial.pubsub serve`` serves the first only)."""
    from wirecall import Server
    from wirecall.pubsub.service import PubSub, PubSubStream

    server = Server()
    service = PubSub(broker)
    server.register(service)
    server.register(PubSubStream(service))
    print("listening on", *(await server.start(url)), flush=True)
    await server.serve_forever(handle_signals=True)


def worker_main(role: str, *argv: str) -> None:
    if role == "server":
        coro: Any = server_worker(*argv)
    else:
        spec = json.loads(argv[0])
        coro = sub_worker(spec) if role == "sub" else pub_worker(spec)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


# -- instruction counts (callgrind) ---------------------------------------------------------

#: name -> (scheme, broker kind, subscribers): the paths ``--instr-ab`` counts
INSTR_KINDS = {"tcp Pub/Sub 1": ("tcp", "ps", 1), "tcp Pub/Sub 10": ("tcp", "ps", 10),
               "tcp Streams 1": ("tcp", "st", 1), "tcp Streams 10": ("tcp", "st", 10),
               "tcp Streams 100": ("tcp", "st", 100), "tcp memory 1": ("tcp", "mem", 1),
               "grpc Pub/Sub 1": ("grpc", "ps", 1), "grpc Streams 10": ("grpc", "st", 10)}


async def instr_workload(kind: str, redis_url: str, n: int) -> None:
    """Server, publisher and subscribers on one loop (Redis outside): ``n`` messages
    published the "each" way (32 unary ``Publish`` in flight), every subscriber reading all.
    Run with ``n`` = 0 and ``n`` > 0: the difference is the cost of ``n`` x subscribers
    deliveries, on every side but Redis's."""
    from wirecall import Server
    from wirecall.pubsub.service import (
        PublishRequest,
        PubSub,
        PubSubStream,
        PubSubStub,
        SubscribeRequest,
    )

    scheme, broker, subs = INSTR_KINDS[kind]
    url = {"ps": redis_url, "mem": "memory://",
           "st": redis_url.replace("redis://", "redis+streams://") + "?maxlen=100000"}[broker]
    server = Server()
    service = PubSub(url)
    server.register(service)
    server.register(PubSubStream(service))
    [address] = await server.start(f"{scheme}://127.0.0.1:0")
    topic = f"instr{time.monotonic_ns()}"
    clients = [await _rpc_connect(address) for _ in range(subs + 1)]
    streams = []
    for i, c in enumerate(clients[1:]):
        md = {"wirecall-pubsub-confirm": "1"}
        if broker == "st":
            md["wirecall-group"] = f"g{i}"
        st = PubSubStub(c).Subscribe(SubscribeRequest(topic=topic), metadata=md)
        await asyncio.wait_for(st.recv(), 20)
        streams.append(st)
    stub = PubSubStub(clients[0])
    await stub.Publish(PublishRequest(topic=topic, message="w"), timeout=30)
    pad = "x" * 64

    async def read(st: Any) -> None:
        for _ in range(n + 1):  # the warm-up message, then the n
            await st.recv()

    readers = [asyncio.ensure_future(read(st)) for st in streams]
    seq = iter(range(n))

    async def lane() -> None:
        for i in seq:
            await stub.Publish(PublishRequest(topic=topic, message=f"t {i} {pad}"), timeout=30)

    await asyncio.gather(*(lane() for _ in range(32)))
    await asyncio.wait_for(asyncio.gather(*readers), 600)
    for st in streams:
        st.cancel()
    for c in clients:
        await c.close()
    await server.close()
    close = getattr(service.broker, "aclose", None)
    if close is not None:
        await close()


def instr_count(tree: Path, kind: str, redis_url: str, n: int) -> int:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    r = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                        sys.executable, __file__, "--instr-run", kind, redis_url, str(n)],
                       capture_output=True, text=True, env=env, timeout=3600)
    m = re.search(r"Collected : (\d+)", r.stderr)
    if r.returncode != 0 or m is None:
        raise SystemExit(f"callgrind failed for {tree} ({kind}):\n{r.stderr[-3000:]}")
    return int(m.group(1))


def instr_ab(trees: list[Path], messages: int, only: str) -> None:
    """Instructions per delivery (callgrind) of each ``INSTR_KINDS`` path, per tree."""
    from support.redis import RedisServer

    with RedisServer() as redis:
        print(f"# instructions per delivery (callgrind; {messages} messages minus 0, server, "
              "publisher and subscribers in one process, Redis outside)\n")
        print("| path | " + " | ".join(str(t) for t in trees)
              + (" | last/first |" if len(trees) > 1 else " |"))
        print("|---|" + "---:|" * (len(trees) + (len(trees) > 1)))
        for kind in INSTR_KINDS:
            if only and not any(o in kind for o in only.split(",")):
                continue
            subs = INSTR_KINDS[kind][2]
            n = max(100, messages // subs)
            per = [(instr_count(t.resolve(), kind, redis.url, n)
                    - instr_count(t.resolve(), kind, redis.url, 0)) / (n * subs)
                   for t in trees]
            print(f"| {kind} | " + " | ".join(f"{x:,.0f}" for x in per)
                  + (f" | {per[-1] / per[0]:.3f}x |" if len(trees) > 1 else " |"), flush=True)


# -- the orchestrator ----------------------------------------------------------------------

class Worker:
    def __init__(self, role: str, spec: dict[str, Any]) -> None:
        self.role, self.spec = role, spec
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Worker:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--worker", self.role, json.dumps(self.spec),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 26)
        return self

    async def read(self, timeout: float = 120) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"{self.role} worker exited ({self.spec['kind']})")
        return dict(json.loads(line))

    def tell(self, word: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(word.encode() + b"\n")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def numsub(r: Any, ch: str) -> int:
    return int(r.command("PUBSUB", "NUMSUB", ch).split(b"\r\n")[-2][1:])


async def measure(servers: Servers, system: str, n_subs: int, n_msgs: int,
                  args: argparse.Namespace) -> Result:
    kind, url = servers.target(system)
    topic = f"bench{time.monotonic_ns()}"
    procs = min(n_subs, args.sub_procs)
    base = {"kind": kind, "url": url, "topic": topic, "msgs": n_msgs,
            "lat_msgs": LATENCY_MESSAGES}
    subs = []
    first = 0
    for p in range(procs):
        k = n_subs // procs + (1 if p < n_subs % procs else 0)
        subs.append(Worker("sub", {**base, "subs": k, "first": first}))
        first += k
    pub = Worker("pub", {**base, "window": args.window,
                         "mode": "batch" if system in BATCH else "each",
                         "lat_gap": max(0.002, n_subs * 0.0003)})
    workers = [*subs, pub]
    try:
        await asyncio.gather(*(w.start() for w in workers))
        await asyncio.gather(*(w.read() for w in workers))  # ready
        if kind == "go":  # no confirmation: one Redis subscription per subscriber
            deadline = time.monotonic() + 20
            while numsub(servers.redis, topic) < n_subs and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        others = servers.pids(system)
        before = {k: proc_cpu(pid) for k, pid in others.items()}
        pub.tell("go")
        started = await pub.read()
        drained = await asyncio.gather(*(w.read(IDLE * 3) for w in subs))
        cpu = {k: proc_cpu(pid) - before[k] for k, pid in others.items()}
        cpu["publisher"] = started["cpu"]
        cpu["subscribers"] = sum(d["cpu"] for d in drained)
        pub.tell("lat")
        await pub.read()
        ends = await asyncio.gather(*(w.read(IDLE * 3) for w in subs))
    finally:
        for w in workers:
            await w.stop()
    total = sum(e["got"] for e in ends)
    last = max(e["last"] for e in ends) or time.monotonic()
    lats = sorted(x for e in ends for x in e["lats"])
    lost = (n_msgs + LATENCY_MESSAGES) * n_subs - total - len(lats)
    per = 1e6 / max(1, total)
    return Result(total / (last - started["t0"]),
                  lats[len(lats) // 2] * 1e3 if lats else 0,
                  lats[int(len(lats) * 0.99)] * 1e3 if lats else 0, lost,
                  {k: v * per for k, v in cpu.items()})


class Servers:
    """Redis, the wirecall servers (one per broker and wire) and the Go server, for the
    whole run."""

    def __init__(self) -> None:
        from support.redis import RedisServer

        self.redis = RedisServer().start()
        self.procs: list[subprocess.Popen[str]] = []
        self.urls: dict[str, str] = {}
        self.server_pids: dict[str, int] = {}

    def wirecall(self, name: str, scheme: str, broker: str) -> None:
        from support.servers import free_port

        url = f"{scheme}://127.0.0.1:{free_port()}"
        log = open(f"/tmp/bench_pubsub-{name}.log", "w")  # noqa: SIM115  (the server's log)
        p = subprocess.Popen([sys.executable, __file__, "--worker", "server", url, broker],
                             stdout=subprocess.PIPE, stderr=log,
                             text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line.startswith("listening on"), line
        self.procs.append(p)
        self.urls[name] = url
        self.server_pids[name] = p.pid

    def go(self) -> None:
        from interop.grpc_go import harness

        harness.build("pubsub_server")
        srv = harness.start("pubsub_server", "127.0.0.1:0", self.redis.address)
        self.procs.append(srv.proc)
        self.urls["go"] = f"grpc://{srv.addr}"
        self.server_pids["go"] = srv.proc.pid

    def start_for(self, systems: list[str]) -> None:
        redis_url = self.redis.url
        streams_url = redis_url.replace("redis://", "redis+streams://") + "?maxlen=100000"
        for system in systems:
            key = WIRECALL.get(BATCH.get(system, system))
            if key is not None and key not in self.urls:
                scheme, broker = key.split("-")
                self.wirecall(key, scheme, {"ps": redis_url, "st": streams_url,
                                            "mem": "memory://"}[broker])
        if "Go server (redigo)" in systems:
            self.go()

    def pids(self, system: str) -> dict[str, int]:
        """The server processes a system's messages go through: Redis, and its RPC server."""
        assert self.redis.proc is not None
        system = BATCH.get(system, system)
        out = {"redis": self.redis.proc.pid}
        key = "go" if system == "Go server (redigo)" else WIRECALL.get(system)
        if key is not None:
            out["server"] = self.server_pids[key]
        return out

    def target(self, system: str) -> tuple[str, str]:
        system = BATCH.get(system, system)
        if system == "redis-py direct":
            return "redis", self.redis.url
        if system == "Go server (redigo)":
            return "go", self.urls["go"]
        key = WIRECALL[system]
        return ("streams" if key.endswith("st") else "wirecall"), self.urls[key]

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(5)
        self.redis.close()


WIRECALL = {"wirecall grpc Pub/Sub": "grpc-ps", "wirecall tcp Pub/Sub": "tcp-ps",
            "wirecall grpc Streams": "grpc-st", "wirecall tcp Streams": "tcp-st",
            "wirecall grpc memory": "grpc-mem", "wirecall tcp memory": "tcp-mem"}
#: the publishers that do not wait per message (``mode`` ``batch``, see ``pub_worker``)
BATCH = {"redis-py direct (pipelined)": "redis-py direct",
         "wirecall tcp Pub/Sub (stream publish)": "wirecall tcp Pub/Sub",
         "wirecall grpc Pub/Sub (stream publish)": "wirecall grpc Pub/Sub",
         "wirecall tcp Streams (stream publish)": "wirecall tcp Streams"}
SYSTEMS = ["redis-py direct", "wirecall grpc Pub/Sub", "wirecall tcp Pub/Sub",
           "wirecall grpc Streams", "wirecall tcp Streams", "wirecall grpc memory",
           "wirecall tcp memory", "Go server (redigo)", *BATCH]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--deliveries", type=int, default=20_000,
                    help="messages x subscribers per measurement (at least 200 messages)")
    ap.add_argument("--window", type=int, default=32, help="publishes in flight")
    ap.add_argument("--sub-procs", type=int, default=4,
                    help="subscriber processes (the subscribers spread over them)")
    ap.add_argument("--subs", default="1,10,100")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--instr", nargs="+", type=Path, metavar="TREE",
                    help="count instructions per delivery (callgrind) with each source tree "
                         "instead (e.g. . or a before tree made by ab_trees.py's recipe)")
    ap.add_argument("--instr-messages", type=int, default=2000)
    ap.add_argument("--instr-only", default="",
                    help="--instr: the paths naming one of these (comma-separated)")
    args = ap.parse_args()
    if args.instr:
        instr_ab(args.instr, args.instr_messages, args.instr_only)
        return
    systems = args.systems.split(",")
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        ap.error(f"unknown system(s): {', '.join(unknown)}")
    servers = Servers()
    try:
        await asyncio.to_thread(servers.start_for, systems)
        results: dict[tuple[str, int], list[Result]] = {}
        for rnd in range(args.rounds):
            order = systems[rnd % len(systems):] + systems[:rnd % len(systems)]
            for n in (int(x) for x in args.subs.split(",")):
                n_msgs = max(200, args.deliveries // n)
                for system in order:
                    res = await measure(servers, system, n, n_msgs, args)
                    results.setdefault((system, n), []).append(res)
                    print(f"round {rnd + 1} {system:24} subs={n:<4} {res.rate:>10,.0f} msg/s "
                          f"p50 {res.p50:7.2f} ms p99 {res.p99:7.2f} ms lost {res.lost} "
                          f"load {os.getloadavg()[0]:.2f} cpu µs/delivery "
                          + " ".join(f"{k} {v:.1f}" for k, v in res.cpu.items()),
                          file=sys.stderr, flush=True)
        report(results, systems, [int(x) for x in args.subs.split(",")], args)
    finally:
        servers.close()


def report(results: dict[tuple[str, int], list[Result]], systems: list[str],
           subs: list[int], args: argparse.Namespace) -> None:
    def med(system: str, n: int, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in results[(system, n)])

    print(f"\n{args.rounds} interleaved rounds, medians; {args.deliveries} deliveries per "
          f"throughput measurement, {args.window} publishes in flight, subscribers in "
          f"{args.sub_procs} processes; latency: {LATENCY_MESSAGES} paced messages; "
          f"{os.cpu_count()} cores (shared), load average {os.getloadavg()}\n")
    def cpu(system: str, n: int, kind: str) -> str:
        vals = [r.cpu[kind] for r in results[(system, n)] if kind in r.cpu]
        return f"{statistics.median(vals):.1f}" if vals else "-"

    print("| system | subscribers | messages/s delivered | p50 ms | p99 ms | lost | "
          "CPU µs per delivery: server | Redis | publisher | subscribers |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in subs:
        for s in systems:
            print(f"| {s} | {n} | {med(s, n, 'rate'):,.0f} | {med(s, n, 'p50'):.2f} | "
                  f"{med(s, n, 'p99'):.2f} | {med(s, n, 'lost'):.0f} | "
                  + " | ".join(cpu(s, n, k) for k in ("server", "redis", "publisher",
                                                      "subscribers")) + " |")

    def ratio(a: str, b: str, n: int) -> str:
        if (a, n) not in results or (b, n) not in results:
            return "-"
        return f"{med(a, n, 'rate') / med(b, n, 'rate'):.2f}x"

    pairs = [("wirecall tcp Pub/Sub", "redis-py direct"), ("wirecall grpc Pub/Sub",
             "redis-py direct"), ("wirecall tcp Pub/Sub", "Go server (redigo)"),
             ("wirecall grpc Pub/Sub", "Go server (redigo)"),
             ("wirecall tcp Streams", "wirecall tcp Pub/Sub"),
             ("wirecall grpc Streams", "wirecall grpc Pub/Sub"),
             ("wirecall tcp Pub/Sub (stream publish)", "redis-py direct (pipelined)"),
             ("wirecall grpc Pub/Sub (stream publish)", "redis-py direct (pipelined)"),
             ("wirecall tcp Pub/Sub (stream publish)", "Go server (redigo)"),
             ("wirecall tcp Streams (stream publish)", "wirecall tcp Pub/Sub (stream publish)")]
    pairs = [(a, b) for a, b in pairs if a in systems and b in systems]
    print("\n| subscribers | " + " | ".join(f"{a} / {b}" for a, b in pairs) + " |")
    print("|---|" + "---|" * len(pairs))
    for n in subs:
        print(f"| {n} | " + " | ".join(ratio(a, b, n) for a, b in pairs) + " |")


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2], *sys.argv[3:])
    elif len(sys.argv) == 5 and sys.argv[1] == "--instr-run":
        try:
            import uvloop
        except ImportError:
            asyncio.run(instr_workload(sys.argv[2], sys.argv[3], int(sys.argv[4])))
        else:
            uvloop.run(instr_workload(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        try:  # the orchestrator only waits; workers and servers run on uvloop when installed
            import uvloop
        except ImportError:
            asyncio.run(main())
        else:
            uvloop.run(main())
