"""``wirecall serve --health --reflection``: the standard gRPC health and reflection services
on a server started from the command line, probed with grpcio's own stubs (the
``grpcio-health-checking`` and ``grpcio-reflection`` packages); without the flags they are
not served (opt-in). grpcio's health and reflection modules and wirecall's services can be
used in one process."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

GREETER = "wirecall.tutorial.greeter:Greeter"


def test_serve_health_and_reflection_flags(server_process: Any) -> None:
    proc = server_process(GREETER, "grpc://127.0.0.1:0", "--health", "--reflection")
    addr = proc.start().removeprefix("grpc://")
    with grpc.insecure_channel(addr) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        r = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert r.status == health_pb2.HealthCheckResponse.SERVING
        r = health.Check(health_pb2.HealthCheckRequest(service="helloworld.Greeter"), timeout=5)
        assert r.status == health_pb2.HealthCheckResponse.SERVING

        db = ProtoReflectionDescriptorDatabase(ch)
        services = set(db.get_services())
        assert {"helloworld.Greeter", "grpc.health.v1.Health"} <= services
        pool = descriptor_pool.DescriptorPool(db)
        m = pool.FindServiceByName("helloworld.Greeter").FindMethodByName("SayHello")
        req = message_factory.GetMessageClass(m.input_type)
        res = message_factory.GetMessageClass(m.output_type)
        say = ch.unary_unary("/helloworld.Greeter/SayHello",
                             request_serializer=req.SerializeToString,
                             response_deserializer=res.FromString)
        assert say(req(name="cli"), timeout=5).message == "Hello, cli"


def test_serve_without_flags_has_neither(server_process: Any) -> None:
    proc = server_process(GREETER, "grpc://127.0.0.1:0")
    addr = proc.start().removeprefix("grpc://")
    with grpc.insecure_channel(addr) as ch:
        with pytest.raises(grpc.RpcError) as ei:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as ei:
            list(ProtoReflectionDescriptorDatabase(ch).get_services())
        assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("first", ["grpcio", "wirecall"])
def test_grpcio_health_and_reflection_modules_coexist_with_wirecall(first: str) -> None:
    """Both define grpc.health.v1 / grpc.reflection.v1alpha in protobuf's default pool: in
    either import order, one process can use grpcio's modules and wirecall's services."""
    imports = {
        "grpcio": "from grpc_health.v1 import health_pb2\n"
                  "from grpc_reflection.v1alpha import reflection_pb2\n",
        "wirecall": "import wirecall.observability.health as g\n"
                    "import wirecall.observability.reflection as r\n",
    }
    other = "wirecall" if first == "grpcio" else "grpcio"
    code = imports[first] + imports[other] + (
        "assert g.health_pb2 is health_pb2\n"
        "assert r.VERSIONS['v1alpha'][0] is reflection_pb2\n"
        "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
