"""The Avro codec (id 5, name ``avro``) on fastavro: schemas derived from type hints (or
given), the writer's schema named on the wire by its fingerprint, evolution resolved by
Avro's rules. Needs the ``avro`` extra (``pip install 'wirecall[avro]'``).

Schemas. A dataclass or ``msgspec.Struct`` becomes a record named after its class
(``__avro_name__`` overrides); ``int`` is ``long``, ``Annotated[int, AVRO_INT]`` an Avro
``int``; ``float`` ``double``; ``str``, ``bytes``, ``bool``; ``T | None`` a union with
``null``; ``list[T]`` an array; ``dict[str, T]`` a map; an ``Enum`` an enum of its member
names. A field's default becomes the schema default; ``__avro_aliases__ = {"new": ["old"]}``
gives a renamed field its old names. ``__avro_schema__`` (a dict) replaces the derived schema.

On the wire (see ``docs/protocol-stack.md``): a call's body is Avro binary with no schema;
its metadata says ``wirecall-codec: avro`` and ``avro-fp: <CRC-64-AVRO of the writer's
canonical schema>``, plus ``avro-schema: <the schema>`` until the peer acknowledges that
fingerprint (``avro-ack: <fp>`` in the next message it sends: calls may be reordered on
QUIC, so "sent once" would not be enough). Each side parses a fingerprint's schema once per
connection (:class:`AvroSession`) and decodes with the writer's schema resolved against the
reader's own: a field added with a default, a removed field, a renamed field with an alias,
``int`` widened to ``long`` all read both ways.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import io
import json
import types
import typing
from collections.abc import Mapping
from typing import Any

import msgspec

from .base import register

try:
    import fastavro
    from fastavro import schema as fschema
except ImportError as exc:  # pragma: no cover  (the avro extra is not installed)
    raise ImportError(
        "the avro codec needs fastavro: pip install 'wirecall[avro]'", name="fastavro"
    ) from exc

__all__ = ["AVRO_CODEC", "AVRO_INT", "AvroCodec", "AvroSession", "schema_for"]

#: ``Annotated[int, AVRO_INT]``: an Avro ``int`` (32 bits) rather than ``long``
AVRO_INT = "avro:int"
#: metadata keys
FP_KEY = "avro-fp"
SCHEMA_KEY = "avro-schema"
ACK_KEY = "avro-ack"
#: schemas one connection may teach the other (a peer cannot grow this side's memory)
MAX_SCHEMAS = 256

_PRIMITIVES: dict[Any, str] = {
    int: "long", float: "double", str: "string", bytes: "bytes", bool: "boolean",
    type(None): "null", bytearray: "bytes",
}


def _fields(tp: type) -> list[tuple[str, Any, Any]]:
    """(name, type, default or MISSING) of a dataclass's or Struct's fields."""
    hints = typing.get_type_hints(tp, include_extras=True)
    if dataclasses.is_dataclass(tp):
        out = []
        for f in dataclasses.fields(tp):
            if f.default is not dataclasses.MISSING:
                d: Any = f.default
            elif f.default_factory is not dataclasses.MISSING:
                d = f.default_factory()
            else:
                d = dataclasses.MISSING
            out.append((f.name, hints[f.name], d))
        return out
    info = msgspec.structs.fields(tp)
    return [(f.name, hints[f.name],
             f.default if f.default is not msgspec.NODEFAULT
             else (f.default_factory() if f.default_factory is not msgspec.NODEFAULT
                   else dataclasses.MISSING))
            for f in info]


def _default_json(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")  # Avro's JSON form of bytes defaults
    return msgspec.to_builtins(value)


def schema_for(tp: Any, _named: set[str] | None = None) -> Any:
    """The Avro schema (a JSON-able value) derived from the type ``tp``."""
    named = set() if _named is None else _named
    given = getattr(tp, "__avro_schema__", None)
    if isinstance(given, dict):
        return given
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        args = typing.get_args(tp)
        if AVRO_INT in args[1:] and args[0] is int:
            return "int"
        return schema_for(args[0], named)
    if tp in _PRIMITIVES:
        return _PRIMITIVES[tp]
    if origin in (typing.Union, types.UnionType):
        branches = [schema_for(a, named) for a in typing.get_args(tp)]
        if "null" in branches:  # null first: a None default is then legal
            branches.remove("null")
            branches.insert(0, "null")
        return branches
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple):
        args = typing.get_args(tp)
        return {"type": "array", "items": schema_for(args[0], named) if args else "string"}
    if origin is dict or origin is Mapping:
        args = typing.get_args(tp)
        if args and args[0] is not str:
            raise TypeError(f"Avro maps have string keys, not {args[0]!r}")
        return {"type": "map", "values": schema_for(args[1], named) if args else "string"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        name = getattr(tp, "__avro_name__", tp.__name__)
        if name in named:
            return name
        named.add(name)
        return {"type": "enum", "name": name, "symbols": [m.name for m in tp]}
    if isinstance(tp, type) and (dataclasses.is_dataclass(tp) or issubclass(tp, msgspec.Struct)):
        return _record(tp, named)
    raise TypeError(f"no Avro schema for {tp!r}: use a dataclass, a msgspec.Struct, "
                    "a primitive, a list or a dict, or give __avro_schema__")


def _record(tp: type, named: set[str]) -> Any:
    name = getattr(tp, "__avro_name__", tp.__name__)
    if name in named:
        return name
    named.add(name)
    aliases = getattr(tp, "__avro_aliases__", {})
    fields = []
    for fname, ftype, default in _fields(tp):
        f: dict[str, Any] = {"name": fname, "type": schema_for(ftype, named)}
        if default is not dataclasses.MISSING:
            f["default"] = _default_json(default)
        if fname in aliases:
            f["aliases"] = list(aliases[fname])
        fields.append(f)
    return {"type": "record", "name": name, "fields": fields}


def _to_avro(obj: Any) -> Any:
    """A value as fastavro writes it: records as dicts, enums by name, bytes as they are."""
    if isinstance(obj, (str, int, float, bytes, bool)) or obj is None:
        return obj
    if isinstance(obj, enum.Enum):
        return obj.name
    if isinstance(obj, msgspec.Struct):
        return {f: _to_avro(getattr(obj, f)) for f in obj.__struct_fields__}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_avro(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: _to_avro(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_to_avro(v) for v in obj]
    if isinstance(obj, bytearray):
        return bytes(obj)
    raise TypeError(f"the avro codec cannot encode {type(obj).__name__}")


def _symbols(value: Any, tp: Any) -> Any:
    """Avro enums travel by symbol (the member's name): turn them back into members."""
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp[value].value if isinstance(value, str) else value  # (convert maps values)
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _symbols(value, typing.get_args(tp)[0])
    if isinstance(value, dict):
        if isinstance(tp, type) and (dataclasses.is_dataclass(tp)
                                     or issubclass(tp, msgspec.Struct)):
            hints = typing.get_type_hints(tp)
            return {k: _symbols(v, hints[k]) if k in hints else v for k, v in value.items()}
        if origin is dict or origin is Mapping:
            vt = typing.get_args(tp)[1]
            return {k: _symbols(v, vt) for k, v in value.items()}
    if isinstance(value, list) and origin in (list, tuple, set, frozenset):
        it = typing.get_args(tp)[0]
        return [_symbols(v, it) for v in value]
    if origin in (typing.Union, types.UnionType) and value is not None:
        for arg in typing.get_args(tp):
            if arg is not type(None):
                try:
                    return _symbols(value, arg)
                except (KeyError, TypeError):
                    continue
    return value


@functools.lru_cache(maxsize=1024)
def _has_enum(tp: Any) -> bool:
    """True when an enum hides somewhere in ``tp`` (only then are symbols rewritten)."""
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return True
    if isinstance(tp, type) and (dataclasses.is_dataclass(tp) or issubclass(tp, msgspec.Struct)):
        return any(_has_enum(t) for t in typing.get_type_hints(tp).values())
    return any(_has_enum(a) for a in typing.get_args(tp) if not isinstance(a, str))


def _from_avro(value: Any, tp: Any) -> Any:
    if tp is Any:
        return value
    if _has_enum(tp):
        value = _symbols(value, tp)
    return msgspec.convert(value, tp, strict=False)


def _type_of(obj: Any) -> Any:
    """The type a value's schema is derived from when the caller gave none."""
    if isinstance(obj, (list, tuple)):
        return types.GenericAlias(list, (_type_of(obj[0]) if obj else str,))
    if isinstance(obj, dict):
        return types.GenericAlias(dict, (str, _type_of(next(iter(obj.values()))) if obj else str))
    return type(obj)


class _Schema:
    """One parsed schema: its text, fingerprint and fastavro's parsed form."""

    __slots__ = ("fp", "parsed", "text")

    def __init__(self, schema: Any) -> None:
        self.text = json.dumps(schema, separators=(",", ":"))
        self.parsed = fastavro.parse_schema(schema, named_schemas={})
        canonical = fschema.to_parsing_canonical_form(self.parsed)
        self.fp: str = fschema.fingerprint(canonical, "CRC-64-AVRO")


class AvroCodec:
    name = "avro"
    id = 5
    content_type = "application/avro"

    def __init__(self) -> None:
        self._by_type: dict[Any, _Schema] = {}

    def schema(self, tp: Any) -> _Schema:
        """The parsed schema of a type (derived once, then cached)."""
        s = self._by_type.get(tp)
        if s is None:
            s = self._by_type[tp] = _Schema(schema_for(tp))
        return s

    def write(self, obj: Any, tp: Any = Any) -> tuple[bytes, _Schema]:
        """Avro binary of ``obj`` (a one-element list: its element, a call's one argument)
        with the schema of ``tp`` (or of the value's own type); and that schema."""
        if isinstance(obj, (list, tuple)) and len(obj) == 1 and tp is Any:
            obj = obj[0]
        schema = self.schema(_type_of(obj) if tp is Any else tp)
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, schema.parsed, _to_avro(obj))
        except (ValueError, TypeError, AttributeError) as exc:
            raise TypeError(f"cannot encode {type(obj).__name__} as Avro: {exc}") from None
        return buf.getvalue(), schema

    def read(self, data: bytes | memoryview, tp: Any, writer: _Schema | None = None) -> Any:
        """Decode ``data`` written with ``writer``'s schema into ``tp`` (resolved against
        ``tp``'s schema); ``[T]``: a call's one argument, returned as ``[value]``."""
        if isinstance(tp, list) and len(tp) == 1:
            return [self.read(data, tp[0], writer)]
        reader = None if tp is Any else self.schema(tp)
        w = writer or reader
        if w is None:
            raise ValueError("the avro codec needs the writer's schema or a type to decode")
        # the same schema both sides (the common case): no resolution to do
        resolve = reader.parsed if reader is not None and reader.fp != w.fp else None
        try:
            value = fastavro.schemaless_reader(io.BytesIO(data), w.parsed, resolve)
        except Exception as exc:  # fastavro: SchemaResolutionError, EOFError, ValueError...
            raise ValueError(f"cannot decode Avro data: {exc}") from None
        return _from_avro(value, tp)

    def encode(self, obj: Any) -> bytes:
        """Schemaless Avro of ``obj`` with the schema of its own type (see :meth:`write`)."""
        return self.write(obj)[0]

    def decode(self, data: bytes | memoryview, type: Any = Any) -> Any:
        """Schemaless Avro written with ``type``'s own schema (no evolution: use a session)."""
        return self.read(data, type)

    def session(self) -> AvroSession:
        """The per-connection state: fingerprints taught and learnt."""
        return AvroSession(self)


