"""Serving on every core: ``wirecall serve --workers 2`` runs two worker processes sharing
the tcp:// and grpc:// listeners; a killed worker is restarted, SIGHUP replaces them one by
one, SIGTERM drains them and the supervisor exits.

    python examples/workers.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from wirecall.sync import connect  # noqa: E402
from wirecall.tutorial.calculator import Args  # noqa: E402


def workers_of(pid: int) -> set[int]:
    kids = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.add(int(d.name))
            except OSError:
                pass
    return kids


def main() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    sup = subprocess.Popen(
        [sys.executable, "-m", "wirecall.cli", "serve", "wirecall.tutorial.calculator:Calculator",
         "--listen", "tcp://127.0.0.1:0", "--listen", "grpc://127.0.0.1:0", "--workers", "2"],
        stdout=subprocess.PIPE, text=True, env=env)
    assert sup.stdout is not None
    urls = []
    for line in sup.stdout:
        print("supervisor:", line.rstrip())
        if line.startswith("listening on "):
            urls.append(line.split()[-1])
        if line.startswith("workers:"):
            break
    try:
        for url in urls:
            with connect(url) as c:
                print(f"{url.split(':')[0]}: Add(3, 4) = {c.call('Calculator.Add', Args(3, 4))}")
        before = workers_of(sup.pid)
        os.kill(min(before), signal.SIGKILL)
        while len(after := workers_of(sup.pid)) < 2 or after == before:
            time.sleep(0.1)
        print(f"worker restarted: {len(after - before)} new process")
        with connect(urls[1]) as c:
            print(f"grpc after restart: Add(5, 6) = {c.call('Calculator.Add', Args(5, 6))}")
    finally:
        sup.send_signal(signal.SIGTERM)
        print("supervisor exit status:", sup.wait(30))


if __name__ == "__main__":
    main()
