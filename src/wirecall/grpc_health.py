"""The standard gRPC health service (``grpc.health.v1.Health``: Check and Watch) and server
reflection (``grpc.reflection.v1alpha`` and ``v1`` ``ServerReflectionInfo``), so stock tools
(grpcurl, grpc_health_probe, grpcio's reflection client) can probe, list and call a server.

    from wirecall.grpc_health import enable_health, enable_reflection
    health = enable_health(server)           # health.set("helloworld.Greeter", NOT_SERVING)
    enable_reflection(server)

Reflection describes the services generated from ``.proto`` files (``wirecall gen``); plain
Python services (msgpack over gRPC) have no descriptors and are not listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .context import Context
from .errors import NotFound
from .gen import ProtoService, load_proto

if TYPE_CHECKING:
    from .server import Server

__all__ = ["HealthService", "enable_health", "enable_reflection", "health_pb2"]

_PROTOS = Path(__file__).parent / "protos"


def _messages(official: str, proto: str) -> Any:
    """The message module of a standard gRPC service: grpcio's own (``grpcio-health-checking``,
    ``grpcio-reflection``) when installed, else ours. Both define the same protobuf names, so
    one process can hold only one of them in the default descriptor pool: taking grpcio's
    when it is there lets applications import it alongside wirecall."""
    try:
        return importlib.import_module(official)
    except Exception:  # not installed, or built for another protobuf runtime
        return load_proto(_PROTOS / proto)[0]


def _service_base(pb: Any, full: str, methods: dict[str, tuple[str, str, str]]) -> Any:
    """A :class:`ProtoService` base for ``full`` whose messages come from ``pb``."""
    return type(f"{full.rpartition('.')[2]}Base", (ProtoService,), {
        "__grpc_service__": full,
        "__wirecall_service__": full.rpartition(".")[2],
        "__grpc_file__": pb.DESCRIPTOR,
        "__grpc_methods__": {
            m: (getattr(pb, req), getattr(pb, res), mode) for m, (req, res, mode) in methods.items()
        },
    })


health_pb2 = _messages("grpc_health.v1.health_pb2", "grpc_health_v1.proto")
_HealthBase = _service_base(health_pb2, "grpc.health.v1.Health", {
    "Check": ("HealthCheckRequest", "HealthCheckResponse", "unary"),
    "Watch": ("HealthCheckRequest", "HealthCheckResponse", "server_stream"),
})
_refl: dict[str, tuple[Any, Any]] = {}
for _v in ("v1alpha", "v1"):
    _pb = _messages(f"grpc_reflection.{_v}.reflection_pb2", f"grpc_reflection_{_v}.proto")
    _refl[_v] = (_pb, _service_base(_pb, f"grpc.reflection.{_v}.ServerReflection", {
        "ServerReflectionInfo": ("ServerReflectionRequest", "ServerReflectionResponse",
                                 "bidi_stream"),
    }))

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


def alias_full_names(server: Server, impl: ProtoService) -> None:
    """Make ``pkg.Service.Method`` resolve too (the registry keys by ``Service.Method``)."""
    full = type(impl).__grpc_service__
    short = type(impl).__wirecall_service__
    for m in type(impl).__grpc_methods__:
        spec = server.registry.methods.get(f"{short}.{m}")
        if spec is not None and getattr(spec.func, "__self__", None) is impl:
            server.registry.methods.setdefault(f"{full}.{m}", spec)


class HealthService(_HealthBase):  # type: ignore[misc,valid-type]
    """``grpc.health.v1.Health``. Status per service name; ``""`` is the whole server
    (NOT_SERVING once the server is shutting down)."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._status: dict[str, int] = {"": SERVING}
        self._changed = asyncio.Event()

    def set(self, service: str, status: int) -> None:
        """Set a service's status (``SERVING``/``NOT_SERVING``); Watch streams see it."""
        self._status[service] = status
        self._changed.set()
        self._changed = asyncio.Event()

    def _get(self, service: str) -> int | None:
        if service == "" and self._server.closing:
            return int(NOT_SERVING)
        st = self._status.get(service)
        if st is None and _registered(self._server, service):
            return int(SERVING)
        return st

    async def Check(self, request: Any, context: Context) -> Any:
        st = self._get(request.service)
        if st is None:
            raise NotFound(message=f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=st)

    async def Watch(self, request: Any, context: Context) -> AsyncIterator[Any]:
        last: int | None = -1
        while True:
            changed = self._changed
            st = self._get(request.service)
            st = int(SERVICE_UNKNOWN) if st is None else st
            if st != last:
                yield health_pb2.HealthCheckResponse(status=st)
                last = st
            # re-check every second too (server shutdown does not fire the event)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 1.0)


