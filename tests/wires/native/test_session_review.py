"""Adversarial review of the native hot path (parser callbacks, the server's fast lane, write
batching, the client's plain replies, the sync client's pump keepalive, Context as a Struct):
behaviour that worked before must still work, against real servers on 127.0.0.1 or the
sans-IO core directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import pickle
import socket
import threading
import time
from typing import Any

import msgspec
import pytest

import wirecall
import wirecall.sync
from support.servers import ThreadServer
from wirecall import Context, RpcError, Status, Unavailable, method
from wirecall.protocol import frames as fr
from wirecall.transport import native as tcp

ENC = msgspec.msgpack.encode
DEC = msgspec.msgpack.decode


class Hot:
    """Inline handlers: all served by the fast lane."""

    @method(inline=True)
    def Echo(self, s: str) -> str:
        return s

    @method(inline=True)
    def Blob(self, n: int) -> bytes:
        return b"x" * n

    @method(inline=True)
    def Add(self, a: int, b: int) -> int:
        return a + b


def _server_preface(codec: int = 1) -> bytes:
    return fr.PREFACE.pack(fr.MAGIC, fr.VERSION, codec, fr.P_ZLIB, fr.DEFAULT_MAX_FRAME)


def _raw_requests(calls: list[tuple[int, str, Any]]) -> bytes:
    c = fr.FrameConnection(client=True)
    c.initiate()
    c.data_to_send()
    for cid, m, params in calls:
        c.send_request(cid, m, ENC(params))
    return c.data_to_send()


def _client_preface() -> bytes:
    c = fr.FrameConnection(client=True)
    c.initiate()
    return c.data_to_send()


def _read_replies(sock: socket.socket, want: int, timeout: float = 10.0) -> list[fr.Event]:
    """Read the server's preface and frames until ``want`` replies/errors arrived."""
    reader = fr.FrameConnection(client=True, max_frame_size=64 * 1024 * 1024)
    reader.initiate()
    got: list[fr.Event] = []
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while sum(isinstance(e, (fr.ResponseReceived, fr.ErrorReceived)) for e in got) < want:
        assert time.monotonic() < deadline, f"only {len(got)} events in time"
        data = sock.recv(1 << 20)
        assert data, "server closed the connection"
        got.extend(reader.receive_data(data))
    return got


# -- the sans-IO core ----------------------------------------------------------------------


def _recorder(conn: fr.FrameConnection) -> list[tuple[Any, ...]]:
    seen: list[tuple[Any, ...]] = []
    conn.set_fast_callbacks(
        on_request=lambda cid, m, b: seen.append(("req", cid, m, bytes(b))),
        on_response=lambda cid, b: seen.append(("resp", cid, bytes(b))),
    )
    return seen


def _server_after_preface(**kw: Any) -> tuple[fr.FrameConnection, fr.FrameConnection]:
    c = fr.FrameConnection(client=True, **kw)
    s = fr.FrameConnection(client=False, **kw)
    c.initiate()
    s.receive_data(c.data_to_send())
    c.receive_data(s.data_to_send())
    return c, s


