"""The codec interface and registry."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Codec", "codec_by_id", "codec_by_name", "get", "register"]


@runtime_checkable
class Codec(Protocol):
    """Encodes Python values to bytes and back.

    ``id`` is the one-byte number the native protocol puts in its preface; ``name`` is used in
    URLs, content types (``application/grpc+<name>``) and the CLI.
    """

    name: str
    id: int
    content_type: str

    def encode(self, obj: Any) -> bytes: ...

    def decode(self, data: bytes | memoryview, type: Any = Any) -> Any: ...


_by_name: dict[str, Codec] = {}
_by_id: dict[int, Codec] = {}


def register(codec: Codec) -> None:
    old = _by_id.get(codec.id)
    if old is not None and old.name != codec.name:
        raise ValueError(f"codec id {codec.id} is taken by {old.name!r}")
    _by_name[codec.name] = codec
    _by_id[codec.id] = codec


def codec_by_name(name: str) -> Codec | None:
    return _by_name.get(name)


def codec_by_id(cid: int) -> Codec | None:
    return _by_id.get(cid)


def get(key: str | int | Codec) -> Codec:
    """The codec for a name, an id or a codec instance; ``ValueError`` naming the choices."""
    if not isinstance(key, (str, int)):
        return key
    c = _by_name.get(key) if isinstance(key, str) else _by_id.get(key)
    if c is None:
        raise ValueError(f"unknown codec {key!r}; known: {sorted(_by_name)}")
    return c
