"""JSON <-> protobuf for the CLI on grpc:// (what grpcurl does): a method's message types come
from a ``--proto`` file or from the server's reflection service, so a ``.proto`` service is
callable from a shell with JSON; unknown fields are an error naming them.

Needs the grpc extra (protobuf, grpcio-tools for ``--proto``); imported only when used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from wirecall.client import Client
from wirecall.errors import InvalidArgument, RpcError, Unimplemented

from .common import CommandError

__all__ = ["ProtoMethod", "from_json", "resolve", "to_json"]

_MODES = {(False, False): "unary", (False, True): "server_stream",
          (True, False): "client_stream", (True, True): "bidi_stream"}
_LABELS = {1: "optional", 2: "required", 3: "repeated"}


@dataclass(frozen=True)
class ProtoMethod:
    """A ``.proto`` method: full name, request and response classes, mode, descriptor."""

    name: str
    request: Any
    response: Any
    mode: str
    descriptor: Any


def _split(method: str) -> tuple[str, str]:
    svc, dot, name = method.replace("/", ".").strip(".").rpartition(".")
    if not dot:
        raise CommandError(f"expected Service.Method (or pkg.Service/Method), got {method!r}")
    return svc, name


def _from_pool(pool: Any, method: str) -> ProtoMethod | None:
    from google.protobuf import message_factory

    svc_name, name = _split(method)
    try:
        svc = pool.FindServiceByName(svc_name)
    except KeyError:
        return None
    md = svc.methods_by_name.get(name)
    if md is None:
        raise Unimplemented(message=f"service {svc_name} has no method {name!r}; it has "
                                    f"{', '.join(sorted(svc.methods_by_name))}")
    return ProtoMethod(
        f"{svc.full_name}.{name}",
        message_factory.GetMessageClass(md.input_type),
        message_factory.GetMessageClass(md.output_type),
        _MODES[(md.client_streaming, md.server_streaming)],
        md,
    )


def from_proto_file(path: str, method: str) -> ProtoMethod:
    """The method ``method`` of a ``.proto`` file (compiled with grpcio-tools)."""
    try:
        from wirecall.gen import load_proto

        pb2, _ = load_proto(path)
    except ImportError as exc:
        raise CommandError(f"--proto needs the grpc extra: pip install 'wirecall[grpc]' "
                           f"({exc.name} is missing)") from None
    except (OSError, RuntimeError, ValueError) as exc:
        raise CommandError(f"cannot compile {path}: {exc}") from None
    found = _from_pool(pb2.DESCRIPTOR.pool, method)
    if found is None:
        raise CommandError(f"{path} defines no service {_split(method)[0]!r}")
    return found


async def from_reflection(client: Client, method: str) -> ProtoMethod | None:
    """The method from the server's reflection service (v1, else v1alpha); None when the
    server has no reflection or does not describe that service."""
    from google.protobuf import descriptor_pb2, descriptor_pool

    from wirecall.observability.reflection import VERSIONS

    svc_name, _ = _split(method)
    for version in ("v1", "v1alpha"):
        pb = VERSIONS[version][0]
        req = pb.ServerReflectionRequest(file_containing_symbol=svc_name)
        try:
            stream = client.stream(f"grpc.reflection.{version}.ServerReflection."
                                   "ServerReflectionInfo", iter([req]), timeout=10,
                                   result_type=pb.ServerReflectionResponse)
            reply = None
            async for item in stream:  # one answer to our one request is all we need
                reply = item
                break
            stream.cancel()
        except Unimplemented:
            continue
        if reply is None or reply.WhichOneof("message_response") != "file_descriptor_response":
            return None
        protos = [descriptor_pb2.FileDescriptorProto.FromString(b)
                  for b in reply.file_descriptor_response.file_descriptor_proto]
        pool = descriptor_pool.DescriptorPool()
        _add_in_order(pool, protos)
        return _from_pool(pool, method)
    return None


def _add_in_order(pool: Any, protos: list[Any]) -> None:
    """Add file descriptors dependencies first (reflection sends them in any order)."""
    left = {p.name: p for p in protos}
    added: set[str] = set()
    while left:
        ready = [p for p in left.values() if all(d in added or d not in left
                                                 for d in p.dependency)]
        if not ready:
            ready = list(left.values())
        for p in ready:
            for dep in p.dependency:  # well-known types the server did not send
                if dep not in added and dep not in left:
                    _add_well_known(pool, dep)
                    added.add(dep)
            pool.Add(p)
            added.add(p.name)
            del left[p.name]


def _add_well_known(pool: Any, name: str) -> None:
    from google.protobuf import descriptor_pb2, descriptor_pool

    try:
        fd = descriptor_pool.Default().FindFileByName(name)
    except KeyError:
        return
    proto = descriptor_pb2.FileDescriptorProto()
    fd.CopyToProto(proto)
    pool.Add(proto)


async def resolve(client: Client, scheme: str, method: str, proto: str | None,
                  ) -> ProtoMethod | None:
    """The protobuf method to convert JSON for: from ``--proto``, else (on grpc:// and
    grpcs://) from reflection; None means "not a .proto method": call it with JSON/msgpack."""
    if proto:
        return from_proto_file(proto, method)
    if scheme not in ("grpc", "grpcs"):
        return None
    try:
        return await from_reflection(client, method)
    except ImportError:
        return None
    except RpcError:
        return None


def from_json(pm: ProtoMethod, value: Any) -> Any:
    """A request message from JSON (an object; ``[obj]`` is taken as ``obj``); unknown
    fields and wrong types are INVALID_ARGUMENT naming them."""
    from google.protobuf import json_format

    if isinstance(value, list) and len(value) <= 1:
        value = value[0] if value else {}
    if not isinstance(value, dict):
        raise InvalidArgument(message=f"{pm.name} takes a JSON object "
                                      f"({pm.request.DESCRIPTOR.full_name})")
    try:
        return json_format.ParseDict(value, pm.request())
    except json_format.ParseError as exc:
        text = " ".join(str(exc).split())  # protobuf's message spans lines
        raise InvalidArgument(message=f"{pm.request.DESCRIPTOR.full_name}: {text}") from None


def to_json(message: Any) -> str:
    """A message as one line of JSON (proto3 JSON mapping, field names as in the .proto)."""
    from google.protobuf import json_format

    return json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True),
                      ensure_ascii=False)


def describe_message(desc: Any, indent: str = "    ", seen: frozenset[str] = frozenset(),
                     ) -> list[str]:
    """The fields of a message type, nested messages expanded once."""
    lines: list[str] = []
    for f in desc.fields:
        tname = f.message_type.full_name if f.message_type else (
            f.enum_type.full_name if f.enum_type else _scalar(f.type))
        label = "repeated " if _is_repeated(f) else ""
        lines.append(f"{indent}{label}{tname} {f.name} = {f.number};")
        if f.message_type and f.message_type.full_name not in seen:
            lines += describe_message(f.message_type, indent + "  ",
                                      seen | {desc.full_name, f.message_type.full_name})
    return lines


def _is_repeated(f: Any) -> bool:
    rep = getattr(f, "is_repeated", None)
    if rep is not None:
        return bool(rep)
    return bool(f.label == 3)


def _scalar(t: int) -> str:
    from google.protobuf.descriptor import FieldDescriptor

    for name in dir(FieldDescriptor):
        if name.startswith("TYPE_") and getattr(FieldDescriptor, name) == t:
            return name[5:].lower()
    return str(t)
