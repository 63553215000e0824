"""Processes for the transaction tests: a coordinator (``wirecall txn serve``) and bank branch
servers (``support.txn_bank:Bank``), each a real subprocess on 127.0.0.1, killed by PID
(``kill()`` is SIGKILL: the crash tests' ``kill -9``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.servers import ROOT, free_port

__all__ = ["BankProcess", "CoordinatorProcess", "Proc"]


class Proc:
    """A subprocess that prints ``listening on URL`` when ready."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.argv = argv
        self.cwd = cwd
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), str(ROOT / "src"),
                                                  self.env.get("PYTHONPATH", "")])
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.urls: list[str] = []
        self.output: list[str] = []

    def start(self, timeout: float = 20.0, extra_env: dict[str, str] | None = None,
              listeners: int = 1) -> str:
        """Start; return the first URL once ``listeners`` are listening (all in ``urls``)."""
        env = dict(self.env, **(extra_env or {}))
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env, start_new_session=True,
                                     cwd=self.cwd)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                break
            self.output.append(line)
            if line.startswith("listening on "):
                self.urls.append(line.split()[-1])
                if len(self.urls) == listeners:
                    self.url = self.urls[0]
                    return self.url
        out = "".join(self.output)
        self.kill()
        raise RuntimeError(f"{self.argv[3:5]} did not start: {out[-2000:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL by PID (kill -9), then reap."""
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            if self.proc.stdout:
                self.proc.stdout.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()


class CoordinatorProcess(Proc):
    """``wirecall txn serve`` on a fixed free port (so a restart keeps the address)."""

    def __init__(self, store: str, *, name: str = "c1", lease: float = 2.0, poll: float = 0.2,
                 port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        super().__init__([sys.executable, "-m", "wirecall.cli", "txn", "serve", "--store", store,
                          "--listen", f"tcp://127.0.0.1:{self.port}", "--name", name,
                          "--lease", str(lease), "--poll", str(poll)], env)


class BankProcess(Proc):
    """The bank branch service on its own SQLite file."""

    def __init__(self, db: Path, *, port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        super().__init__([sys.executable, "-m", "wirecall.cli", "serve", "support.txn_bank:Bank",
                          "--listen", f"tcp://127.0.0.1:{self.port}"],
                         dict(env or {}, TXN_BANK_DB=str(db)))
