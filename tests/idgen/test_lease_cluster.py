"""ID nodes (``wirecall idgen serve`` processes) leasing worker ids from a real etcd (and
ZooKeeper): 1M IDs from 3 nodes, kill -9 and a restart with the clock 10 s back, and the
registry made unreachable (etcd SIGSTOPped)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from support.etcd import EtcdServer
from support.idgen import NodeProcess, data_dir
from wirecall.client import Client
from wirecall.errors import Unavailable
from wirecall.idgen.snowflake import Layout

LAYOUT = Layout()


def node(registry: str, prefix: str, tmp: Path, name: str, *extra: str,
         env: dict[str, str] | None = None, ttl: float = 4.0) -> NodeProcess:
    # ttl 4 s (fence at 3 s after a renewal, renewals every 1.3 s): a loaded 2-core machine
    # can delay a renewal past a 2 s ttl's fence, and then the node rightly refuses
    return NodeProcess("--registry", registry, "--prefix", prefix, "--ttl", str(ttl),
                       "--data-dir", data_dir(tmp, name), *extra, env=env)


Calls = list[tuple[str, int, list[int]]]


REFUSED: list[str] = []


async def call_retrying(c: Client, *args: Any) -> Any:
    """A refused call (UNAVAILABLE: on this loaded shared machine a renewal can come late
    enough for the fence to stop a node for a moment) is retried, as a client would."""
    for _ in range(200):
        try:
            return await c.call(*args)
        except Unavailable as exc:
            REFUSED.append(exc.message)
            await asyncio.sleep(0.05)
    raise AssertionError(f"refused for 10 s: {REFUSED[-1]}")


async def pull(url: str, batches: int, size: int, out: Calls) -> None:
    """One client: ``batches`` Batch calls (and a Next after each), recorded in order."""
    me = id(object())
    async with Client(url) as c:
        for _ in range(batches):
            out.append((url, me, await call_retrying(c, "IdGen.Batch", "t", size)))
            out.append((url, me, [await call_retrying(c, "IdGen.Next", "t")]))


def check_per_node(calls: Calls, distinct_workers: bool = True) -> dict[str, int]:
    """Every ID unique; each node's IDs carry one worker id; each node's IDs strictly increase
    in the order it issued them: within a call, and from one call to the next call a client
    made after the first returned (concurrent calls of other clients may interleave)."""
    every = [i for _, _, ids in calls for i in ids]
    assert len(set(every)) == len(every), "duplicate IDs"
    workers: dict[str, int] = {}
    last: dict[tuple[str, int], int] = {}
    for url, client, ids in calls:
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        ws = {LAYOUT.decode(i).worker for i in ids}
        assert len(ws) == 1
        assert workers.setdefault(url, ws.pop()) == LAYOUT.decode(ids[0]).worker
        prev = last.get((url, client))
        assert prev is None or ids[0] > prev, "a node issued a smaller ID later"
        last[(url, client)] = ids[-1]
    if distinct_workers:
        assert len(set(workers.values())) == len(workers), "two nodes share a worker id"
    return workers


async def test_three_nodes_one_million_ids(etcd_server: Any, tmp_path: Path) -> None:
    nodes = [node(etcd_server.url, "/t/million", tmp_path, f"n{i}").start() for i in range(3)]
    try:
        assert sorted(n.worker for n in nodes) == [0, 1, 2]  # type: ignore[type-var]
        calls: Calls = []
        # 5 concurrent clients over the 3 nodes, 10_000 per Batch: 1,000,000 + 100 Next IDs
        await asyncio.wait_for(asyncio.gather(*(
            pull(nodes[i % 3].url, 20, 10_000, calls) for i in range(5))), 120)
        total = sum(len(ids) for _, _, ids in calls)
        assert total == 1_000_100
        workers = check_per_node(calls)
        assert sorted(workers.values()) == [0, 1, 2]
    finally:
        for n in nodes:
            n.stop()


@pytest.mark.parametrize("kind", ["etcd_server", "zookeeper_server"])
async def test_kill9_restart_clock_back_waits_for_the_lease_and_refuses(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Only 3 worker ids for 3 nodes: the restarted node must wait for the killed node's
    lease (etcd lease / ZooKeeper session) to expire, then its clock (10 s back) is behind
    that id's last possible time: it refuses with UNAVAILABLE rather than repeat an ID."""
    url = request.getfixturevalue(kind).url
    args = ("--max-workers", "3")
    nodes = [node(url, "/t/kill", tmp_path, f"n{i}", *args, ttl=3).start()
             for i in range(3)]
    restarted = None
    try:
        calls: Calls = []
        await asyncio.gather(*(pull(n.url, 5, 5000, calls) for n in nodes))
        victim = nodes[0]
        victim.kill()
        killed_at = time.monotonic()
        restarted = node(url, "/t/kill", tmp_path, "n0", *args, ttl=3,
                         env={"WIRECALL_IDGEN_CLOCK_OFFSET_MS": "-10000"})
        restarted.start()  # blocks until a worker id is free
        waited = time.monotonic() - killed_at
        # renewals run every ttl/3, so the dead lease lived at least 2/3 of its 3 s ttl
        assert waited >= 3.0 * 2 / 3 - 0.1, f"worker id reused {waited:.2f}s after kill -9"
        assert restarted.worker == victim.worker
        assert any("clock offset -10000 ms" in e for e in restarted.events)
        async with Client(restarted.url) as c:
            with pytest.raises(Unavailable, match="behind"):
                await c.call("IdGen.Next", "t")
            with pytest.raises(Unavailable, match="behind"):
                await c.call("IdGen.Batch", "t", 100)
        # the other nodes go on; nothing repeats
        await asyncio.gather(*(pull(n.url, 3, 5000, calls) for n in nodes[1:]))
        check_per_node(calls)
    finally:
        for n in [*nodes, *([restarted] if restarted else [])]:
            n.stop()


