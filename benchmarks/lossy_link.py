"""A lossy, slow link between two network namespaces, in user space: two TUN devices, one in
each namespace, bridged by a forwarder process that delays every packet by ``delay`` ms and
drops it with probability ``loss`` %. It stands in for ``tc qdisc ... netem`` on kernels
without sch_netem (this sandbox: "Specified qdisc kind is unknown").

    with TunLink("wcA", "wcB", "10.177.0.1", "10.177.0.2") as link:
        link.set(delay_ms=10, loss=1)   # each direction: RTT 20 ms, 1 % of packets dropped
        ... ip netns exec wcA <server on 10.177.0.1>; ip netns exec wcB <client> ...

The addresses are a private range that exists only inside the two namespaces; both are
deleted on exit. Needs root (CAP_NET_ADMIN).
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import os
import random
import select
import struct
import subprocess
import sys
import time
from types import TracebackType

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def _sh(*cmd: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {(r.stderr or r.stdout).strip()}")


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def forward(fa: int, fb: int, control: int) -> None:
    """The forwarder's loop: packets A->B and B->A, delayed and dropped; ``control`` lines
    ``<delay_ms> <loss_percent>`` change the link, ``drop <min bytes>`` loses the next packet
    from B at least that long; EOF on it ends the loop."""
    delay, loss = 0.0, 0.0
    drop_from_b = 0  # drop the next packet from B at least this long (0: none)
    due: list[tuple[float, int, int, bytes]] = []  # (time, seq, out fd, packet)
    seq = 0
    buf = b""
    peer = {fa: fb, fb: fa}
    while True:
        timeout = max(0.0, due[0][0] - time.monotonic()) if due else None
        ready, _, _ = select.select([fa, fb, control], [], [], timeout)
        now = time.monotonic()
        for fd in ready:
            if fd == control:
                chunk = os.read(control, 4096)
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    words = line.split()
                    if words[0] == b"drop":
                        drop_from_b = int(words[1])
                    else:
                        delay, loss = float(words[0]) / 1000, float(words[1]) / 100
                continue
            for _ in range(64):  # drain what is there
                try:
                    pkt = os.read(fd, 65535)
                except BlockingIOError:
                    break
                if loss and random.random() < loss:
                    continue
                if drop_from_b and fd == fb and len(pkt) >= drop_from_b:
                    drop_from_b = 0  # the one chosen packet: lost once
                    continue
                seq += 1
                heapq.heappush(due, (now + delay, seq, peer[fd], pkt))
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, _, out, pkt = heapq.heappop(due)
            with contextlib.suppress(OSError):  # (the device is gone: shutting down)
                os.write(out, pkt)


class TunLink:
    def __init__(self, ns_a: str, ns_b: str, addr_a: str, addr_b: str) -> None:
        self.ns_a, self.ns_b, self.addr_a, self.addr_b = ns_a, ns_b, addr_a, addr_b
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> TunLink:
        _sh("ip", "netns", "add", self.ns_a)
        try:
            _sh("ip", "netns", "add", self.ns_b)
            fa, fb = open_tun(f"{self.ns_a}t"), open_tun(f"{self.ns_b}t")
            for fd in (fa, fb):
                os.set_blocking(fd, False)
            for ns, dev, mine, theirs in ((self.ns_a, f"{self.ns_a}t", self.addr_a, self.addr_b),
                                          (self.ns_b, f"{self.ns_b}t", self.addr_b, self.addr_a)):
                _sh("ip", "link", "set", dev, "netns", ns)
                _sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
                _sh("ip", "netns", "exec", ns, "ip", "addr", "add", mine, "peer", theirs,
                    "dev", dev)
                _sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "mtu", "1500", "up")
            self.proc = subprocess.Popen(
                [sys.executable, __file__, str(fa), str(fb)], stdin=subprocess.PIPE,
                pass_fds=(fa, fb))
            os.close(fa)
            os.close(fb)
        except BaseException:
            self._delete()
            raise
        return self

    def set(self, delay_ms: float, loss: float) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"{delay_ms} {loss}\n".encode())
        self.proc.stdin.flush()
        time.sleep(0.2)  # packets already queued drain with the old setting

    def drop_next(self, min_size: int) -> None:
        """Lose the next packet sent from namespace B that is at least ``min_size`` bytes
        (a data packet, not an ACK): one chosen loss."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"drop {min_size}\n".encode())
        self.proc.stdin.flush()
        time.sleep(0.05)

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._delete()

    def _delete(self) -> None:
        for ns in (self.ns_a, self.ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


if __name__ == "__main__":
    forward(int(sys.argv[1]), int(sys.argv[2]), sys.stdin.fileno())