class AvroSession:
    """One connection's Avro schemas: those this side must still send (not yet
    acknowledged) and those the peer taught it, by fingerprint, each parsed once."""

    def __init__(self, codec: AvroCodec) -> None:
        self.codec = codec
        self.acked: set[str] = set()
        self.learnt: dict[str, _Schema] = {}
        self.to_ack: list[str] = []

    def encode(self, obj: Any, tp: Any = Any) -> tuple[bytes, dict[str, str]]:
        body, schema = self.codec.write(obj, tp)
        md = {"wirecall-codec": "avro", FP_KEY: schema.fp}
        if schema.fp not in self.acked:
            md[SCHEMA_KEY] = schema.text
        if self.to_ack:
            md[ACK_KEY] = ",".join(self.to_ack)
            self.to_ack.clear()
        return body, md

    def decode(self, data: bytes | memoryview, tp: Any, md: Mapping[str, str]) -> Any:
        """Decode with the writer's schema named in ``md`` (learnt once per connection)."""
        for acked in filter(None, md.get(ACK_KEY, "").split(",")):
            self.acked.add(acked)
        fp = md.get(FP_KEY)
        if not fp:
            raise ValueError(f"Avro data without the writer's schema fingerprint ({FP_KEY})")
        writer = self.learnt.get(fp)
        if writer is None:
            text = md.get(SCHEMA_KEY)
            if text is None:
                raise ValueError(f"unknown Avro schema fingerprint {fp} (its schema was not sent)")
            if len(self.learnt) >= MAX_SCHEMAS:
                raise ValueError(f"more than {MAX_SCHEMAS} Avro schemas on one connection")
            try:
                writer = _Schema(json.loads(text))
            except Exception as exc:
                raise ValueError(f"bad Avro schema for fingerprint {fp}: {exc}") from None
            if writer.fp != fp:
                raise ValueError(f"Avro schema does not match its fingerprint {fp}")
            self.learnt[fp] = writer
            self.to_ack.append(fp)
        return self.codec.read(data, tp, writer)


AVRO_CODEC = AvroCodec()
register(AVRO_CODEC)
