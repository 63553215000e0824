"""The codec interface and registry."""

from __future__ import annotations

import contextlib
import importlib
from typing import Any, Protocol, runtime_checkable

__all__ = ["LAZY", "Codec", "codec_by_id", "codec_by_name", "get", "known_ids", "register"]


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
#: codecs whose module is imported on first use: name -> (id, module, pip extra)
LAZY: dict[str, tuple[int, str, str]] = {
    "proto": (3, "wirecall.codec.protobuf", "grpc"),
    "gob": (4, "wirecall.codec.gob", ""),
    "avro": (5, "wirecall.codec.avro", "avro"),
    "flatbuffers": (6, "wirecall.codec.flatbuffers", "flatbuffers"),
}
_tried: set[str] = set()


def _load(name: str) -> None:
    """Import the module of a known optional codec (once); a missing extra names its pip
    command."""
    if name in _by_name or name not in LAZY or name in _tried:
        return
    _tried.add(name)
    _cid, module, extra = LAZY[name]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        if exc.name and exc.name.startswith("wirecall"):
            raise
        raise ValueError(
            f"the {name} codec needs {exc.name!r}: pip install 'wirecall[{extra}]'"
        ) from None


def register(codec: Codec) -> None:
    old = _by_id.get(codec.id)
    if old is not None and old.name != codec.name:
        raise ValueError(f"codec id {codec.id} is taken by {old.name!r}")
    _by_name[codec.name] = codec
    _by_id[codec.id] = codec


def codec_by_name(name: str) -> Codec | None:
    if name not in _by_name and name in LAZY:
        with contextlib.suppress(ValueError, ImportError):  # (get() reports why)
            _load(name)
    return _by_name.get(name)


def known_ids() -> frozenset[int]:
    """The ids of every codec this build knows: registered ones and the optional ones
    (:data:`LAZY`), whose modules are not imported by asking (a server's preface check)."""
    return frozenset(_by_id) | frozenset(v[0] for v in LAZY.values())


def codec_by_id(cid: int) -> Codec | None:
    c = _by_id.get(cid)
    if c is None:
        for name, (lazy_id, _m, _e) in LAZY.items():
            if lazy_id == cid:
                return codec_by_name(name)
    return c


def get(key: str | int | Codec) -> Codec:
    """The codec for a name, an id or a codec instance; ``ValueError`` naming the choices."""
    if not isinstance(key, (str, int)):
        return key
    if isinstance(key, str):
        _load(key)  # a missing extra: ValueError naming the pip command
    c = _by_name.get(key) if isinstance(key, str) else codec_by_id(key)
    if c is None:
        raise ValueError(f"unknown codec {key!r}; known: {sorted(set(_by_name) | set(LAZY))}")
    return c
