"""``wirecall serve --workers N`` with real processes and signals: N workers share the tcp://
and grpc:// listeners, a killed worker is restarted, SIGHUP replaces every worker without a
refused connection, SIGTERM drains them all and the supervisor exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from wirecall import Unavailable
from wirecall.sync import connect
from wirecall.tutorial.calculator import Args

ROOT = Path(__file__).resolve().parents[2]
TARGET = "wirecall.tutorial.calculator:Calculator"


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


class Supervisor:
    def __init__(self, n: int) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        env.pop("WIRECALL_WORKER", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wirecall.cli", "serve", TARGET, "--listen",
             "tcp://127.0.0.1:0", "--listen", "grpc://127.0.0.1:0", "--workers", str(n)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self.urls: list[str] = []
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while len(self.urls) < 2 or not any(x.startswith("workers:") for x in self.lines):
            line = self.proc.stdout.readline()
            assert line, f"supervisor ended: {self.lines}"
            self.lines.append(line.rstrip())
            if line.startswith("listening on "):
                self.urls.append(line.split()[-1])
            assert time.monotonic() < deadline, self.lines
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait_children(self, pred: object, timeout: float = 20) -> set[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kids = children(self.proc.pid)
            if pred(kids):  # type: ignore[operator]
                return kids
            time.sleep(0.1)
        raise AssertionError(f"children {children(self.proc.pid)}; log {self.lines}")

    def close(self) -> None:
        if self.proc.poll() is None:
            for k in children(self.proc.pid):
                os.kill(k, signal.SIGKILL)
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def sup() -> object:
    s = Supervisor(2)
    yield s
    s.close()


def _add_on_fresh_connections(url: str, n: int) -> int:
    ok = 0
    for i in range(n):
        with connect(url, timeout=5) as c:
            assert c.call("Calculator.Add", Args(i, 1)) == i + 1
            ok += 1
    return ok


def test_workers_share_listeners_and_are_restarted(sup: Supervisor) -> None:
    kids = sup.wait_children(lambda k: len(k) == 2)
    for url in sup.urls:  # tcp:// and grpc://: every connection served
        assert _add_on_fresh_connections(url, 20) == 20
    victim = min(kids)
    os.kill(victim, signal.SIGKILL)
    kids2 = sup.wait_children(lambda k: len(k) == 2 and victim not in k)
    assert len(kids2 - kids) == 1
    for url in sup.urls:
        assert _add_on_fresh_connections(url, 10) == 10
    assert any("restarting" in x for x in sup.lines)


def test_sighup_replaces_workers_without_refusing_and_sigterm_drains(sup: Supervisor) -> None:
    kids = sup.wait_children(lambda k: len(k) == 2)
    errors: list[BaseException] = []
    unprocessed: list[BaseException] = []
    counts = [0]
    stop = threading.Event()

    def hammer(url: str) -> None:
        while not stop.is_set():
            try:
                counts[0] += _add_on_fresh_connections(url, 1)
            except Unavailable as exc:
                if "GOAWAY" not in str(exc) and "server is shutting down" not in str(exc):
                    errors.append(exc)
                    continue
                # a connection the old worker accepted as it began draining: the answer says
                # the call was never processed (gRPC: GOAWAY naming an earlier stream; tcp://:
                # "server is shutting down" at dial), which a client may retry (grpc-go does so
                # transparently; wirecall's clients do not yet): retried once, must succeed
                unprocessed.append(exc)
                try:
                    counts[0] += _add_on_fresh_connections(url, 1)
                except BaseException as again:
                    errors.append(again)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(u,)) for u in sup.urls]
    for t in threads:
        t.start()
    time.sleep(0.5)
    os.kill(sup.proc.pid, signal.SIGHUP)
    sup.wait_children(lambda k: len(k) == 2 and not (k & kids), timeout=30)
    deadline = time.monotonic() + 20
    while not any(x.startswith("replaced") for x in sup.lines):
        assert time.monotonic() < deadline, sup.lines
        time.sleep(0.1)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(10)
    assert not errors, f"{len(errors)} failed calls during SIGHUP, first: {errors[0]!r}"
    print(f"{counts[0]} calls, {len(unprocessed)} answered unprocessed and retried")
    assert counts[0] > 10
    # SIGTERM: all workers drain, the supervisor exits 0
    os.kill(sup.proc.pid, signal.SIGTERM)
    assert sup.proc.wait(20) == 0
    assert not children(sup.proc.pid)
    time.sleep(0.2)
    assert any(x == "stopped" for x in sup.lines), sup.lines


def test_unix_is_refused_with_workers() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    r = subprocess.run(
        [sys.executable, "-m", "wirecall.cli", "serve", TARGET, "--listen", "unix:///tmp/x.sock",
         "--workers", "2"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 2
    assert "--workers cannot share unix://" in r.stderr


def test_workers_must_be_positive() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    r = subprocess.run(
        [sys.executable, "-m", "wirecall.cli", "serve", TARGET, "--workers", "0"],
        capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 2
    assert "--workers must be at least 1, got 0" in r.stderr
