"""An empty message is a message: a server stream on tcp:// whose codec encodes an item to
zero bytes (protobuf: a ``StringValue("")`` / ``BytesValue(b"")`` has no field set) must
deliver it to the caller, in order, as it does on grpc:// and through the blocking client.
The native async client used to drop zero-length MESSAGE frames."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from google.protobuf import wrappers_pb2

from wirecall import Context, Server
from wirecall.gen import service_base
from wirecall.transport import native as tcp
from wirecall.transport.base import parse_url
from wirecall.transport.native.messages import INITIAL_WINDOW

WordsBase: Any = service_base(wrappers_pb2, "test.Words", {
    "Text": ("StringValue", "StringValue", "server_stream"),
    "Raw": ("BytesValue", "BytesValue", "server_stream"),
    "Empties": ("StringValue", "BytesValue", "server_stream"),
})

TEXT = ["a", "", "", "b", ""]
RAW = [b"", b"x", b"", b"\x00", b""]


class Words(WordsBase):  # type: ignore[misc]
    async def Text(self, request: Any, context: Context) -> AsyncIterator[Any]:
        for s in [request.value, *TEXT]:
            yield wrappers_pb2.StringValue(value=s)

    async def Raw(self, request: Any, context: Context) -> AsyncIterator[Any]:
        for b in RAW:
            yield wrappers_pb2.BytesValue(value=b)

    async def Empties(self, request: Any, context: Context) -> AsyncIterator[Any]:
        for _ in range(int(request.value)):
            yield wrappers_pb2.BytesValue()


@pytest.fixture
async def words_url() -> AsyncIterator[str]:
    server = Server()
    server.register(Words())
    [url] = await server.start("tcp://127.0.0.1:0")
    yield url
    await server.close(drain_timeout=1)


async def test_empty_protobuf_messages_reach_the_caller_on_tcp(words_url: str) -> None:
    conn = await tcp.connect(parse_url(words_url), codec="proto")
    try:
        assert wrappers_pb2.StringValue(value="").SerializeToString() == b""  # the premise
        st = conn.open_stream("Words.Text", [wrappers_pb2.StringValue(value="hi")], 5, None,
                              wrappers_pb2.StringValue)
        assert [m.value async for m in st] == ["hi", *TEXT]
        assert st.error is None
        st = conn.open_stream("Words.Raw", [wrappers_pb2.BytesValue(value=b"r")], 5, None,
                              wrappers_pb2.BytesValue)
        assert [m.value async for m in st] == RAW
        # the connection is still in step: another stream, same answers
        st = conn.open_stream("Words.Text", [wrappers_pb2.StringValue(value="go")], 5, None,
                              wrappers_pb2.StringValue)
        assert [m.value async for m in st] == ["go", *TEXT]
    finally:
        await conn.aclose()


async def test_more_empty_messages_than_a_window(words_url: str) -> None:
    """Empty messages count against the stream's credit like any other: the client must
    grant credit for them too, or a stream of only empty messages longer than the window
    stalls (it ran into the deadline while they were dropped)."""
    conn = await tcp.connect(parse_url(words_url), codec="proto")
    try:
        n = INITIAL_WINDOW * 4
        st = conn.open_stream("Words.Empties", [wrappers_pb2.StringValue(value=str(n))], 5,
                              None, wrappers_pb2.BytesValue)
        got = [m.value async for m in st]
        assert got == [b""] * n
        assert st.error is None
    finally:
        await conn.aclose()


UpBase: Any = service_base(wrappers_pb2, "test.Up", {
    "Collect": ("StringValue", "StringValue", "client_stream"),
    "Echo": ("StringValue", "StringValue", "server_stream"),
})


class Up(UpBase):  # type: ignore[misc]
    async def Collect(self, requests: AsyncIterator[Any], context: Context) -> Any:
        got = [r.value async for r in requests]
        return wrappers_pb2.StringValue(value="|".join(got) + f"#{len(got)}")

    async def Echo(self, request: Any, context: Context) -> AsyncIterator[Any]:
        yield wrappers_pb2.StringValue(value=f"<{request.value}>")


async def test_the_server_keeps_empty_messages_and_an_empty_first_request() -> None:
    """The other direction: empty client-stream messages reach the handler (the server used
    to count 2 of 4 messages when 2 were empty), and a server stream whose request encodes to
    zero bytes gets that request (it used to be refused as a missing argument)."""
    server = Server()
    server.register(Up())
    [url] = await server.start("tcp://127.0.0.1:0")
    conn = await tcp.connect(parse_url(url), codec="proto")
    try:
        sent = ["a", "", "b", ""]
        st = conn.open_stream("Up.Collect", None, 5, None, wrappers_pb2.StringValue)
        for v in sent:
            await st.send(wrappers_pb2.StringValue(value=v))
        await st.done_writing()
        assert [m.value async for m in st] == ["a||b|#4"]
        st = conn.open_stream("Up.Echo", [wrappers_pb2.StringValue(value="")], 5, None,
                              wrappers_pb2.StringValue)
        assert [m.value async for m in st] == ["<>"]
        assert st.error is None
    finally:
        await conn.aclose()
        await server.close(drain_timeout=1)