def _registered(server: Server, service: str) -> bool:
    for spec in server.registry.methods.values():
        owner = type(getattr(spec.func, "__self__", None))
        if getattr(owner, "__grpc_service__", None) == service:
            return True
    return False


def enable_health(server: Server) -> HealthService:
    svc = HealthService(server)
    server.register(svc)
    alias_full_names(server, svc)
    return svc


def _proto_services(server: Server) -> dict[str, Any]:
    """Full service name -> FileDescriptor, for every registered .proto service."""
    out: dict[str, Any] = {}
    for spec in server.registry.methods.values():
        owner = type(getattr(spec.func, "__self__", None))
        name = getattr(owner, "__grpc_service__", None)
        fd = getattr(owner, "__grpc_file__", None)
        if name and fd is not None:
            out[name] = fd
    return out


def _with_deps(fd: Any) -> list[bytes]:
    from google.protobuf import descriptor_pb2

    seen: set[str] = set()
    out: list[bytes] = []

    def walk(f: Any) -> None:
        if f.name in seen:
            return
        seen.add(f.name)
        for dep in f.dependencies:
            walk(dep)
        p = descriptor_pb2.FileDescriptorProto()
        f.CopyToProto(p)
        out.append(p.SerializeToString())

    walk(fd)
    return out


def _make_reflection(version: str) -> type:
    pb, base = _refl[version]

    class ReflectionService(base):  # type: ignore[misc,valid-type]
        __wirecall_service__ = "ServerReflection" if version == "v1" else "ServerReflectionV1alpha"

        def __init__(self, server: Server) -> None:
            self._server = server

        def _answer(self, req: Any) -> Any:
            from google.protobuf import descriptor_pool

            res = pb.ServerReflectionResponse(valid_host=req.host, original_request=req)
            kind = req.WhichOneof("message_request")
            pool = descriptor_pool.Default()
            try:
                if kind == "list_services":
                    names = sorted(_proto_services(self._server))
                    res.list_services_response.service.extend(
                        pb.ServiceResponse(name=n) for n in names
                    )
                elif kind == "file_by_filename":
                    fd = pool.FindFileByName(req.file_by_filename)
                    res.file_descriptor_response.file_descriptor_proto.extend(_with_deps(fd))
                elif kind == "file_containing_symbol":
                    fd = pool.FindFileContainingSymbol(req.file_containing_symbol)
                    res.file_descriptor_response.file_descriptor_proto.extend(_with_deps(fd))
                elif kind == "all_extension_numbers_of_type":
                    d = pool.FindMessageTypeByName(req.all_extension_numbers_of_type)
                    res.all_extension_numbers_response.base_type_name = d.full_name
                    res.all_extension_numbers_response.extension_number.extend(
                        sorted(e.number for e in pool.FindAllExtensions(d))
                    )
                elif kind == "file_containing_extension":
                    d = pool.FindMessageTypeByName(req.file_containing_extension.containing_type)
                    ext = pool.FindExtensionByNumber(
                        d, req.file_containing_extension.extension_number
                    )
                    res.file_descriptor_response.file_descriptor_proto.extend(
                        _with_deps(ext.file)
                    )
                else:
                    raise KeyError("empty request")
            except KeyError as exc:
                res.ClearField("message_response")
                res.error_response.error_code = 5  # NOT_FOUND
                res.error_response.error_message = f"not found: {exc}"
            return res

        async def ServerReflectionInfo(
            self, requests: AsyncIterator[Any], context: Context
        ) -> AsyncIterator[Any]:
            async for req in requests:
                yield self._answer(req)

    return ReflectionService


def enable_reflection(server: Server) -> None:
    """Serve ``grpc.reflection.v1alpha`` and ``grpc.reflection.v1`` ServerReflectionInfo."""
    for version in ("v1", "v1alpha"):
        impl = _make_reflection(version)(server)
        server.register(impl)
        alias_full_names(server, impl)
