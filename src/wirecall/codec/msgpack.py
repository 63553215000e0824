"""msgpack (the default) and JSON codecs, both on msgspec."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import msgspec

from .base import register

__all__ = ["JSON_CODEC", "MSGPACK_CODEC", "JsonCodec", "MsgpackCodec"]


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if hasattr(obj, "SerializeToString") and hasattr(obj, "DESCRIPTOR"):  # protobuf, no import
        raise TypeError(
            f"wirecall cannot encode objects of type {type(obj).__name__} with msgpack: it is "
            "a protobuf message; connect with codec='proto' (tcp://, unix://) or call it "
            "over grpc://")
    raise TypeError(f"wirecall cannot encode objects of type {type(obj).__name__}")


class _MsgspecCodec:
    name = ""
    id = 0
    content_type = ""
    _module: Any = None

    def __init__(self) -> None:
        #: the msgspec format module (typed decoders for the transports' fast lane)
        self.msgspec_module = self._module
        self._encoder = self._module.Encoder(enc_hook=_enc_hook)
        self.encode = self._encoder.encode  # type: ignore[method-assign]
        self._any = self._module.Decoder()
        #: decode with no target type (the C decoder itself: the transports' hot path)
        self.decode_any = self._any.decode
        self._typed: dict[Any, Any] = {}

    def encode(self, obj: Any) -> bytes:  # replaced per instance by the C encoder
        return bytes(self._encoder.encode(obj))

    def decode(self, data: bytes | memoryview, type: Any = Any) -> Any:
        if type is Any:
            return self._any.decode(data)
        dec = self._typed.get(type)
        if dec is None:
            dec = self._typed[type] = self._module.Decoder(type)
        return dec.decode(data)


class MsgpackCodec(_MsgspecCodec):
    name = "msgpack"
    id = 1
    content_type = "application/msgpack"
    _module = msgspec.msgpack


class JsonCodec(_MsgspecCodec):
    name = "json"
    id = 2
    content_type = "application/json"
    _module = msgspec.json


MSGPACK_CODEC = MsgpackCodec()
JSON_CODEC = JsonCodec()
register(MSGPACK_CODEC)
register(JSON_CODEC)
