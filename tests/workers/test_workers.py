"""``wirecall serve --workers N`` with real processes and signals: N workers share tcp:// and
grpc:// listeners (SO_REUSEPORT) and a unix:// listener (bound once by the supervisor,
inherited), a killed worker is restarted, SIGHUP replaces every worker without failing a call
(fresh connections and long-lived clients alike), SIGTERM drains them all and the supervisor
exits 0."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wirecall.sync import connect

ROOT = Path(__file__).resolve().parents[2]
WHO = f"{Path(__file__).with_name('who.py')}:Who"


def children(pid: int) -> set[int]:
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(d.name))
    return out


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    env.pop("WIRECALL_WORKER", None)
    env.pop("WIRECALL_WORKER_FDS", None)
    return env


class Supervisor:
    def __init__(self, n: int, listen: list[str], *extra: str) -> None:
        cmd = [sys.executable, "-m", "wirecall.cli", "serve", WHO, "--workers", str(n), *extra]
        for url in listen:
            cmd += ["--listen", url]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=_env())
        self.lines: list[str] = []
        self.urls: list[str] = []
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while not any(x.startswith("workers:") for x in self.lines):
            line = self.proc.stdout.readline()
            assert line, f"supervisor ended: {self.lines}"
            self.lines.append(line.rstrip())
            if line.startswith("listening on "):
                self.urls.append(line.split()[-1])
            assert time.monotonic() < deadline, self.lines
        assert len(self.urls) == len(listen), self.lines
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait_children(self, pred: Callable[[set[int]], bool], timeout: float = 20) -> set[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kids = children(self.proc.pid)
            if pred(kids):
                return kids
            time.sleep(0.1)
        raise AssertionError(f"children {children(self.proc.pid)}; log {self.lines}")

    def wait_line(self, prefix: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not any(x.startswith(prefix) for x in self.lines):
            assert time.monotonic() < deadline, self.lines
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            for k in children(self.proc.pid):
                os.kill(k, signal.SIGKILL)
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def sock_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="wc-workers-") as d:
        yield d


@pytest.fixture
def sup(sock_dir: str) -> Iterator[Supervisor]:
    s = Supervisor(2, ["tcp://127.0.0.1:0", "grpc://127.0.0.1:0", f"unix://{sock_dir}/w.sock"])
    yield s
    s.close()


def _pids_on_fresh_connections(url: str, n: int) -> set[int]:
    seen = set()
    for i in range(n):
        with connect(url, timeout=5) as c:
            assert c.call("Who.Add", i, 1) == i + 1
            seen.add(c.call("Who.Pid"))
    return seen


def test_workers_share_listeners_and_are_restarted(sup: Supervisor) -> None:
    kids = sup.wait_children(lambda k: len(k) == 2)
    for url in sup.urls:  # tcp:// and grpc:// (SO_REUSEPORT), unix:// (inherited socket)
        pids = _pids_on_fresh_connections(url, 30)
        assert pids <= kids, (url, pids, kids)
    # unix://: one accept queue for both workers: while one is busy, the other accepts
    with connect(sup.urls[2], timeout=5) as busy:
        held = busy.go("Who.Hold", 1.5)
        time.sleep(0.3)
        other = _pids_on_fresh_connections(sup.urls[2], 5)
        assert held.result(10) not in other and other <= kids, (held.result(), other, kids)
    victim = min(kids)
    os.kill(victim, signal.SIGKILL)
    kids2 = sup.wait_children(lambda k: len(k) == 2 and victim not in k)
    [new] = kids2 - kids
    for url in sup.urls:  # the replacement serves on every listener, the dead one nowhere
        deadline = time.monotonic() + 20
        pids: set[int] = set()
        while new not in pids:
            assert time.monotonic() < deadline, (url, pids)
            pids |= _pids_on_fresh_connections(url, 5)
        assert pids <= kids2
    assert any("restarting" in x for x in sup.lines)


def test_share_inherit_serves_tcp_and_grpc_from_one_socket() -> None:
    """``--share inherit``: tcp:// and grpc:// bound once by the supervisor (one port, one
    accept queue); while one worker is blocked, the other serves new connections."""
    sup = Supervisor(2, ["tcp://127.0.0.1:0", "grpc://127.0.0.1:0"], "--share", "inherit")
    try:
        kids = sup.wait_children(lambda k: len(k) == 2)
        for url in sup.urls:
            assert _pids_on_fresh_connections(url, 10) <= kids
            with connect(url, timeout=5) as busy:
                held = busy.go("Who.Hold", 1.5)
                time.sleep(0.3)
                other = _pids_on_fresh_connections(url, 3)
                assert held.result(10) not in other and other <= kids, (url, other, kids)
    finally:
        sup.close()


def test_sighup_loses_no_call_and_sigterm_drains(sup: Supervisor) -> None:
    """Through a SIGHUP (each worker replaced, the old one draining), clients that open a
    connection per call and clients that keep one (and redial after a GOAWAY) see no failed
    call at all: no retry, no UNAVAILABLE."""
    kids = sup.wait_children(lambda k: len(k) == 2)
    errors: list[tuple[str, BaseException]] = []
    counts: dict[str, int] = {}
    pids: dict[str, set[int]] = {}
    stop = threading.Event()
    limit = 2000  # calls per client at most (bounded whatever the machine's speed)

    def fresh(url: str) -> None:
        key = f"fresh {url}"
        while not stop.is_set() and counts.get(key, 0) < limit:
            try:
                with connect(url, timeout=5) as c:
                    assert c.call("Who.Add", 1, 1) == 2
                counts[key] = counts.get(key, 0) + 1
            except BaseException as exc:
                errors.append((key, exc))

    def kept(url: str) -> None:
        key = f"kept {url}"
        with connect(url, timeout=5) as c:
            while not stop.is_set() and counts.get(key, 0) < limit:
                try:
                    pids.setdefault(key, set()).add(c.call("Who.Pid"))
                    counts[key] = counts.get(key, 0) + 1
                except BaseException as exc:
                    errors.append((key, exc))
                time.sleep(0.002)

    threads = [threading.Thread(target=f, args=(u,)) for u in sup.urls for f in (fresh, kept)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    os.kill(sup.proc.pid, signal.SIGHUP)
    sup.wait_children(lambda k: len(k) == 2 and not (k & kids), timeout=30)
    sup.wait_line("replaced")
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(20)
    assert not errors, f"{len(errors)} failed calls during SIGHUP, first: {errors[0]!r}"
    print(counts)
    assert len(counts) == 6 and min(counts.values()) > 5, counts
    new = children(sup.proc.pid)
    for key, seen in pids.items():  # a kept client moved from old workers to new ones
        assert seen & kids and seen & new, (key, seen, kids, new)
    for url in sup.urls:  # every listener (the inherited one too) still taken, by new workers
        assert _pids_on_fresh_connections(url, 5) <= new
    # SIGTERM: all workers drain, the supervisor exits 0 and removes its unix socket
    os.kill(sup.proc.pid, signal.SIGTERM)
    assert sup.proc.wait(20) == 0
    assert not children(sup.proc.pid)
    time.sleep(0.2)
    assert any(x == "stopped" for x in sup.lines), sup.lines
    assert not os.path.exists(sup.urls[2][len("unix://"):])


def _refused(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "wirecall.cli", "serve", WHO, *args],
                       capture_output=True, text=True, env=_env(), timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    return r.stderr


def test_quic_and_reuseport_unix_are_refused_with_workers(sock_dir: str) -> None:
    err = _refused("--listen", "quic://127.0.0.1:0", "--workers", "2")
    assert "--workers cannot share quic:// listeners (quic://127.0.0.1:0)" in err
    assert "UDP" in err
    err = _refused("--listen", f"unix://{sock_dir}/x.sock", "--workers", "2",
                   "--share", "reuseport")
    assert "--share reuseport cannot share unix://" in err
    err = _refused("--workers", "0")
    assert "--workers must be at least 1, got 0" in err


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        body: bytes = r.read()
        return body


def test_admin_is_served_once_by_the_supervisor_for_every_worker() -> None:
    """``--admin URL --workers 2``: the supervisor binds URL once (each worker has its own
    admin on loopback port 0) and merges the workers' /metrics, each sample labelled with
    its worker."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    admin = f"http://127.0.0.1:{port}"
    sup = Supervisor(2, ["tcp://127.0.0.1:0"], "--admin", admin, "--metrics")
    try:
        assert f"admin on {admin} (the 2 workers' admin listeners, aggregated)" in sup.lines
        kids = sup.wait_children(lambda k: len(k) == 2)
        deadline = time.monotonic() + 20
        while len(workers := json.loads(_get(f"{admin}/api/workers"))) < 2:
            assert time.monotonic() < deadline, workers
            time.sleep(0.1)
        assert {w["pid"] for w in workers} == kids
        assert all(w["admin"].startswith("http://127.0.0.1:") and w["admin"] != admin
                   for w in workers)
        served = _pids_on_fresh_connections(sup.urls[0], 40)
        metrics = _get(f"{admin}/metrics").decode()
        help_lines = [x for x in metrics.splitlines() if x.startswith("# HELP")]
        assert len(help_lines) == len(set(help_lines)) > 0  # each family once
        for w in workers:
            if w["pid"] in served:
                assert (f'wirecall_server_calls_total{{worker="{w["index"]}",method="Add",'
                        f'service="Who",status="OK",wire="tcp"}}') in metrics
        snap = json.loads(_get(f"{admin}/api/snapshot"))
        assert sorted(w["pid"] for w in snap["workers"]) == sorted(kids)
    finally:
        sup.close()
