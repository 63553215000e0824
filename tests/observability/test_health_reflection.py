"""grpc.health.v1.Health and server reflection, exercised with grpcio as the stock client:
list services, fetch file descriptors, rebuild the service in a fresh descriptor pool and
call it dynamically (what grpcurl does)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from wirecall import Server
from wirecall.observability.health import (
    NOT_SERVING,
    SERVICE_UNKNOWN,
    SERVING,
    enable_health,
    health_pb2,
)
from wirecall.observability.reflection import VERSIONS, enable_reflection
from wirecall.tutorial.greeter import Greeter


@pytest.fixture
async def served() -> AsyncIterator[tuple[Server, Any, str]]:
    server = Server()
    server.register(Greeter())
    health = enable_health(server)
    enable_reflection(server)
    [url] = await server.start("grpc://127.0.0.1:0")
    yield server, health, url.removeprefix("grpc://")
    await server.close(drain_timeout=1)


def _check(ch: Any) -> Any:
    return ch.unary_unary("/grpc.health.v1.Health/Check",
                          request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                          response_deserializer=health_pb2.HealthCheckResponse.FromString)


async def test_health_check_and_watch(served: tuple[Server, Any, str]) -> None:
    _, health, addr = served
    async with grpc.aio.insecure_channel(addr) as ch:
        r = await _check(ch)(health_pb2.HealthCheckRequest(), timeout=5)
        assert r.status == SERVING
        r = await _check(ch)(health_pb2.HealthCheckRequest(service="helloworld.Greeter"),
                             timeout=5)
        assert r.status == SERVING
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await _check(ch)(health_pb2.HealthCheckRequest(service="nope.Nope"), timeout=5)
        assert ei.value.code() == grpc.StatusCode.NOT_FOUND
        watch = ch.unary_stream(
            "/grpc.health.v1.Health/Watch",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )(health_pb2.HealthCheckRequest(service="helloworld.Greeter"), timeout=5)
        assert (await watch.read()).status == SERVING
        health.set("helloworld.Greeter", NOT_SERVING)
        assert (await watch.read()).status == NOT_SERVING
        watch.cancel()
        w2 = ch.unary_stream(
            "/grpc.health.v1.Health/Watch",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )(health_pb2.HealthCheckRequest(service="nope.Nope"), timeout=5)
        assert (await w2.read()).status == SERVICE_UNKNOWN
        w2.cancel()


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
async def test_reflection_lists_describes_and_calls(
    served: tuple[Server, Any, str], version: str
) -> None:
    pb, _ = VERSIONS[version]
    addr = served[2]
    async with grpc.aio.insecure_channel(addr) as ch:
        call = ch.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=pb.ServerReflectionRequest.SerializeToString,
            response_deserializer=pb.ServerReflectionResponse.FromString,
        )(timeout=5)
        await call.write(pb.ServerReflectionRequest(list_services=""))
        names = [s.name for s in (await call.read()).list_services_response.service]
        assert "helloworld.Greeter" in names
        assert "grpc.health.v1.Health" in names
        assert f"grpc.reflection.{version}.ServerReflection" in names
        await call.write(pb.ServerReflectionRequest(file_containing_symbol="helloworld.Greeter"))
        files = (await call.read()).file_descriptor_response.file_descriptor_proto
        await call.write(pb.ServerReflectionRequest(file_containing_symbol="no.Such"))
        err = (await call.read()).error_response
        assert err.error_code == grpc.StatusCode.NOT_FOUND.value[0]
        await call.done_writing()
        # rebuild the service from the descriptors alone, as grpcurl would
        pool = descriptor_pool.DescriptorPool()
        for raw in files:
            pool.Add(descriptor_pb2.FileDescriptorProto.FromString(raw))
        svc = pool.FindServiceByName("helloworld.Greeter")
        m = svc.FindMethodByName("SayHello")
        req_cls = message_factory.GetMessageClass(m.input_type)
        res_cls = message_factory.GetMessageClass(m.output_type)
        say = ch.unary_unary(f"/{svc.full_name}/{m.name}",
                             request_serializer=req_cls.SerializeToString,
                             response_deserializer=res_cls.FromString)
        assert (await say(req_cls(name="grpcurl"), timeout=5)).message == "Hello, grpcurl"
