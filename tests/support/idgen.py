"""Helpers for the ID generator tests: a clock the test moves, and ``wirecall idgen serve``
node processes (started on free ports, stopped or killed by PID)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from support.servers import ROOT


class ManualClock:
    """A ``time.time_ns``-like clock that moves only when told; ``sleep`` advances it."""

    def __init__(self, start_ms: int = 1_800_000_000_000) -> None:
        self.ns = start_ms * 1_000_000
        self.sleeps: list[float] = []
        self.lock = threading.Lock()

    def __call__(self) -> int:
        return self.ns

    def set_ms(self, ms: int) -> None:
        self.ns = ms * 1_000_000

    def advance_ms(self, ms: float) -> None:
        with self.lock:
            self.ns += int(ms * 1_000_000)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance_ms(seconds * 1000)


class NodeProcess:
    """``wirecall idgen serve ...`` in a subprocess; ``events`` holds the lines it printed
    before listening (``worker N leased ...``)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.env = env or {}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.events: list[str] = []
        self.worker: int | None = None

    def start(self, timeout: float = 30.0) -> NodeProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
        # stderr to a file: a pipe nobody reads would block the node once it fills
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115  (kept open for the node)
            prefix="wirecall-idgen-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wirecall.cli", "idgen", "serve",
             "--listen", "tcp://127.0.0.1:0", *self.args],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("listening on "):
                self.url = line.split()[-1]
                return self
            if line:
                self.events.append(line.strip())
                if line.startswith("worker "):
                    self.worker = int(line.split()[1])
            elif self.proc.poll() is not None:
                break
        self.kill()
        err = self.stderr()
        raise RuntimeError(f"idgen node did not start: {self.events} {err[-3000:]}")

    def kill(self) -> None:
        """kill -9."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> list[str]:
        """SIGTERM (a clean stop); returns what the node printed after listening."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
            return []
        return out.splitlines()

    def stderr(self) -> str:
        return Path(self.log.name).read_text(errors="replace")


def data_dir(tmp: Path, name: str) -> str:
    d = tmp / name
    d.mkdir(parents=True, exist_ok=True)
    return str(d)
