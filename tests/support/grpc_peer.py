"""Shared pieces of the gRPC tests: generated interop messages, the TestService implemented on
wirecall and on grpcio (grpc.aio), servers on free ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from wirecall import RpcError, Server, Status
from wirecall.context import Context
from wirecall.gen import load_proto
from wirecall.protocol.grpc.http2 import BACKENDS, ENV_VAR
from wirecall.streaming import send_initial_metadata, set_trailing_metadata

HERE = Path(__file__).resolve().parents[1]
pb, wc = load_proto(HERE / "protos" / "interop_test.proto")
assert wc is not None

ECHO_INITIAL = "x-grpc-test-echo-initial"
ECHO_TRAILING = "x-grpc-test-echo-trailing-bin"
SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"


@pytest.fixture(params=BACKENDS)
def http2_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each HTTP/2 backend of the gRPC core in turn (ngh2, h2), through ``WIRECALL_GRPC_HTTP2``
    (servers, clients and subprocesses the test starts use it)."""
    name: str = request.param
    monkeypatch.setenv(ENV_VAR, name)
    return name


def _echo(md: Any) -> None:
    if ECHO_INITIAL in md:
        send_initial_metadata({ECHO_INITIAL: md[ECHO_INITIAL]})
    if ECHO_TRAILING in md:
        set_trailing_metadata({ECHO_TRAILING: md[ECHO_TRAILING]})


def _payload(n: int) -> Any:
    return pb.Payload(body=b"\0" * n)


class WcTestService(wc.TestServiceBase):
    """grpc.testing.TestService on wirecall (UnimplementedCall left unimplemented)."""

    async def EmptyCall(self, request: Any, context: Context) -> Any:
        return pb.Empty()

    async def UnaryCall(self, request: Any, context: Context) -> Any:
        _echo(context.metadata)
        if request.response_status.code:
            raise RpcError(Status(request.response_status.code), request.response_status.message)
        return pb.SimpleResponse(payload=_payload(request.response_size))

    async def StreamingOutputCall(self, request: Any, context: Context) -> AsyncIterator[Any]:
        for p in request.response_parameters:
            if p.interval_us:
                await asyncio.sleep(p.interval_us / 1e6)
            yield pb.StreamingOutputCallResponse(payload=_payload(p.size))

    async def StreamingInputCall(self, requests: AsyncIterator[Any], context: Context) -> Any:
        total = 0
        async for r in requests:
            total += len(r.payload.body)
        return pb.StreamingInputCallResponse(aggregated_payload_size=total)

    async def FullDuplexCall(
        self, requests: AsyncIterator[Any], context: Context
    ) -> AsyncIterator[Any]:
        _echo(context.metadata)
        async for r in requests:
            if r.response_status.code:
                raise RpcError(Status(r.response_status.code), r.response_status.message)
            for p in r.response_parameters:
                if p.interval_us:
                    await asyncio.sleep(p.interval_us / 1e6)
                yield pb.StreamingOutputCallResponse(payload=_payload(p.size))

    async def HalfDuplexCall(
        self, requests: AsyncIterator[Any], context: Context
    ) -> AsyncIterator[Any]:
        got = [r async for r in requests]
        for r in got:
            for p in r.response_parameters:
                yield pb.StreamingOutputCallResponse(payload=_payload(p.size))


async def start_wirecall(
    *services: Any, url: str = "grpc://127.0.0.1:0", **kw: Any
) -> tuple[Server, str]:
    server = Server(**kw)
    for s in services or (WcTestService(),):
        server.register(s)
    [real] = await server.start(url)
    return server, real


# -- the same service on grpcio ----------------------------------------------------------------


async def _g_echo(context: Any) -> None:
    md = dict(context.invocation_metadata())
    if ECHO_INITIAL in md:
        await context.send_initial_metadata(((ECHO_INITIAL, md[ECHO_INITIAL]),))
    if ECHO_TRAILING in md:
        context.set_trailing_metadata(((ECHO_TRAILING, md[ECHO_TRAILING]),))


async def g_empty(request: Any, context: Any) -> Any:
    return pb.Empty()


async def g_unary(request: Any, context: Any) -> Any:
    await _g_echo(context)
    if request.response_status.code:
        await context.abort(grpc.StatusCode(_code(request.response_status.code)),
                            request.response_status.message)
    return pb.SimpleResponse(payload=_payload(request.response_size))