@pytest.mark.parametrize("body_size", [3, fr.SMALL + 5])
def test_a_plain_request_split_at_every_byte_gives_one_callback(body_size: int) -> None:
    """The method is cached (so the compact loop would take it), then the next request is
    fed in two pieces cut at every offset: exactly one callback, same id, method and body."""
    c, s = _server_after_preface()
    seen = _recorder(s)
    c.send_request(1, "S.m", b"a")
    assert s.receive_data(c.data_to_send()) == []  # caches "S.m"
    body = bytes(range(256)) * (body_size // 256) + b"z" * (body_size % 256)
    for cut in range(1, 12 + 2 + 3 + body_size):
        seen.clear()
        c.send_request(cut + 1, "S.m", body)
        wire = c.data_to_send()
        assert s.receive_data(wire[:cut]) == []
        assert seen == []
        assert s.receive_data(wire[cut:]) == []
        assert seen == [("req", cut + 1, "S.m", body)], cut


def test_byte_by_byte_run_of_plain_frames_then_an_event_keeps_order() -> None:
    c, s = _server_after_preface()
    seen = _recorder(s)
    for i in range(1, 4):
        c.send_request(i, "S.m", b"%d" % i)
    c.send_cancel(2)
    c.send_request(4, "S.m", b"4")
    wire = c.data_to_send()
    events: list[fr.Event] = []
    for i in range(len(wire)):
        events.extend(s.receive_data(wire[i : i + 1]))
    # fed a byte at a time every frame completes alone: the cancel is an event, but the
    # request after it (completed by a later read) is a callback again
    assert seen == [("req", 1, "S.m", b"1"), ("req", 2, "S.m", b"2"),
                    ("req", 3, "S.m", b"3"), ("req", 4, "S.m", b"4")]
    assert events == [fr.CancelReceived(2)]


def test_an_oversized_frame_between_plain_ones_is_refused_and_skipped() -> None:
    c, s = _server_after_preface(max_frame_size=1024)
    seen = _recorder(s)
    c.send_request(1, "S.m", b"a")
    s.receive_data(c.data_to_send())
    seen.clear()
    c.peer_max_frame_size = 1 << 20  # let the client send what the server refuses
    c.send_request(2, "S.m", b"b")
    c.send_request(3, "S.m", b"x" * 5000)  # over the server's 1 KiB
    c.send_request(4, "S.m", b"d")
    wire = c.data_to_send()
    cut = len(wire) - 2000  # the oversized frame ends in the next read
    evs = s.receive_data(wire[:cut])
    assert seen == [("req", 2, "S.m", b"b")]
    assert [type(e) for e in evs] == [fr.FrameRefused]
    assert (evs[0].call_id, evs[0].size) == (3, 2 + 3 + 5000)  # type: ignore[attr-defined]
    assert s.receive_data(wire[cut:]) == []  # the rest skipped, then request 4 by callback
    assert seen[1:] == [("req", 4, "S.m", b"d")]
    c.send_request(5, "S.m", b"e")  # and the hot path is back
    assert s.receive_data(c.data_to_send()) == []
    assert seen[-1] == ("req", 5, "S.m", b"e")


def test_garbage_after_plain_frames_in_one_read_delivers_them_then_fails() -> None:
    c, s = _server_after_preface()
    seen = _recorder(s)
    c.send_request(1, "S.m", b"a")
    s.receive_data(c.data_to_send())
    c.send_request(2, "S.m", b"b")
    wire = c.data_to_send() + fr.HEADER.pack(0, 0x7F, 0, 0, 9)
    with pytest.raises(fr.ProtocolError, match="unknown frame type 0x7f"):
        s.receive_data(wire)
    assert seen[-1] == ("req", 2, "S.m", b"b")
    n = len(seen)
    c.send_request(3, "S.m", b"c")
    assert s.receive_data(c.data_to_send()) == []  # closed: nothing parsed, nothing called
    assert len(seen) == n and s.closed


def test_reserved_bits_and_bad_method_names_are_still_refused_on_the_hot_path() -> None:
    for frame, needle in [
        (fr.HEADER.pack(5, fr.REQUEST, 0, 1, 7) + b"\x00\x03S.m", "reserved header bits"),
        (fr.HEADER.pack(4, fr.REQUEST, 0, 0, 7) + b"\x00\x05S.", "overruns the frame"),
        (fr.HEADER.pack(2, fr.REQUEST, 0, 0, 7) + b"\x00\x00", "method name missing"),
        (fr.HEADER.pack(4, fr.REQUEST, 0, 0, 7) + b"\x00\x02\xff\xfe", "not UTF-8"),
    ]:
        c, s = _server_after_preface()
        seen = _recorder(s)
        c.send_request(1, "S.m", b"a")
        s.receive_data(c.data_to_send())  # the hot path is on (method cached)
        with pytest.raises(fr.ProtocolError, match=needle):
            s.receive_data(frame)
        assert seen == [("req", 1, "S.m", b"a")]


def test_callbacks_set_after_the_preface_and_removed_again() -> None:
    c, s = _server_after_preface()
    c.send_request(1, "S.m", b"a")
    assert [type(e) for e in s.receive_data(c.data_to_send())] == [fr.RequestReceived]
    seen = _recorder(s)  # set late: the hot path turns on at once
    c.send_request(2, "S.m", b"b")
    assert s.receive_data(c.data_to_send()) == [] and seen == [("req", 2, "S.m", b"b")]
    s.set_fast_callbacks()  # removed: events again
    c.send_request(3, "S.m", b"c")
    assert [type(e) for e in s.receive_data(c.data_to_send())] == [fr.RequestReceived]
    assert len(seen) == 1


def test_callbacks_set_on_a_failed_connection_stay_off() -> None:
    c, s = _server_after_preface()
    s.fail("bye")
    seen = _recorder(s)
    c.send_request(1, "S.m", b"a")
    assert s.receive_data(c.data_to_send()) == []
    assert seen == []


def test_a_preface_split_across_reads_then_plain_frames_in_the_same_read() -> None:
    c = fr.FrameConnection(client=True)
    s = fr.FrameConnection(client=False)
    seen = _recorder(s)
    c.initiate()
    c.send_request(1, "S.m", b"a")
    c.send_request(2, "S.m", b"b")
    wire = c.data_to_send()
    assert s.receive_data(wire[:5]) == []
    evs = s.receive_data(wire[5:])
    assert [type(e) for e in evs] == [fr.PrefaceReceived, fr.RequestReceived,
                                      fr.RequestReceived]
    assert seen == []
    c.send_request(3, "S.m", b"c")
    assert s.receive_data(c.data_to_send()) == []
    assert seen == [("req", 3, "S.m", b"c")]


def test_responses_with_flags_and_big_bodies_on_the_client() -> None:
    c, s = _server_after_preface()
    seen = _recorder(c)
    big = b"B" * (fr.SMALL * 3)
    s.send_response(1, big)
    s.send_response(2, b"zipped", compressed=True)
    s.send_response(3, b"plain-after")
    evs = c.receive_data(s.data_to_send())
    assert seen == [("resp", 1, big)]
    assert [(type(e), e.call_id) for e in evs] == [  # type: ignore[attr-defined]
        (fr.ResponseReceived, 2), (fr.ResponseReceived, 3)]
    assert evs[0].compressed and not evs[1].compressed  # type: ignore[attr-defined]


# -- the server's fast lane, in process --------------------------------------------------


class _Transport:
    """Records writes; optionally reports its buffer full after the first one."""

    def __init__(self, pause_after_first: bool = False) -> None:
        self.writes: list[bytes] = []
        self.proto: Any = None
        self.pause_after_first = pause_after_first
        self.reading = True
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        if self.pause_after_first and len(self.writes) == 1:
            self.proto.pause_writing()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def _replies(writes: list[bytes]) -> list[fr.Event]:
    reader = fr.FrameConnection(client=True, max_frame_size=64 * 1024 * 1024)
    reader.initiate()
    reader.receive_data(_server_preface())
    return [e for w in writes for e in reader.receive_data(w)]


def test_a_stalled_writer_mid_read_backlogs_the_rest_in_order_and_resumes() -> None:
    """The transport reports its buffer full after the first batch: the rest of that read's
    plain requests (fast lane and general path mixed) wait in the backlog, reading stops,
    and resume_writing answers all of them, in order, exactly once."""

    class Mixed(Hot):
        def Slow(self, s: str) -> str:  # not inline: the general path (a task)
            return s

    async def run() -> tuple[list[bytes], bool, bool]:
        server = wirecall.Server()
        server.register(Mixed(), name="Hot")
        proto = tcp.ServerProtocol(server)
        t = _Transport()
        t.proto = proto
        proto.connection_made(t)  # type: ignore[arg-type]
        proto.data_received(_client_preface())
        t.writes.clear()
        t.pause_after_first = True
        calls: list[tuple[int, str, Any]] = []
        for i in range(1, 201):
            calls.append((i, "Hot.Slow" if i % 7 == 0 else "Hot.Echo", [f"v{i}"]))
        proto.data_received(_raw_requests(calls))
        stalled = not t.reading
        backlog = len(proto._backlog)
        assert backlog > 0
        proto.resume_writing()
        for _ in range(50):  # the general-path tasks
            await asyncio.sleep(0)
        proto.connection_lost(None)
        return t.writes, stalled, t.reading

    writes, stalled, reading_again = asyncio.run(run())
    assert stalled and reading_again
    evs = _replies(writes)
    got = {e.call_id: DEC(e.body) for e in evs if isinstance(e, fr.ResponseReceived)}
    assert got == {i: f"v{i}" for i in range(1, 201)}
    assert len([e for e in evs if isinstance(e, fr.ResponseReceived)]) == 200
    fast_order = [e.call_id for e in evs
                  if isinstance(e, fr.ResponseReceived) and e.call_id % 7]
    assert fast_order == sorted(fast_order)


def test_the_first_read_with_preface_and_plain_requests_is_answered_after_the_preface() -> None:
    async def run() -> list[bytes]:
        server = wirecall.Server()
        server.register(Hot())
        proto = tcp.ServerProtocol(server)
        t = _Transport()
        proto.connection_made(t)  # type: ignore[arg-type]
        wire = _client_preface() + _raw_requests([(i, "Hot.Add", [i, 1]) for i in range(1, 40)])
        proto.data_received(wire)
        proto.connection_lost(None)
        return t.writes

    writes = asyncio.run(run())
    data = b"".join(writes)
    assert data[:4] == fr.MAGIC  # the server's preface before any reply
    reader = fr.FrameConnection(client=True)
    reader.initiate()
    evs = reader.receive_data(data)
    assert isinstance(evs[0], fr.PrefaceReceived)
    assert [(e.call_id, DEC(e.body)) for e in evs[1:]] == [  # type: ignore[attr-defined]
        (i, i + 1) for i in range(1, 40)]


def test_json_codec_connection_uses_its_own_decoder_on_the_fast_lane() -> None:
    async def run() -> tuple[Any, Any, Any]:
        server = wirecall.Server()
        server.register(Hot())
        [url] = await server.start("tcp://127.0.0.1:0")
        try:
            async with await wirecall.connect(url, codec="json") as c:
                a = await c.call("Hot.Add", 2, 3)
                b = await c.call("Hot.Echo", "é")
                with pytest.raises(wirecall.InvalidArgument):
                    await c.call("Hot.Add", "x", 3)
                d = await c.call("Hot.Add", 5, 5)
                return a, b, d
        finally:
            await server.close(drain_timeout=1)

    assert asyncio.run(run()) == (5, "é", 10)


# -- real servers on 127.0.0.1 -------------------------------------------------------------


async def test_a_client_that_never_reads_does_not_stall_the_server(serve: Any) -> None:
    """Hundreds of plain requests with big replies from a client that never reads: the
    server stops reading it, keeps serving others, and answers every call once drained."""
    url = await serve(Hot())
    port = int(url.rsplit(":", 1)[1])
    n = 400
    loop = asyncio.get_running_loop()
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", port))
    try:
        raw.setblocking(False)
        wire = _client_preface() + _raw_requests(
            [(i, "Hot.Blob", [32 * 1024]) for i in range(1, n + 1)])
        sent = 0
        deadline = time.monotonic() + 5
        while sent < len(wire) and time.monotonic() < deadline:
            try:
                sent += raw.send(wire[sent:])
            except BlockingIOError:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        async with await wirecall.connect(url) as other:  # the server still serves others
            assert await asyncio.wait_for(other.call("Hot.Add", 1, 2), 5) == 3
        raw.setblocking(True)
        got = await loop.run_in_executor(None, _read_replies, raw, n, 20.0)
    finally:
        raw.close()
    replies = [e for e in got if isinstance(e, fr.ResponseReceived)]
    assert sorted(e.call_id for e in replies) == list(range(1, n + 1))
    assert all(len(DEC(e.body)) == 32 * 1024 for e in replies)


@pytest.mark.parametrize("chunk", [1, 7])
async def test_any_listener_hands_preface_and_plain_requests_to_the_native_protocol(
    chunk: int,
) -> None:
    server = wirecall.Server()
    server.register(Hot())
    [url] = await server.start("any://127.0.0.1:0")
    port = int(url.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()

    def talk() -> list[fr.Event]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            wire = _client_preface() + _raw_requests([(1, "Hot.Add", [1, 2])])
            head = wire[:16]  # preface and a bit of the first frame, then everything at once
            for i in range(0, len(head), chunk):
                s.sendall(head[i : i + chunk])
                time.sleep(0.01)
            s.sendall(wire[16:] + _raw_requests([(2, "Hot.Add", [3, 4]),
                                                  (3, "Hot.Echo", ["x"])]))
            return _read_replies(s, 3)

    try:
        evs = await loop.run_in_executor(None, talk)
    finally:
        await server.close(drain_timeout=1)
    assert isinstance(evs[0], fr.PrefaceReceived)
    assert [(e.call_id, DEC(e.body)) for e in evs[1:]] == [  # type: ignore[attr-defined]
        (1, 3), (2, 7), (3, "x")]


async def test_any_listener_first_read_with_everything(serve: Any) -> None:
    url = await serve(Hot(), url="any://127.0.0.1:0")
    async with await wirecall.connect(url) as c:
        assert await asyncio.gather(*(c.call("Hot.Add", i, i) for i in range(50))) == [
            2 * i for i in range(50)]


async def test_unregistered_service_is_no_longer_served_by_a_cached_fast_lane(
    serve: Any,
) -> None:
    url = await serve(Hot())
    async with await wirecall.connect(url) as c:
        assert await c.call("Hot.Add", 1, 1) == 2  # the lane is cached on this connection
        serve.server.registry.unregister("Hot")
        with pytest.raises(wirecall.Unimplemented):
            await c.call("Hot.Add", 1, 1)


async def test_compressed_and_plain_replies_and_late_replies_on_the_async_client() -> None:
    server = wirecall.Server()
    server.register(Hot())
    [url] = await server.start("tcp://127.0.0.1:0", compress_threshold=1024)
    async with await wirecall.connect(url) as c:
        big, small = await asyncio.gather(c.call("Hot.Blob", 100_000), c.call("Hot.Echo", "s"))
        assert big == b"x" * 100_000 and small == "s"
        # a call cancelled by the caller: its late reply is dropped, the connection lives on
        task = asyncio.ensure_future(c.call("Hot.Blob", 10))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await c.call("Hot.Add", 2, 2) == 4
    await server.close(drain_timeout=1)


async def test_calls_started_while_another_is_in_flight_are_all_written(serve: Any) -> None:
    """The first call is written at once, the next ones at the end of the iteration or
    every 16: with a few hundred started at once, every one is answered."""
    url = await serve(Hot())
    conn = await tcp.connect(wirecall.transport.base.parse_url(url))
    try:
        futs = [conn.start("Hot.Add", [i, 1], None, None, Any)[1] for i in range(300)]
        assert await asyncio.wait_for(asyncio.gather(*futs), 10) == [i + 1 for i in range(300)]
        # and sequential calls (nothing in flight each time) too
        for i in range(20):
            assert await conn.call("Hot.Add", [i, i], None, None, Any) == 2 * i
        assert conn.pending == 0
    finally:
        await conn.aclose()


def _silent_server() -> tuple[socket.socket, list[socket.socket], threading.Thread]:
    """Completes the handshake, then reads and discards everything, never answering."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    held: list[socket.socket] = []

    def run() -> None:
        with_timeout = time.monotonic() + 15
        lsock.settimeout(15)
        try:
            s, _ = lsock.accept()
        except OSError:
            return
        held.append(s)
        conn = fr.FrameConnection(client=False)
        conn.receive_data(s.recv(12))
        s.sendall(conn.data_to_send()[: fr.PREFACE.size])
        s.settimeout(0.5)
        while time.monotonic() < with_timeout:
            try:
                if not s.recv(65536):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return lsock, held, t


async def test_async_client_keepalive_fails_calls_to_a_silent_peer() -> None:
    lsock, held, t = _silent_server()
    port = lsock.getsockname()[1]
    try:
        conn = await tcp.connect(
            wirecall.transport.base.parse_url(f"tcp://127.0.0.1:{port}"), keepalive=0.2)
        t0 = time.monotonic()
        with pytest.raises(Unavailable):
            await asyncio.wait_for(conn.call("Any.Thing", [], None, None, Any), 5)
        assert time.monotonic() - t0 < 3
        assert conn.closed
    finally:
        lsock.close()
        for s in held:
            s.close()
        t.join(5)


async def test_async_client_idle_timeout_counts_from_the_connect(serve: Any) -> None:
    """A connection never used is idle from the start (as before the idle mark moved to
    the call ids): one keepalive tick after idle_timeout passed closes it."""
    url = await serve(Hot())
    conn = await tcp.connect(wirecall.transport.base.parse_url(url), keepalive=None)
    try:
        conn._idle_timeout = 0.05
        await asyncio.sleep(0.1)
        conn._on_keepalive()
        assert conn.closed
    finally:
        await conn.aclose()


async def test_async_client_idle_timeout_spares_a_connection_in_use(serve: Any) -> None:
    url = await serve(Hot())
    conn = await tcp.connect(
        wirecall.transport.base.parse_url(url), keepalive=None, idle_timeout=0.2)
    try:
        for i in range(8):  # 0.4 s of calls every 0.05 s: never idle
            assert await conn.call("Hot.Add", [i, 0], None, None, Any) == i
            await asyncio.sleep(0.05)
        assert not conn.closed
        deadline = time.monotonic() + 3
        while not conn.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert conn.closed  # and idle afterwards: closed
    finally:
        await conn.aclose()


# -- the sync client --------------------------------------------------------------------


def test_sync_idle_timeout_counts_from_the_connect() -> None:
    with ThreadServer(Hot()) as srv:
        c = wirecall.sync.connect(srv.url, keepalive=None)
        conn = c._conns[0]
        assert conn is not None
        conn._idle_timeout = 0.05
        time.sleep(0.1)
        conn._maintain()
        assert conn.closed
        assert c.call("Hot.Add", 1, 2) == 3  # redialled
        c.close()


def test_fifty_threads_with_go_chains_share_one_sync_client() -> None:
    """50 threads call, and each starts a go() whose callback starts the next go() (a chain
    of 5): every call and every future completes, nothing is left pending."""
    with ThreadServer(Hot()) as srv, wirecall.sync.connect(srv.url) as c:
        done: list[int] = []
        lock = threading.Lock()
        all_done = threading.Event()
        total = 50 * 5

        def chain(tid: int, step: int) -> None:
            fut = c.go("Hot.Add", tid, step)

            def cb(f: concurrent.futures.Future[Any]) -> None:
                assert f.result() == tid + step
                with lock:
                    done.append(tid)
                    if len(done) == total:
                        all_done.set()
                if step < 4:
                    chain(tid, step + 1)

            fut.add_done_callback(cb)

        def worker(tid: int) -> int:
            chain(tid, 0)
            s = 0
            for i in range(20):
                s += c.call("Hot.Add", tid, i)
            return s

        with concurrent.futures.ThreadPoolExecutor(50) as ex:
            sums = list(ex.map(worker, range(50), timeout=30))
        assert sums == [20 * t + 190 for t in range(50)]
        assert all_done.wait(15), f"{len(done)} of {total} go() callbacks ran"
        assert sorted(done) == sorted(list(range(50)) * 5)
        conn = c._conns[0]
        assert conn is not None and conn.pending == 0 and conn._go_pending == 0


def test_sync_calls_while_the_pump_pings_every_few_ms() -> None:
    """keepalive 0.02 s: the pump PINGs all the time while threads call and go(); every call
    is answered and the connection survives."""
    with ThreadServer(Hot(), keepalive=0.05) as srv:
        c = wirecall.sync.connect(srv.url, keepalive=0.02)
        first = c._conns[0]

        def worker(tid: int) -> int:
            n = 0
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                if n % 3 == 0:
                    assert c.go("Hot.Add", tid, n).result(5) == tid + n
                else:
                    assert c.call("Hot.Add", tid, n) == tid + n
                n += 1
                time.sleep(0.003)
            return n

        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            counts = list(ex.map(worker, range(4), timeout=20))
        assert all(n > 10 for n in counts)
        assert c._conns[0] is first and not first.closed
        c.close()


def test_sync_keepalive_wakes_every_kind_of_waiter_on_a_silent_peer() -> None:
    """Against a peer that went silent: a call with no deadline (reading), a call with a long
    deadline (waiting for the reader) and a go() future all fail with UNAVAILABLE after the
    unanswered PING, well before their deadlines."""
    lsock, held, t = _silent_server()
    port = lsock.getsockname()[1]
    try:
        c = wirecall.sync.connect(f"tcp://127.0.0.1:{port}", keepalive=0.2)
        t0 = time.monotonic()
        fut = c.go("Any.Go", timeout=30)
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            a = ex.submit(c.call, "Any.NoDeadline")
            b = ex.submit(c.call, "Any.LongDeadline", timeout=30)
            for f in (a, b, fut):
                with pytest.raises(Unavailable):
                    f.result(10)
        assert time.monotonic() - t0 < 5
        c.close()
    finally:
        lsock.close()
        for s in held:
            s.close()
        t.join(5)


def test_sync_client_huge_reply_over_its_limit_and_the_next_call() -> None:
    with ThreadServer(Hot()) as srv:
        c = wirecall.sync.connect(srv.url, max_message_size=64 * 1024)
        with pytest.raises(RpcError) as ei:
            c.call("Hot.Blob", 100_000)
        assert ei.value.status == Status.RESOURCE_EXHAUSTED
        assert c.call("Hot.Blob", 10) == b"x" * 10
        assert c.go("Hot.Blob", 20).result(5) == b"x" * 20
        c.close()


def test_sync_plain_reply_that_does_not_decode_to_the_result_type() -> None:
    with ThreadServer(Hot()) as srv, wirecall.sync.connect(srv.url) as c:
        with pytest.raises(wirecall.InvalidArgument, match="cannot decode the reply"):
            c.call("Hot.Echo", "text", result_type=int)
        with pytest.raises(wirecall.InvalidArgument, match="cannot decode the reply"):
            c.go("Hot.Echo", "text", result_type=int).result(5)
        assert c.call("Hot.Add", 1, 1, result_type=int) == 2
        assert c.call("Hot.Add", a=2, b=3) == 5  # named arguments still travel as a map


# -- Context as a Struct -----------------------------------------------------------------


def test_context_keeps_object_semantics() -> None:
    a = Context("S.m", {"k": "v"}, None, "peer", "tcp")
    b = Context("S.m", {"k": "v"}, None, "peer", "tcp")
    assert a != b and a == a and len({a, b}) == 2
    k = Context(method="S.k", metadata={"x": "y"}, transport="grpc")
    assert (k.method, dict(k.metadata), k.deadline, k.peer, k.transport) == (
        "S.k", {"x": "y"}, None, "", "grpc")
    assert dict(Context().metadata) == {} and Context().method == ""
    c = copy.copy(a)
    assert c is not a and c.metadata == a.metadata
    p = pickle.loads(pickle.dumps(a))
    assert (p.method, dict(p.metadata), p.peer, p.transport) == ("S.m", {"k": "v"}, "peer", "tcp")
    a.cancel()
    assert a.cancelled and not b.cancelled and not c.cancelled
    assert "S.m" in repr(a)


def test_a_caller_that_queued_behind_the_pumps_maintenance_read_is_woken() -> None:
    """The pump (or check_alive) holds the read lock for a moment; a call arriving then waits
    for the reader to finish. Releasing the lock must wake it, not leave it until the pump's
    next tick (2.5 s with the default keepalive)."""

    class SlowPoll:
        def __init__(self, real: Any, who: threading.Thread) -> None:
            self.real, self.who = real, who

        def poll(self, t: Any = None) -> Any:
            if threading.current_thread() is self.who and t == 0:
                time.sleep(0.3)  # the maintenance read, stretched; it found nothing to read
                return []
            return self.real.poll(t)

        def register(self, *a: Any) -> None:
            self.real.register(*a)

    with ThreadServer(Hot()) as srv, wirecall.sync.connect(srv.url) as c:
        conn = c._conns[0]
        assert conn is not None
        for _ in range(2):
            maint = threading.Thread(target=conn._maintain)
            real = conn._poller
            conn._poller = SlowPoll(real, maint)  # type: ignore[assignment]
            maint.start()
            time.sleep(0.05)
            assert conn._read_lock.locked()
            t0 = time.monotonic()
            assert c.call("Hot.Add", 1, 2) == 3
            elapsed = time.monotonic() - t0
            maint.join(5)
            conn._poller = real
            assert elapsed < 1.5, f"the call waited {elapsed:.2f}s for the pump's next tick"
