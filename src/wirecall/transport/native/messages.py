"""What both sides of the native protocol share above the frames: decoding message bodies
into their types, the error an ERROR frame carries, and the streams' message window."""

from __future__ import annotations

from typing import Any

import msgspec

from ... import codec as codecs
from ...errors import InvalidArgument, RpcError
from ...protocol import frames as fr
from ...seam import MethodInfo
from ...status import Status

__all__ = [
    "GRANT_AT",
    "INITIAL_WINDOW",
    "decode_message",
    "encode_error_details",
    "error_from_frame",
    "typed_params",
]

INITIAL_WINDOW = 16  # messages each side may send before the first WINDOW_UPDATE
#: credit is returned in batches of half a window
GRANT_AT = INITIAL_WINDOW // 2


def error_from_frame(codec: codecs.Codec, ev: fr.ErrorReceived) -> RpcError:
    """The :class:`RpcError` an ERROR frame carries (both native clients use this)."""
    details = None
    if ev.details:
        try:
            details = codec.decode(ev.details)
        except msgspec.DecodeError:
            details = ev.details
    try:
        status = Status(ev.status)
    except ValueError:
        status = Status.UNKNOWN
    return RpcError(status, ev.message, details)


def encode_error_details(codec: codecs.Codec, details: Any) -> bytes:
    """The details of an error, encoded for an ERROR frame (their text if not encodable)."""
    if details is None:
        return b""
    try:
        return codec.encode(details)
    except Exception:
        return codec.encode(str(details))


def typed_params(codec: Any, spec: MethodInfo | None, body: bytes | memoryview) -> Any:
    """Decode wire params; codecs that need a type (protobuf) get ``[request class]``."""
    if codec.id != 3:
        return codec.decode(body)
    info = spec.proto if spec is not None else None
    if info is None:
        raise msgspec.DecodeError("protobuf params need a method generated from a .proto")
    try:
        return codec.decode(body, [info[0]])
    except ValueError as exc:
        raise msgspec.DecodeError(str(exc)) from None


def decode_message(codec: Any, body: bytes | memoryview, tp: Any) -> Any:
    """One streamed message decoded into ``tp``; INVALID_ARGUMENT when it does not fit."""
    try:
        return codec.decode(body, tp)
    except msgspec.ValidationError as exc:
        raise InvalidArgument(message=f"invalid message: {exc}") from None
    except (msgspec.DecodeError, ValueError) as exc:
        raise InvalidArgument(message=f"cannot decode message: {exc}") from None
