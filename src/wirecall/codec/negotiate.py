"""Choosing a codec per call or per service, and the per-connection state of codecs that
keep some (Avro's schemas). Used by the native protocol's client and server (``tcp://``,
``unix://``, ``quic://``).

A call names its codec in metadata, ``wirecall-codec: <name>``; the server decodes the params
with it, encodes the reply with it and says so in the reply's metadata. A client sets it per
call (``metadata={"wirecall-codec": "avro"}``), per service (``service_codecs={"Calc":
"avro"}``), or for every call (``codec="avro"`` on a codec that needs per-call metadata). A
codec the server does not know is INVALID_ARGUMENT naming it and the known ones.

A call with a per-call codec has exactly one argument (like gRPC and Go's net/rpc): the body
is that value, decoded into the type of the method's single parameter; the reply is
encoded with the schema of the method's result type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidArgument
from .base import Codec, get

__all__ = ["CODEC_KEY", "CallCodecs", "PlainSession", "needs_session"]

#: the metadata key naming a call's codec (request and reply)
CODEC_KEY = "wirecall-codec"


def needs_session(codec: Codec) -> bool:
    """True for codecs whose messages need per-call metadata (a schema fingerprint)."""
    return hasattr(codec, "session")


class PlainSession:
    """The session of a stateless codec: the codec itself, metadata naming it."""

    __slots__ = ("codec", "md")

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.md = {CODEC_KEY: codec.name}

    def encode(self, obj: Any, tp: Any = Any) -> tuple[bytes, dict[str, str]]:
        if isinstance(obj, (list, tuple)) and len(obj) == 1:
            obj = obj[0]
        return self.codec.encode(obj), dict(self.md)

    def decode(self, data: bytes | memoryview, tp: Any, md: Mapping[str, str]) -> Any:
        if isinstance(tp, list) and len(tp) == 1:
            return [self.codec.decode(data, tp[0])]
        return self.codec.decode(data, tp)


class CallCodecs:
    """One connection's per-call codecs: which codec a call uses, and each codec's session
    (created on first use, kept for the connection)."""

    def __init__(self, default: Codec, service_codecs: Mapping[str, Any] | None = None) -> None:
        self.default = default
        #: service name -> codec (checked now: an unknown codec name is a ValueError)
        self.per_service = {svc: get(c) for svc, c in (service_codecs or {}).items()}
        #: every call needs metadata (the connection's own codec is a schema codec)
        self.always = needs_session(default)
        self.sessions: dict[str, Any] = {}
        #: in-flight calls with a per-call codec: call id -> the codec's session
        self.calls: dict[int, Any] = {}

    @property
    def active(self) -> bool:
        return self.always or bool(self.per_service)

    def for_call(self, method: str, metadata: Mapping[str, str] | None) -> Codec | None:
        """The codec a client call uses, None for the connection's plain path."""
        name = metadata.get(CODEC_KEY) if metadata else None
        if name:
            try:
                return get(name)
            except ValueError as exc:
                raise InvalidArgument(message=str(exc)) from None
        c = self.per_service.get(method.rpartition(".")[0])
        if c is None and self.always:
            return self.default
        return c

    def session(self, codec: Codec) -> Any:
        s = self.sessions.get(codec.name)
        if s is None:
            maker = getattr(codec, "session", None)
            s = self.sessions[codec.name] = maker() if maker is not None else PlainSession(codec)
        return s

    def server_codec(self, metadata: Mapping[str, str]) -> Codec:
        """The codec a request's metadata names; INVALID_ARGUMENT for an unknown one."""
        name = metadata[CODEC_KEY]
        try:
            return get(name)
        except ValueError as exc:
            raise InvalidArgument(message=str(exc)) from None
