"""Codecs: how values become bytes. ``get(name_or_id)`` finds one; ``register`` adds one."""

from .base import Codec, codec_by_id, codec_by_name, get, known_ids, register
from .msgpack import JSON_CODEC, MSGPACK_CODEC, JsonCodec, MsgpackCodec

__all__ = [
    "JSON_CODEC",
    "MSGPACK_CODEC",
    "Codec",
    "JsonCodec",
    "MsgpackCodec",
    "codec_by_id",
    "codec_by_name",
    "get",
    "known_ids",
    "register",
]
