"""Hostile peers and the well-behaved client that watches them (issue #18).

Everything here talks to wirecall through its public API (``wirecall.Server`` in a
subprocess, ``wirecall.connect`` for the well-behaved client) or through raw bytes on a
socket: the native frames, gob and HTTP/2 frames are built by hand from the documented
layouts (``docs/protocol.md``, ``docs/go-interop.md``, RFC 9113), never with wirecall's
transport modules, which may move.

The server under test always runs in a subprocess (:class:`ServerProc`): its RSS is then
its own, an event loop it freezes does not freeze the test, and a runaway is contained by
``RLIMIT_AS`` and by a watchdog that kills it when its RSS passes :data:`RSS_KILL_CAP`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import wirecall

HOST = "127.0.0.1"
MiB = 1024 * 1024

#: the address space the server subprocess may map (a runaway gets MemoryError, not the box)
RLIMIT_AS_BYTES = 2048 * MiB
#: the watchdog kills the server subprocess when its RSS passes this
RSS_KILL_CAP = 1200 * MiB
#: the well-behaved client calls this often (seconds)
PROBE_INTERVAL = 0.05
#: ... with this deadline per call (seconds): a call that takes longer is a failure
PROBE_TIMEOUT = 2.0
#: ... and its 99th percentile latency must stay under this (seconds)
P99_BOUND = 0.5
#: a call slower than this (seconds) is noted with its start time (``ProbeReport.slow``)
SLOW_CALL = 0.5
#: a file to append one JSON line per observation to (``benchmarks/hostile_report.py``)
REPORT_FILE = os.environ.get("HOSTILE_REPORT", "")


def record(**fields: Any) -> None:
    """Note what a test observed (only when HOSTILE_REPORT names a file)."""
    if REPORT_FILE:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
        with open(REPORT_FILE, "a") as f:
            f.write(json.dumps({"test": test, **fields}) + "\n")

# -- the server under test -----------------------------------------------------------------

SERVER_SCRIPT = r"""
import asyncio, gc, json, resource, sys, time
from collections.abc import AsyncIterator
from typing import Any

cfg = json.loads(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (cfg["rlimit"], cfg["rlimit"]))
if cfg.get("gc_disabled"):
    gc.disable()
import wirecall


class Svc:
    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.started = 0

    @wirecall.method(inline=True)
    def Echo(self, x: Any) -> Any:
        return x

    @wirecall.method(inline=True)
    def Big(self, n: int) -> str:
        return "x" * max(0, min(n, 8_000_000))

    async def Hold(self, seconds: float) -> int:
        self.started += 1
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(max(0.0, min(seconds, 10.0)))
        finally:
            self.running -= 1
        return self.started

    async def Flood(self, size: int) -> AsyncIterator[str]:
        chunk = "x" * max(1, min(size, 1_000_000))
        for _ in range(10_000_000):
            yield chunk

    async def BigLater(self, seconds: float, n: int) -> str:
        await asyncio.sleep(max(0.0, min(seconds, 10.0)))
        return "x" * max(0, min(n, 8_000_000))

    @wirecall.method(inline=True)
    def Collect(self) -> int:
        return gc.collect()

    @wirecall.method(inline=True)
    def Stats(self) -> dict:
        return {"running": self.running, "peak": self.peak, "started": self.started,
                "gc_enabled": gc.isenabled()}


async def main() -> None:
    if cfg.get("limits"):
        cfg["server"]["limits"] = wirecall.Limits(**cfg["limits"])
    server = wirecall.Server(**cfg["server"])
    server.register(Svc(), name="Svc")
    urls = await server.start(*cfg["urls"], **cfg["options"])
    print("READY " + " ".join(urls), flush=True)
    if cfg.get("watch_loop"):  # note each time the event loop was stalled for > 0.3 s
        async def watch() -> None:
            while True:
                t0 = time.monotonic()
                await asyncio.sleep(0.05)
                late = time.monotonic() - t0 - 0.05
                if late > 0.3:
                    print(f"LOOP-STALL {t0:.3f} {late:.3f}", file=sys.stderr, flush=True)
        watcher = asyncio.ensure_future(watch())
    await server.serve_forever(handle_signals=True)