async def test_kill9_restart_clock_back_takes_another_id_no_duplicate(
        etcd_server: Any, tmp_path: Path) -> None:
    nodes = [node(etcd_server.url, "/t/kill2", tmp_path, f"n{i}").start() for i in range(3)]
    restarted = None
    try:
        calls: Calls = []
        await asyncio.gather(*(pull(n.url, 5, 5000, calls) for n in nodes))
        nodes[0].kill()
        restarted = node(etcd_server.url, "/t/kill2", tmp_path, "n0",
                         env={"WIRECALL_IDGEN_CLOCK_OFFSET_MS": "-10000"}).start()
        # the dead node's id is still leased: the restart takes a fresh one, and issues
        assert restarted.worker not in (n.worker for n in nodes)
        await pull(restarted.url, 5, 5000, calls)
        await asyncio.gather(*(pull(n.url, 2, 5000, calls) for n in nodes[1:]))
        check_per_node(calls)
        t = LAYOUT.decode(calls[-1][2][0]).time_ms
        restarted_times = [LAYOUT.decode(ids[0]).time_ms for u, _, ids in calls
                           if u == restarted.url]
        assert max(restarted_times) < t - 8000  # its clock really was 10 s back
    finally:
        for n in [*nodes, *([restarted] if restarted else [])]:
            n.stop()


@pytest.mark.parametrize("kind", ["etcd", "zookeeper"])
async def test_registry_unreachable_stops_issuing_before_the_lease_can_expire(
        kind: str, tmp_path: Path) -> None:
    ttl, margin = 3.0, 1.5
    from support.zookeeper import ZooKeeperServer

    with (EtcdServer() if kind == "etcd" else ZooKeeperServer()) as reg:
        n = NodeProcess("--registry", reg.url, "--prefix", "/t/outage", "--ttl", str(ttl),
                        "--margin", str(margin), "--data-dir", data_dir(tmp_path, "n")).start()
        assert reg.proc is not None
        try:
            async with Client(n.url, call_timeout=5) as c:
                before = await c.call("IdGen.Batch", "t", 1000)
                os.kill(reg.proc.pid, signal.SIGSTOP)
                stopped = time.monotonic()
                last_ok, refusal = await issue_until_refused(c)
                print(f"{kind}: stopped issuing {last_ok - stopped:.3f}s after the registry "
                      f"stopped answering: {refusal}")
                # the registry received no renewal after `stopped`, and renewals run every
                # ttl/3: it cannot expire the lease before stopped + 2/3 ttl
                assert last_ok - stopped < ttl * 2 / 3, (last_ok - stopped)
                assert "fence" in refusal or "horizon" in refusal, refusal
                await asyncio.sleep(0.3)
                with pytest.raises(Unavailable):
                    await c.call("IdGen.Next", "t")
                os.kill(reg.proc.pid, signal.SIGCONT)
                after = await resumed(c, 30.0)
            assert min(after) > 0 and not set(after) & set(before)
        finally:
            os.kill(reg.proc.pid, signal.SIGCONT)
            n.stop()


