"""gRPC server reflection (``grpc.reflection.v1alpha`` and ``v1`` ``ServerReflectionInfo``), so
stock tools (grpcurl, grpcio's reflection client) can list and describe a server's services.

    from wirecall.observability.reflection import enable_reflection
    enable_reflection(server)

``wirecall serve --reflection`` does the same. Reflection describes the services generated
from ``.proto`` files (``wirecall gen``); plain Python services (msgpack over gRPC) have no
descriptors and are not listed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..context import Context
from ..gen import alias_full_names, service_base, standard_messages

if TYPE_CHECKING:
    from ..server import Server

__all__ = ["VERSIONS", "enable_reflection"]

#: protocol version -> (its message module, the ProtoService base of its service)
VERSIONS: dict[str, tuple[Any, Any]] = {}
for _v in ("v1alpha", "v1"):
    _pb = standard_messages(f"grpc_reflection.{_v}.reflection_pb2",
                            f"grpc_reflection_{_v}.proto")
    VERSIONS[_v] = (_pb, service_base(_pb, f"grpc.reflection.{_v}.ServerReflection", {
        "ServerReflectionInfo": ("ServerReflectionRequest", "ServerReflectionResponse",
                                 "bidi_stream"),
    }))


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
    pb, base = VERSIONS[version]

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
