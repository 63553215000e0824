"""The protobuf codec (id 3, name ``proto``): values are generated protobuf message classes.

Protobuf needs the message type to decode, so ``decode(data, type)`` requires a message class.
The wire params of a call to a ``.proto`` method are ``[request]`` (one positional argument):
``encode`` accepts a message, or a one-element list/tuple holding one, and encodes the message
alone (that is the request body gRPC and wirecall's TCP protocol both carry).

Also here, for every transport that carries protobuf:

* :func:`method_proto_types`: the (request class, reply class, mode) of a method generated
  from a ``.proto`` (``wirecall gen``), read from its class's ``__grpc_methods__``;
* :class:`MessageWire`: how one call's messages become bytes (protobuf classes, or any
  wirecall codec), raising the :class:`~wirecall.errors.RpcError` a peer should see.

This module imports without the ``grpc`` extra (``protobuf``): :func:`method_proto_types`
then finds nothing (no generated class can exist) and the codec is not registered.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..errors import Internal, InvalidArgument
from .base import Codec, register

try:
    from google.protobuf.message import DecodeError, Message
except ImportError:  # pragma: no cover  (the grpc extra is not installed)
    HAVE_PROTOBUF = False
    DecodeError = Message = ()  # nothing is an instance or subclass of ()
else:
    HAVE_PROTOBUF = True

__all__ = [
    "HAVE_PROTOBUF",
    "PROTOBUF_CODEC",
    "MessageWire",
    "ProtobufCodec",
    "is_message_type",
    "method_proto_types",
]


def is_message_type(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Message)


def method_proto_types(func: Any, name: str) -> tuple[Any, Any, str] | None:
    """(request class, reply class, mode) of the method ``func`` registered as ``name``
    (``Service.Method``: the last dotted part is looked up) when it was generated from a
    ``.proto`` (its class carries ``__grpc_methods__``, see ``wirecall.gen``), else None."""
    table = getattr(type(getattr(func, "__self__", None)), "__grpc_methods__", None)
    if not table:
        return None
    info = table.get(name.rpartition(".")[2])
    return (info[0], info[1], info[2]) if info else None


class ProtobufCodec:
    name = "proto"
    id = 3
    content_type = "application/x-protobuf"

    def encode(self, obj: Any) -> bytes:
        if isinstance(obj, (list, tuple)) and len(obj) == 1:
            obj = obj[0]
        if not isinstance(obj, Message):
            raise TypeError(
                f"the protobuf codec encodes protobuf messages, not {type(obj).__name__}"
            )
        return obj.SerializeToString()  # type: ignore[no-any-return]

    def decode(self, data: bytes | memoryview, type: Any = Any) -> Any:
        if isinstance(type, list) and len(type) == 1:  # ``[Msg]``: the params of a call
            return [self.decode(data, type[0])]
        if not is_message_type(type):
            raise ValueError("the protobuf codec needs a message class to decode into")
        try:
            return type.FromString(bytes(data))
        except DecodeError as exc:
            raise ValueError(f"invalid {type.__name__} message: {exc}") from None


class MessageWire:
    """How one call's messages become bytes: protobuf classes (``codec=None``), or a wirecall
    codec. ``req``/``res``: the request and reply types; ``content_type``: what the call's
    headers say. Errors are the :class:`RpcError` the peer gets (INVALID_ARGUMENT for a bad
    message, INTERNAL for a reply that is not the declared message)."""

    __slots__ = ("codec", "content_type", "req", "res")

    def __init__(self, codec: Codec | None, req: Any, res: Any, content_type: str) -> None:
        self.codec = codec  # None: protobuf with the given classes
        self.req = req
        self.res = res
        self.content_type = content_type

    def decode(self, payload: bytes, tp: Any) -> Any:
        if self.codec is None:
            if not is_message_type(tp):
                raise Internal(message="protobuf message type unknown for this call")
            try:
                return tp.FromString(payload)
            except Exception as exc:
                raise InvalidArgument(message=f"cannot parse {tp.__name__}: {exc}") from None
        try:
            return self.codec.decode(payload, tp)
        except msgspec.ValidationError as exc:
            raise InvalidArgument(message=f"invalid message: {exc}") from None
        except (msgspec.DecodeError, ValueError) as exc:
            raise InvalidArgument(
                message=f"cannot decode {self.codec.name} message: {exc}"
            ) from None

    def encode(self, value: Any, tp: Any) -> bytes:
        if self.codec is None:
            if isinstance(value, (list, tuple)) and len(value) == 1:
                value = value[0]
            if isinstance(value, dict) and is_message_type(tp):
                value = tp(**value)
            if value is None and is_message_type(tp):
                value = tp()
            try:
                return value.SerializeToString()  # type: ignore[no-any-return]
            except AttributeError:
                raise Internal(
                    message=f"expected a protobuf message, got {type(value).__name__}"
                ) from None
        return self.codec.encode(value)


PROTOBUF_CODEC = ProtobufCodec()
if HAVE_PROTOBUF:
    register(PROTOBUF_CODEC)