async def issue_until_refused(c: Client) -> tuple[float, str]:
    last_ok = time.monotonic()
    deadline = last_ok + 15
    while time.monotonic() < deadline:
        try:
            await c.call("IdGen.Next", "t")
            last_ok = time.monotonic()
        except Unavailable as exc:
            return last_ok, exc.message
        await asyncio.sleep(0.005)
    raise AssertionError("still issuing 15 s after the registry stopped answering")


async def resumed(c: Client, within: float) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            return list(await c.call("IdGen.Batch", "t", 100))
        except Unavailable:
            await asyncio.sleep(0.2)
    raise AssertionError(f"not issuing again {within}s after the registry came back")


async def test_zookeeper_leases_three_nodes(zookeeper_server: Any, tmp_path: Path) -> None:
    nodes = [node(zookeeper_server.url, "/t/zk", tmp_path, f"z{i}").start() for i in range(3)]
    try:
        calls: Calls = []
        await asyncio.gather(*(pull(nodes[i % 3].url, 10, 10_000, calls) for i in range(3)))
        assert sorted(check_per_node(calls).values()) == [0, 1, 2]
        # a clean stop gives the id back at once: a new node takes it without waiting
        nodes[1].stop()
        t0 = time.monotonic()
        again = node(zookeeper_server.url, "/t/zk", tmp_path, "z1").start()
        nodes[1] = again
        assert again.worker == 1 and time.monotonic() - t0 < 10
        await pull(again.url, 3, 10_000, calls)
        check_per_node(calls, distinct_workers=False)
    finally:
        for n in nodes:
            n.stop()


async def test_lost_lease_fences_then_reacquires(etcd_server: Any, tmp_path: Path) -> None:
    """The registry revokes the node's lease (as after an expiry): the node stops at once,
    acquires an id again, and its IDs continue above everything issued before."""
    import json
    import subprocess

    n = node(etcd_server.url, "/t/revoke", tmp_path, "n").start()
    try:
        async with Client(n.url) as c:
            before = list(await c.call("IdGen.Batch", "t", 5000))
            endpoint = etcd_server.url.replace("etcd://", "http://")
            env = dict(os.environ, ETCDCTL_API="3")
            got = subprocess.run(["etcdctl", "--endpoints", endpoint, "get",
                                  f"/t/revoke/lock/{n.worker}", "--print-value-only"],
                                 capture_output=True, text=True, env=env, timeout=10)
            lease_id = json.loads(got.stdout)["lease"]
            r = subprocess.run(["etcdctl", "--endpoints", endpoint, "lease", "revoke",
                                format(lease_id, "x")], capture_output=True, text=True,
                               env=env, timeout=10)
            assert r.returncode == 0, r.stderr
            # the node notices within a renewal (ttl/4 .. ttl/3), stops, takes an id again
            _, refusal = await issue_until_refused(c)
            assert "fence" in refusal or "behind" in refusal, refusal
            after = await resumed(c, 20.0)
        assert min(after) > max(before)
        assert not set(after) & set(before)
    finally:
        n.stop()
    assert "lease of worker" in n.stderr() and "lost" in n.stderr()


async def test_reservation_never_goes_down_when_the_clock_steps_back(
        etcd_server: Any, tmp_path: Path) -> None:
    """In process against the real etcd: a clock stepped back must not lower the persisted
    horizon a successor starts above (locally or in the registry)."""
    import json

    from wirecall.cluster.registry import open_registry
    from wirecall.idgen.lease import WorkerLease
    from wirecall.idgen.state import LocalState

    reg = open_registry(etcd_server.url)
    state = LocalState(tmp_path / "s.json")
    lease = WorkerLease(reg, prefix="/t/never-down", ttl=4, state=state)
    try:
        gen = await lease.acquire(10)
        key = f"/t/never-down/state/{gen.worker_id}"
        first = json.loads(await reg.get(key) or b"{}")["until_ms"]
        lease.clock_offset_ms = -10_000
        assert await lease.reserve()
        second = json.loads(await reg.get(key) or b"{}")["until_ms"]
        assert second >= first
        assert state.get(lease._local_key(gen.worker_id)) >= first
    finally:
        await lease.close()
        await reg.close()
