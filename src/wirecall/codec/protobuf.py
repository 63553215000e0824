"""The protobuf codec (id 3, name ``proto``): values are generated protobuf message classes.

Protobuf needs the message type to decode, so ``decode(data, type)`` requires a message class.
The wire params of a call to a ``.proto`` method are ``[request]`` (one positional argument):
``encode`` accepts a message, or a one-element list/tuple holding one, and encodes the message
alone (that is the request body gRPC and wirecall's TCP protocol both carry).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError, Message

from .base import register

__all__ = ["PROTOBUF_CODEC", "ProtobufCodec", "is_message_type"]


def is_message_type(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Message)


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


PROTOBUF_CODEC = ProtobufCodec()
register(PROTOBUF_CODEC)