def _code(n: int) -> Any:
    for c in grpc.StatusCode:
        if c.value[0] == n:
            return c.value
    raise ValueError(n)


async def g_stream_out(request: Any, context: Any) -> AsyncIterator[Any]:
    for p in request.response_parameters:
        if p.interval_us:
            await asyncio.sleep(p.interval_us / 1e6)
        yield pb.StreamingOutputCallResponse(payload=_payload(p.size))


async def g_stream_in(request_iterator: Any, context: Any) -> Any:
    total = 0
    async for r in request_iterator:
        total += len(r.payload.body)
    return pb.StreamingInputCallResponse(aggregated_payload_size=total)


async def g_full_duplex(request_iterator: Any, context: Any) -> AsyncIterator[Any]:
    await _g_echo(context)
    async for r in request_iterator:
        if r.response_status.code:
            await context.abort(grpc.StatusCode(_code(r.response_status.code)),
                                r.response_status.message)
        for p in r.response_parameters:
            if p.interval_us:
                await asyncio.sleep(p.interval_us / 1e6)
            yield pb.StreamingOutputCallResponse(payload=_payload(p.size))


async def g_half_duplex(request_iterator: Any, context: Any) -> AsyncIterator[Any]:
    got = [r async for r in request_iterator]
    for r in got:
        for p in r.response_parameters:
            yield pb.StreamingOutputCallResponse(payload=_payload(p.size))


def _h(kind: str, fn: Any, req: Any, res: Any) -> Any:
    make = getattr(grpc, f"{kind}_rpc_method_handler")
    return make(fn, request_deserializer=req.FromString, response_serializer=res.SerializeToString)


async def start_grpcio(extra: list[Any] | None = None) -> tuple[Any, int]:
    server = grpc.aio.server()
    handlers = {
        "EmptyCall": _h("unary_unary", g_empty, pb.Empty, pb.Empty),
        "UnaryCall": _h("unary_unary", g_unary, pb.SimpleRequest, pb.SimpleResponse),
        "StreamingOutputCall": _h("unary_stream", g_stream_out, pb.StreamingOutputCallRequest,
                                  pb.StreamingOutputCallResponse),
        "StreamingInputCall": _h("stream_unary", g_stream_in, pb.StreamingInputCallRequest,
                                 pb.StreamingInputCallResponse),
        "FullDuplexCall": _h("stream_stream", g_full_duplex, pb.StreamingOutputCallRequest,
                             pb.StreamingOutputCallResponse),
        "HalfDuplexCall": _h("stream_stream", g_half_duplex, pb.StreamingOutputCallRequest,
                             pb.StreamingOutputCallResponse),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("grpc.testing.TestService", handlers), *(extra or []))
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def grpcio_stubs(channel: Any) -> dict[str, Any]:
    """Callables for every TestService method on a grpc.aio channel."""
    t = "/grpc.testing.TestService/"

    def mk(kind: str, name: str, req: Any, res: Any, svc: str = t) -> Any:
        return getattr(channel, kind)(svc + name, request_serializer=req.SerializeToString,
                                      response_deserializer=res.FromString)

    return {
        "EmptyCall": mk("unary_unary", "EmptyCall", pb.Empty, pb.Empty),
        "UnaryCall": mk("unary_unary", "UnaryCall", pb.SimpleRequest, pb.SimpleResponse),
        "StreamingOutputCall": mk("unary_stream", "StreamingOutputCall",
                                  pb.StreamingOutputCallRequest, pb.StreamingOutputCallResponse),
        "StreamingInputCall": mk("stream_unary", "StreamingInputCall",
                                 pb.StreamingInputCallRequest, pb.StreamingInputCallResponse),
        "FullDuplexCall": mk("stream_stream", "FullDuplexCall", pb.StreamingOutputCallRequest,
                             pb.StreamingOutputCallResponse),
        "HalfDuplexCall": mk("stream_stream", "HalfDuplexCall", pb.StreamingOutputCallRequest,
                             pb.StreamingOutputCallResponse),
        "UnimplementedCall": mk("unary_unary", "UnimplementedCall", pb.Empty, pb.Empty),
        "UnimplementedService": mk("unary_unary", "UnimplementedCall", pb.Empty, pb.Empty,
                                   "/grpc.testing.UnimplementedService/"),
    }