asyncio.run(main())
"""


def _rss_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class ServerProc:
    """A wirecall server (service ``Svc``, see :data:`SERVER_SCRIPT`) in a subprocess.

    ``urls`` are the listeners (``tcp://127.0.0.1:0`` ...); ``server`` the keyword arguments
    of ``wirecall.Server``; ``options`` those of ``server.start``; ``limits`` the fields of
    its ``wirecall.Limits``; ``gc_disabled`` runs the server with the cyclic garbage
    collector off. Stopped by PID.
    """

    def __init__(
        self,
        *urls: str,
        server: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        gc_disabled: bool = False,
        limits: dict[str, Any] | None = None,
        watch_loop: bool = False,
    ) -> None:
        self.cfg = {
            "watch_loop": watch_loop,
            "urls": list(urls),
            "server": server or {},
            "limits": limits or {},
            "options": options or {},
            "gc_disabled": gc_disabled,
            "rlimit": RLIMIT_AS_BYTES,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.urls: list[str] = []
        self.peak_rss = 0
        self.killed_for_rss = 0  # the RSS at which the watchdog killed it (0: never)
        self.start_rss = 0
        self._stop_watch = threading.Event()
        self._watch: threading.Thread | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)

    # lifecycle
    def start(self, timeout: float = 20.0) -> ServerProc:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, json.dumps(self.cfg)],
            stdout=subprocess.PIPE, stderr=self._stderr, env=env,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if r:
                line = self.proc.stdout.readline()
                if line.startswith(b"READY "):
                    self.urls = line.decode().split()[1:]
                    break
            if self.proc.poll() is not None:
                break
        if not self.urls:
            err = self.stderr_tail()
            self.stop()
            raise RuntimeError(f"server did not start: {line!r}\n{err}")
        self.start_rss = self.rss()
        self._watch = threading.Thread(target=self._watchdog, daemon=True)
        self._watch.start()
        return self

    def _watchdog(self) -> None:
        while not self._stop_watch.wait(0.02):
            if self.proc is None or self.proc.poll() is not None:
                return
            rss = _rss_of(self.proc.pid)
            self.peak_rss = max(self.peak_rss, rss)
            if rss > RSS_KILL_CAP:
                self.killed_for_rss = rss
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                return

    def stop(self) -> None:
        self._stop_watch.set()
        p = self.proc
        if p is not None and self.urls:
            record(start_rss=self.start_rss, peak_rss=self.peak_rss, end_rss=self.rss(),
                   killed_for_rss=self.killed_for_rss)
        if p is not None and p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
        if p is not None and p.stdout is not None:
            p.stdout.close()

    def __enter__(self) -> ServerProc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._stderr.close()

    # observation
    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss(self) -> int:
        """Resident set size in bytes (0 once the process is gone)."""
        return _rss_of(self.pid) if self.alive() else 0

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def settled_rss(self, quiet: float = 0.5, timeout: float = 6.0) -> int:
        """The RSS once it stops moving (two samples ``quiet`` apart within 1 MiB)."""
        deadline = time.monotonic() + timeout
        last = self.rss()
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = self.rss()
            if abs(now - last) < MiB:
                return now
            last = now
        return last

    def loop_stalls(self) -> list[tuple[float, float]]:
        """(``time.monotonic()`` at its start, seconds) of each event-loop stall over 0.3 s
        the server noted (``watch_loop=True``); the clock is the machine's, as the tests'."""
        self._stderr.seek(0)
        return [(float(w[1]), float(w[2])) for w in (
            line.split() for line in self._stderr.read().decode(errors="replace").splitlines())
            if len(w) == 3 and w[0] == "LOOP-STALL"]

    def stderr_tail(self, n: int = 3000) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-n:].decode(errors="replace")

    def address(self, scheme: str) -> tuple[str, int]:
        """(host, port) of the first listener with this scheme."""
        for u in self.urls:
            if u.startswith(scheme + "://"):
                hostport = u.split("://", 1)[1].split("/", 1)[0]
                host, port = hostport.rsplit(":", 1)
                return host.strip("[]"), int(port)
        raise LookupError(f"no {scheme}:// listener in {self.urls}")

    def url(self, scheme: str) -> str:
        for u in self.urls:
            if u.startswith(scheme + "://"):
                return u
        raise LookupError(f"no {scheme}:// listener in {self.urls}")

    def describe(self) -> str:
        return (f"server alive={self.alive()} rss={self.rss() / MiB:.0f} MiB "
                f"peak={self.peak_rss / MiB:.0f} MiB killed_for_rss="
                f"{self.killed_for_rss / MiB:.0f} MiB\nstderr tail:\n{self.stderr_tail()}")


def stats(url: str) -> dict[str, Any]:
    """``Svc.Stats`` of the server at ``url`` (a fresh well-behaved connection)."""
    async def go() -> dict[str, Any]:
        client = await wirecall.connect(url)
        try:
            return dict(await client.call("Svc.Stats", timeout=PROBE_TIMEOUT))
        finally:
            await client.close()
    return asyncio.run(go())


def collect(url: str) -> int:
    """Run the cyclic garbage collector in the server at ``url`` (``Svc.Collect``)."""
    async def go() -> int:
        client = await wirecall.connect(url)
        try:
            return int(await client.call("Svc.Collect", timeout=PROBE_TIMEOUT))
        finally:
            await client.close()
    return asyncio.run(go())


# -- the well-behaved client -------------------------------------------------------------

@dataclass
class ProbeReport:
    url: str
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    #: ``time.monotonic()`` at the start of each failed call, and of each call slower than
    #: :data:`SLOW_CALL` (start, latency): to line them up with what a test sent meanwhile
    failed_at: list[float] = field(default_factory=list)
    slow: list[tuple[float, float]] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return len(self.latencies) + len(self.failures)

    @property
    def p99(self) -> float:
        if not self.latencies:
            return float("inf")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(len(xs) * 0.99))]

    def __str__(self) -> str:
        mx = max(self.latencies, default=float("nan"))
        return (f"probe {self.url}: {self.calls} calls, {len(self.failures)} failed "
                f"{self.failures[:3]}, p99 {self.p99 * 1000:.0f} ms, max {mx * 1000:.0f} ms")


class Prober:
    """The well-behaved client: one call every :data:`PROBE_INTERVAL` s on its own thread
    and event loop, each with a :data:`PROBE_TIMEOUT` deadline, recording latencies and
    failures. ``method``/``args``/``result_type`` choose the call (``Svc.Echo(i)``)."""

    def __init__(
        self, url: str, method: str = "Svc.Echo", args: tuple[Any, ...] | None = None,
        result_type: Any = Any,
    ) -> None:
        self.url = url
        self.method = method
        self.args = args
        self.result_type = result_type
        self.report = ProbeReport(url)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start_error: BaseException | None = None

    def __enter__(self) -> Prober:
        self._thread.start()
        if not self._ready.wait(10) or self._start_error is not None:
            self._stop.set()
            raise RuntimeError(f"the well-behaved client could not start: {self._start_error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> ProbeReport:
        self._stop.set()
        self._thread.join(PROBE_TIMEOUT + 5)
        return self.report

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        try:
            client = await wirecall.connect(self.url)
            await client.call(self.method, *self._args(0), timeout=PROBE_TIMEOUT,
                              result_type=self.result_type)
        except BaseException as exc:  # reported by __enter__
            self._start_error = exc
            self._ready.set()
            return
        self._ready.set()
        i = 0
        try:
            while not self._stop.is_set():
                i += 1
                t0 = time.monotonic()
                try:
                    await client.call(self.method, *self._args(i), timeout=PROBE_TIMEOUT,
                                      result_type=self.result_type)
                except Exception as exc:
                    self.report.failures.append(f"{type(exc).__name__}: {exc}"[:200])
                    self.report.failed_at.append(t0)
                else:
                    took = time.monotonic() - t0
                    self.report.latencies.append(took)
                    if took > SLOW_CALL:
                        self.report.slow.append((t0, took))
                await asyncio.sleep(max(0.0, PROBE_INTERVAL - (time.monotonic() - t0)))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 2)

    def _args(self, i: int) -> tuple[Any, ...]:
        return (i,) if self.args is None else self.args


def assert_served(*reports: ProbeReport, p99: float = P99_BOUND) -> None:
    """Zero failed calls and a p99 under the bound, for each well-behaved client."""
    for r in reports:
        record(probe=r.url.split(":")[0], calls=r.calls, failures=len(r.failures), p99=r.p99,
               max=max(r.latencies, default=0.0))
        assert r.calls >= 5, f"the well-behaved client made too few calls: {r}"
        assert not r.failures, f"the well-behaved client saw failures: {r}"
        assert r.p99 <= p99, f"the well-behaved client's p99 is over {p99 * 1000:.0f} ms: {r}"


# -- raw sockets -----------------------------------------------------------------------

def raw_connect(
    addr: tuple[str, int], *, rcvbuf: int | None = None, timeout: float = 5.0
) -> socket.socket:
    """A plain TCP socket (``rcvbuf``: a small receive buffer, for peers that never read)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(timeout)
    s.connect(addr)
    return s


def send_for(sock: socket.socket, chunks: Iterator[bytes], seconds: float) -> tuple[int, bool]:
    """Write chunks until they run out, ``seconds`` pass, or the peer closes; never blocks
    longer than the deadline (a server that stops reading stops us, as it should). The
    socket's mode is left alone (another thread may be reading it).
    Returns (bytes written, whether the peer closed/reset the connection)."""
    deadline = time.monotonic() + seconds
    sent = 0
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                return sent, False
            _, w, _ = select.select([], [sock], [], min(left, 0.1))
            if not w:
                continue
            try:
                n = sock.send(view[: 1 << 20], socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return sent, True
            sent += n
            view = view[n:]
    return sent, False


def read_until_closed(
    sock: socket.socket, timeout: float, limit: int = 64 * MiB
) -> tuple[bytes, bool]:
    """Read until EOF/reset or ``timeout``; returns (bytes, closed). The socket's mode is
    left alone (another thread may be writing it)."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([sock], [], [], min(left, 0.2))
        if not r:
            continue
        try:
            data = sock.recv(1 << 16, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            return bytes(buf), True
        if not data:
            return bytes(buf), True
        buf += data
    return bytes(buf), False


class SocketReader(threading.Thread):
    """Reads a socket on a thread until it closes, ``timeout`` passes, ``native_frames``
    native frames have arrived (after the server's preface), or ``done(data)`` is true.
    ``data`` and ``closed`` hold the outcome after :meth:`join`."""

    def __init__(
        self, sock: socket.socket, timeout: float, *, native_frames: int | None = None,
        done: Callable[[bytes], bool] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.timeout = timeout
        self.native_frames = native_frames
        self.done = done
        self.data = b""
        self.closed = False
        self.start()

    def run(self) -> None:
        buf = bytearray()
        deadline = time.monotonic() + self.timeout
        off, count = 12, 0
        while time.monotonic() < deadline:
            chunk, closed = read_until_closed(self.sock, min(0.1, deadline - time.monotonic()))
            buf += chunk
            if closed:
                self.closed = True
                break
            if self.native_frames is not None:
                while len(buf) - off >= 12:
                    n = int.from_bytes(buf[off : off + 4], "big")
                    if len(buf) - off < 12 + n:
                        break
                    off += 12 + n
                    count += 1
                if count >= self.native_frames:
                    break
            if chunk and self.done is not None and self.done(bytes(buf)):
                break
        self.data = bytes(buf)

    def join(self, timeout: float | None = None) -> None:
        super().join(self.timeout + 2 if timeout is None else timeout)


def drain(sock: socket.socket, seconds: float) -> int:
    """Read and discard for ``seconds``; returns the bytes read."""
    data, _ = read_until_closed(sock, seconds)
    return len(data)


# -- the native protocol (docs/protocol.md) ----------------------------------------------

N_REQUEST, N_RESPONSE, N_ERROR, N_CANCEL, N_PING, N_GOAWAY = 1, 2, 3, 4, 5, 6
N_SETTINGS, N_MESSAGE, N_WINDOW_UPDATE = 7, 8, 9
F_END_STREAM, F_COMPRESSED, F_METADATA, F_TIMEOUT, F_STREAM = 0x01, 0x02, 0x04, 0x08, 0x10
CODEC_MSGPACK = 1


def native_preface(codec: int = CODEC_MSGPACK, max_frame: int = 4 * MiB, flags: int = 0) -> bytes:
    return b"WRPC" + struct.pack("!BBHI", 1, codec, flags, max_frame)


def native_frame(ftype: int, flags: int, call_id: int, payload: bytes = b"") -> bytes:
    return struct.pack("!IBBHI", len(payload), ftype, flags, 0, call_id) + payload


def native_request(call_id: int, method: str | bytes, body: bytes = b"", flags: int = 0) -> bytes:
    m = method.encode() if isinstance(method, str) else method
    return native_frame(N_REQUEST, flags, call_id, struct.pack("!H", len(m)) + m + body)


def msgpack_array(*items: Any) -> bytes:
    """A msgpack array body (positional params), encoded by hand for small ints/floats."""
    out = bytearray([0x90 | len(items)])
    for x in items:
        if isinstance(x, float):
            out += b"\xcb" + struct.pack("!d", x)
        elif isinstance(x, int) and 0 <= x < 128:
            out.append(x)
        elif isinstance(x, int) and 0 <= x < 1 << 32:
            out += b"\xce" + struct.pack("!I", x)
        else:
            raise TypeError(x)
    return bytes(out)


@dataclass
class NativeFrame:
    ftype: int
    flags: int
    call_id: int
    payload: bytes

    def goaway(self) -> tuple[int, int, str]:
        last, status = struct.unpack_from("!IH", self.payload)
        return last, status, self.payload[6:].decode(errors="replace")

    def error(self) -> tuple[int, str]:
        status, ml = struct.unpack_from("!HI", self.payload)
        return status, self.payload[6 : 6 + ml].decode(errors="replace")


def parse_native(data: bytes, *, preface: bool = True) -> list[NativeFrame]:
    """Frames in ``data`` (after the server's 12-byte preface); a cut last frame is dropped."""
    off = 12 if preface else 0
    frames = []
    while len(data) - off >= 12:
        length, ftype, flags, _res, cid = struct.unpack_from("!IBBHI", data, off)
        if off + 12 + length > len(data):
            break
        frames.append(NativeFrame(ftype, flags, cid, data[off + 12 : off + 12 + length]))
        off += 12 + length
    return frames


def native_close_reason(frames: list[NativeFrame]) -> str | None:
    """'GOAWAY <status> <message>' for the last GOAWAY with a non-zero status, else None."""
    for f in reversed(frames):
        if f.ftype == N_GOAWAY:
            _, status, msg = f.goaway()
            if status:
                return f"GOAWAY {wirecall.Status(status).name} {msg}"
    return None


# -- gob (encoding/gob, by hand) ---------------------------------------------------------

def gob_uint(u: int) -> bytes:
    if u < 128:
        return bytes([u])
    b = u.to_bytes((u.bit_length() + 7) // 8, "big")
    return bytes([256 - len(b)]) + b


def gob_int(i: int) -> bytes:
    return gob_uint((~i << 1) | 1 if i < 0 else i << 1)


def gob_string(s: bytes) -> bytes:
    return gob_uint(len(s)) + s


def gob_message(body: bytes) -> bytes:
    return gob_uint(len(body)) + body


#: net/rpc's ``Request{ServiceMethod string; Seq uint64}`` defined as type 65 (what Go's
#: client sends first on every connection)
GOB_REQUEST_TYPEDEF = bytes.fromhex(
    "2f ff 81 03 01 01 07 52 65 71 75 65 73 74 01 ff 82 00 01 02 01 0d 53 65 72 76 69 63 65"
    " 4d 65 74 68 6f 64 01 0c 00 01 03 53 65 71 01 06 00 00 00"
)


def gob_call(seq: int, method: str, int_arg: int) -> bytes:
    """A Request value (type 65, after GOB_REQUEST_TYPEDEF) and an ``int`` argument."""
    hdr = b"\xff\x82" + b"\x01" + gob_string(method.encode()) + b"\x01" + gob_uint(seq) + b"\x00"
    arg = gob_int(2) + b"\x00" + gob_int(int_arg)  # int (type 2), a singleton value
    return gob_message(hdr) + gob_message(arg)


def gob_struct_typedef(type_id: int, name: bytes, field_names: list[bytes]) -> bytes:
    """A type definition message: ``type <name> struct { <field> int; ... }``."""
    fields = b"".join(b"\x01" + gob_string(f) + b"\x01" + gob_int(2) + b"\x00" for f in field_names)
    common = b"\x01" + gob_string(name) + b"\x01" + gob_int(type_id) + b"\x00"
    struct_t = b"\x01" + common + b"\x01" + gob_uint(len(field_names)) + fields + b"\x00"
    wire_t = b"\x03" + struct_t + b"\x00"  # wireType.StructT is field 2
    return gob_message(gob_int(-type_id) + wire_t)


# -- HTTP/2 frames (RFC 9113), raw -------------------------------------------------------

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_DATA, H2_HEADERS, H2_PRIORITY, H2_RST, H2_SETTINGS, H2_PUSH, H2_PING, H2_GOAWAY = range(8)
H2_WINDOW_UPDATE = 8
H2_ENHANCE_YOUR_CALM = 0xB


def h2_frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    head = struct.pack("!I", len(payload))[1:] + struct.pack("!BBI", ftype, flags, stream_id)
    return head + payload


def parse_h2(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream id, payload) of each complete frame in ``data`` (no preface)."""
    off = 0
    out = []
    while len(data) - off >= 9:
        length = int.from_bytes(data[off : off + 3], "big")
        ftype, flags, sid = struct.unpack_from("!BBI", data, off + 3)
        if off + 9 + length > len(data):
            break
        out.append((ftype, flags, sid & 0x7FFFFFFF, data[off + 9 : off + 9 + length]))
        off += 9 + length
    return out


def h2_goaway_code(data: bytes) -> int | None:
    for ftype, _, _, payload in parse_h2(data):
        if ftype == H2_GOAWAY and len(payload) >= 8:
            return int(struct.unpack_from("!I", payload, 4)[0])
    return None


# -- HTTP/1.1, raw ------------------------------------------------------------------------

def http_post(path: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_http_responses(data: bytes) -> list[HttpResponse]:
    """The complete responses in ``data`` (Content-Length or chunked bodies)."""
    out = []
    off = 0
    while True:
        end = data.find(b"\r\n\r\n", off)
        if end < 0:
            return out
        head = data[off:end].decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        p = end + 4
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                eol = data.find(b"\r\n", p)
                if eol < 0:
                    return out
                size = int(data[p:eol].split(b";")[0], 16)
                if len(data) < eol + 2 + size + 2:
                    return out
                body += data[eol + 2 : eol + 2 + size]
                p = eol + 2 + size + 2
                if size == 0:
                    break
            out.append(HttpResponse(status, headers, bytes(body)))
            off = p
        else:
            n = int(headers.get("content-length", "0"))
            if len(data) < p + n:
                return out
            out.append(HttpResponse(status, headers, data[p : p + n]))
            off = p + n
