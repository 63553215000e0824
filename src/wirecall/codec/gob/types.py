"""Go types as gob sees them, and how Python types map onto them.

A :class:`GoType` describes one Go type: a builtin (``bool``, ``int``, ``uint``, ``float``,
``complex``, ``string``, ``[]byte``, ``interface{}``) or a composite (slice, array, map,
struct). Builtins keep their precise Go spelling (``int64``, ``uint32``, ``float32``) because
composite type names (``[]int64``) and interface type names carry it, even though gob sends
every signed integer the same way.

Python -> Go (:func:`go_type`):

=====================================  ==========================================
``bool``                               ``bool``
``int``                                ``int`` (``Annotated[int, GoInt64]``, ``GoUint32``...)
``float``                              ``float64`` (``Annotated[float, GoFloat32]``)
``complex``                            ``complex128``
``str``                                ``string``
``bytes`` / ``bytearray``              ``[]byte``
``list[T]`` / ``tuple[T, ...]``        ``[]T`` (``Annotated[list[T], GoArray(n)]``: ``[n]T``)
``dict[K, V]``                         ``map[K]V``
msgspec ``Struct`` / dataclass         ``struct`` named after the class, fields by name
``T | None``                           ``*T`` (``None`` is a nil pointer: the field is omitted)
``Any`` / ``object``                   ``interface{}``
=====================================  ==========================================

A struct's Go name is the class name unless the class sets ``__go_name__``. Its field names
are Go's *exported* spellings of the msgspec encode names (``rename=`` works) or dataclass
field names, since Go's gob only fills exported fields, matched by exact name
(:func:`go_field_name`): a name starting with an upper-case letter is kept, any other goes
snake_case -> CamelCase (``time_ms`` -> ``TimeMs``, ``id`` -> ``Id``). A class overrides
single names with ``__go_fields__ = {"id": "ID"}`` (Python field name -> Go name). Decoding
into a class accepts the Go name, the Python name, or either with case and underscores
ignored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import threading
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

import msgspec

__all__ = [
    "BOOL",
    "BYTES",
    "COMPLEX",
    "FLOAT",
    "INT",
    "INTERFACE",
    "STRING",
    "UINT",
    "GoArray",
    "GoComplex64",
    "GoComplex128",
    "GoField",
    "GoFloat32",
    "GoFloat64",
    "GoInt",
    "GoInt8",
    "GoInt16",
    "GoInt32",
    "GoInt64",
    "GoScalar",
    "GoType",
    "GoUint",
    "GoUint8",
    "GoUint16",
    "GoUint32",
    "GoUint64",
    "GoUintptr",
    "ZeroFn",
    "const",
    "go_field_name",
    "go_field_names",
    "go_type",
    "go_type_of_value",
    "is_struct_class",
    "py_fields",
    "strip_type",
    "zero_factory",
]

# Builtin type ids (fixed by the gob specification).
BOOL = 1
INT = 2
UINT = 3
FLOAT = 4
BYTES = 5
STRING = 6
COMPLEX = 7
INTERFACE = 8
BUILTIN_NAMES = {
    BOOL: "bool",
    INT: "int",
    UINT: "uint",
    FLOAT: "float64",
    BYTES: "[]uint8",
    STRING: "string",
    COMPLEX: "complex128",
    INTERFACE: "interface {}",
}
FIRST_USER_ID = 65

I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1
U64_MAX = (1 << 64) - 1


@dataclasses.dataclass(frozen=True)
class GoScalar:
    """A marker naming the exact Go numeric type of a Python ``int``/``float``/``complex``.

    Use it in ``Annotated``: ``Annotated[int, GoUint32]``. It selects the gob encoding
    (signed or unsigned), range-checks values both ways, and spells the Go type name.
    """

    name: str
    wire: int
    lo: int = 0
    hi: int = 0


def _signed(name: str, bits: int) -> GoScalar:
    return GoScalar(name, INT, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def _unsigned(name: str, bits: int) -> GoScalar:
    return GoScalar(name, UINT, 0, (1 << bits) - 1)


GoInt = _signed("int", 64)
GoInt8 = _signed("int8", 8)
GoInt16 = _signed("int16", 16)
GoInt32 = _signed("int32", 32)
GoInt64 = _signed("int64", 64)
GoUint = _unsigned("uint", 64)
GoUint8 = _unsigned("uint8", 8)
GoUint16 = _unsigned("uint16", 16)
GoUint32 = _unsigned("uint32", 32)
GoUint64 = _unsigned("uint64", 64)
GoUintptr = _unsigned("uintptr", 64)
GoFloat32 = GoScalar("float32", FLOAT)
GoFloat64 = GoScalar("float64", FLOAT)
GoComplex64 = GoScalar("complex64", COMPLEX)
GoComplex128 = GoScalar("complex128", COMPLEX)


@dataclasses.dataclass(frozen=True)
class GoArray:
    """Marker: ``Annotated[list[int], GoArray(3)]`` is Go's ``[3]int`` (always sent)."""

    length: int


@dataclasses.dataclass(slots=True, eq=False)
class GoField:
    """One struct field: Go name, Python attribute, type, and whether it is a pointer;
    ``key``: the Python-side name (msgspec encode name; a dict sent as this struct may use
    it instead of the Go name)."""

    name: str
    attr: str
    type: GoType
    pointer: bool
    pytype: Any
    has_default: bool
    default: Any
    key: str = ""


class GoType:
    """One Go type. ``wire`` is the builtin id for builtins, 0 for composite types.

    ``kind`` is one of "bool", "int", "uint", "float", "complex", "string", "bytes",
    "interface", "slice", "array", "map", "struct".
    """

    __slots__ = (
        "_fields",
        "_fields_fn",
        "elem",
        "gostring",
        "key",
        "kind",
        "length",
        "name",
        "pyclass",
        "scalar",
        "wire",
    )

    def __init__(
        self,
        kind: str,
        name: str,
        wire: int = 0,
        *,
        elem: GoType | None = None,
        key: GoType | None = None,
        length: int = 0,
        pyclass: Any = None,
        scalar: GoScalar | None = None,
        gostring: str = "",
    ) -> None:
        self.kind = kind
        self.name = name  # the Go type name as sent in type definitions (struct name)
        self.gostring = gostring or name  # reflect.Type.String(), e.g. "[]main.Item"
        self.wire = wire
        self.elem = elem
        self.key = key
        self.length = length
        self.pyclass = pyclass
        self.scalar = scalar
        self._fields: list[GoField] | None = None
        self._fields_fn: Any = None

    @property
    def fields(self) -> list[GoField]:
        if self._fields is None:
            fn, self._fields_fn = self._fields_fn, None
            self._fields = fn() if fn is not None else []
        return self._fields

    @property
    def builtin(self) -> bool:
        return self.wire != 0

    def __repr__(self) -> str:
        return f"<GoType {self.gostring}>"


def _scalar_type(sc: GoScalar) -> GoType:
    kind = {INT: "int", UINT: "uint", FLOAT: "float", COMPLEX: "complex"}[sc.wire]
    return GoType(kind, sc.name, sc.wire, scalar=sc)


T_BOOL = GoType("bool", "bool", BOOL)
T_INT = _scalar_type(GoInt)
T_FLOAT = _scalar_type(GoFloat64)
T_COMPLEX = _scalar_type(GoComplex128)
T_STRING = GoType("string", "string", STRING)
T_BYTES = GoType("bytes", "[]uint8", BYTES)
T_INTERFACE = GoType("interface", "interface {}", INTERFACE)
_SCALAR_TYPES: dict[GoScalar, GoType] = {GoInt: T_INT, GoFloat64: T_FLOAT, GoComplex128: T_COMPLEX}
_slices: dict[int, GoType] = {}
_maps: dict[tuple[int, int], GoType] = {}
_arrays: dict[tuple[int, int], GoType] = {}
_py_cache: dict[Any, tuple[GoType, bool]] = {}
_anonymous: dict[tuple[tuple[str, int], ...], GoType] = {}
_lock = threading.RLock()
GO_PACKAGE = "main"


def _scalar(sc: GoScalar) -> GoType:
    t = _SCALAR_TYPES.get(sc)
    if t is None:
        t = _SCALAR_TYPES[sc] = _scalar_type(sc)
    return t


def slice_of(elem: GoType, elem_pointer: bool = False) -> GoType:
    k = id(elem) * 2 + elem_pointer
    t = _slices.get(k)
    if t is None:
        es = ("*" if elem_pointer else "") + elem.gostring
        t = _slices[k] = GoType("slice", "[]" + es, elem=elem, gostring="[]" + es)
    return t


def map_of(key: GoType, elem: GoType) -> GoType:
    k = (id(key), id(elem))
    t = _maps.get(k)
    if t is None:
        name = f"map[{key.gostring}]{elem.gostring}"
        t = _maps[k] = GoType("map", name, key=key, elem=elem)
    return t


def array_of(elem: GoType, length: int) -> GoType:
    k = (id(elem), length)
    t = _arrays.get(k)
    if t is None:
        name = f"[{length}]{elem.gostring}"
        t = _arrays[k] = GoType("array", name, elem=elem, length=length)
    return t


def strip_type(tp: Any) -> tuple[Any, bool, list[Any]]:
    """``(base type, optional, Annotated metadata)`` with ``Optional``/``Annotated`` removed."""
    meta: list[Any] = []
    optional = False
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            args = get_args(tp)
            tp = args[0]
            meta.extend(args[1:])
            continue
        if origin is Union or origin is types.UnionType:
            rest = [a for a in get_args(tp) if a is not type(None)]
            if len(rest) == 1 and len(get_args(tp)) == 2:
                optional = True
                tp = rest[0]
                continue
        return tp, optional, meta


def is_struct_class(tp: Any) -> bool:
    return isinstance(tp, type) and (
        issubclass(tp, msgspec.Struct) or dataclasses.is_dataclass(tp)
    )


def _declared_fields(cls: Any) -> list[tuple[str, str, Any, bool, Any]]:
    """(Go name, attribute, annotation, has a default, the default) of each field of a
    msgspec Struct or dataclass, in order (a dataclass's ``init=False`` fields excluded)."""
    out: list[tuple[str, str, Any, bool, Any]] = []
    hints = typing.get_type_hints(cls, include_extras=True)
    if issubclass(cls, msgspec.Struct):
        for f in msgspec.structs.fields(cls):
            has_default = f.default is not msgspec.NODEFAULT or (
                f.default_factory is not msgspec.NODEFAULT
            )
            out.append((f.encode_name, f.name, hints.get(f.name, f.type), has_default, f.default))
    else:
        for df in dataclasses.fields(cls):
            if not df.init:
                continue
            has_default = df.default is not dataclasses.MISSING or (
                df.default_factory is not dataclasses.MISSING
            )
            out.append((df.name, df.name, hints.get(df.name, df.type), has_default, df.default))
    return out


def go_field_name(name: str) -> str:
    """Go's exported spelling of a Python field name: kept when it starts with an upper-case
    letter, else snake_case -> CamelCase (``time_ms`` -> ``TimeMs``, ``id`` -> ``Id``)."""
    if name[:1].isupper():
        return name
    return "".join(part[:1].upper() + part[1:] for part in name.split("_")) or name


_go_names: dict[Any, dict[str, str]] = {}


def go_field_names(cls: Any) -> dict[str, str]:
    """Python-side field name (msgspec encode name) -> Go field name, for a Struct or
    dataclass: :func:`go_field_name`, or the class's ``__go_fields__`` override (keyed by
    the Python field name). Two fields with one Go name are a ``TypeError``."""
    hit = _go_names.get(cls)
    if hit is not None:
        return hit
    override: Mapping[str, str] = getattr(cls, "__go_fields__", None) or {}
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name, attr, _tp, _has, _default in _declared_fields(cls):
        go = override.get(attr) or override.get(name) or go_field_name(name)
        if go in seen:
            raise TypeError(
                f"{cls.__name__}: fields {seen[go]!r} and {attr!r} are both Go field {go!r}"
                " (set __go_fields__ to tell them apart)"
            )
        seen[go] = attr
        out[name] = go
    _go_names[cls] = out
    return out


def _struct_fields(cls: Any) -> list[GoField]:
    out: list[GoField] = []
    names = go_field_names(cls)
    for name, attr, tp, has_default, default in _declared_fields(cls):
        gt, ptr = go_type_ex(tp)
        out.append(GoField(names[name], attr, gt, ptr, tp, has_default, default, name))
    return out


def py_fields(cls: Any) -> dict[str, tuple[str, Any, bool]]:
    """Go field name -> (attribute, annotation, has default) for a Struct / dataclass."""
    return {name: (attr, tp, has) for name, attr, tp, has, _d in _declared_fields(cls)}


#: makes the value a field missing from a message gets
ZeroFn = Callable[[], Any]


def const(v: Any) -> ZeroFn:
    """A :data:`ZeroFn` always returning ``v``."""
    return lambda: v


def zero_factory(tp: Any) -> ZeroFn:
    """The value a missing field of annotation ``tp`` gets (Go's zero value, or None)."""
    base, optional, _meta = strip_type(tp)
    if optional or base is Any or base is object:
        return const(None)
    origin = get_origin(base) or base
    if isinstance(origin, type):
        if issubclass(origin, bool):
            return const(False)
        zeros: tuple[tuple[Any, Any], ...] = (
            (int, 0), (float, 0.0), (complex, 0j), (str, ""), (bytes, b"")
        )
        for t, z in zeros:
            if issubclass(origin, t):
                return const(typing.cast(Any, origin)(z) if origin is not t else z)
        if origin is bytearray:
            return bytearray
        if origin in (list, set, frozenset, tuple):
            return origin
        if origin is dict or issubclass(origin, Mapping):
            return dict
        if is_struct_class(origin):
            fields = py_fields(origin)
            parts = [
                (attr, zero_factory(ftype)) for attr, ftype, has in fields.values() if not has
            ]
            return lambda: origin(**{a: z() for a, z in parts})
    return const(None)


def struct_type(cls: Any) -> GoType:
    with _lock:
        hit = _py_cache.get(cls)
        if hit is not None:
            return hit[0]
        name = getattr(cls, "__go_name__", None)
        if name is None:
            name = cls.__name__
        pkg = getattr(cls, "__go_package__", GO_PACKAGE)
        t = GoType("struct", name, pyclass=cls, gostring=f"{pkg}.{name}" if pkg else name)
        # Fields resolve lazily, so recursive types (a Node holding list[Node]) work.
        t._fields_fn = lambda: _struct_fields(cls)
        _py_cache[cls] = (t, False)
        return t


def anonymous_struct(fields: list[tuple[str, GoType]]) -> GoType:
    """A ``struct { ... }`` with no name, used for dicts sent where Go expects a struct."""
    key = tuple((n, id(ft)) for n, ft in fields)
    t = _anonymous.get(key)
    if t is None:
        t = GoType("struct", "", gostring="struct {...}")
        t._fields = [GoField(n, n, ft, False, Any, False, None) for n, ft in fields]
        if len(_anonymous) < 4096:  # dicts of many shapes must not grow this forever
            _anonymous[key] = t
    return t


def go_type(tp: Any) -> GoType:
    """The Go type a Python type annotation is sent as (``TypeError`` if there is none)."""
    return go_type_ex(tp)[0]


def go_type_ex(tp: Any) -> tuple[GoType, bool]:
    """Like :func:`go_type`, also saying whether the annotation is a pointer (``T | None``)."""
    try:
        hit = _py_cache.get(tp)
    except TypeError:
        hit = None
    if hit is not None:
        return hit
    res = _go_type_ex(tp)
    with contextlib.suppress(TypeError):
        _py_cache[tp] = res
    return res


def _go_type_ex(tp: Any) -> tuple[GoType, bool]:
    base, optional, meta = strip_type(tp)
    scalar = next((m for m in meta if isinstance(m, GoScalar)), None)
    array = next((m for m in meta if isinstance(m, GoArray)), None)
    if scalar is not None:
        return _scalar(scalar), optional
    if base in (Any, object) or base is typing.Any:
        return T_INTERFACE, optional
    origin = get_origin(base) or base
    args = get_args(base)
    if isinstance(origin, type):
        if issubclass(origin, bool):
            return T_BOOL, optional
        if issubclass(origin, enum.Enum) and not issubclass(origin, (int, str)):
            raise TypeError(f"cannot map enum {origin.__name__} to a Go type (use IntEnum/StrEnum)")
        if issubclass(origin, int):
            return T_INT, optional
        if issubclass(origin, float):
            return T_FLOAT, optional
        if issubclass(origin, complex):
            return T_COMPLEX, optional
        if issubclass(origin, str):
            return T_STRING, optional
        if issubclass(origin, (bytes, bytearray, memoryview)):
            return T_BYTES, optional
        if is_struct_class(origin):
            return struct_type(origin), optional
        if issubclass(origin, Mapping) or origin is dict:
            kt, _ = go_type_ex(args[0]) if args else (T_INTERFACE, False)
            vt, _ = go_type_ex(args[1]) if len(args) > 1 else (T_INTERFACE, False)
            return map_of(kt, vt), optional
        if issubclass(origin, (list, tuple, set, frozenset, Sequence)) or origin in (
            list,
            tuple,
        ):
            if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
                raise TypeError(
                    f"cannot map fixed-size tuple {tp!r} to a Go type (use tuple[T, ...])"
                )
            et, ep = go_type_ex(args[0]) if args else (T_INTERFACE, False)
            if array is not None:
                return array_of(et, array.length), optional
            return slice_of(et, ep), optional
    raise TypeError(f"cannot map Python type {tp!r} to a Go type")


def go_type_of_value(value: Any) -> GoType:
    """Infer a Go type from a runtime value (for ``Any``-typed results and ``interface{}``)."""
    if isinstance(value, bool):
        return T_BOOL
    if isinstance(value, int):
        return T_INT
    if isinstance(value, float):
        return T_FLOAT
    if isinstance(value, str):
        return T_STRING
    if isinstance(value, (bytes, bytearray, memoryview)):
        return T_BYTES
    if isinstance(value, complex):
        return T_COMPLEX
    if is_struct_class(type(value)):
        return struct_type(type(value))
    if isinstance(value, Mapping):
        kt = _common(value.keys())
        vt = _common(value.values())
        return map_of(kt, vt)
    if isinstance(value, (list, tuple, set, frozenset)):
        return slice_of(_common(value))
    raise TypeError(f"cannot send a Python {type(value).__name__} as a Go value")


def _common(values: Any) -> GoType:
    found: GoType | None = None
    for v in values:
        t = go_type_of_value(v)
        if found is None:
            found = t
        elif t is not found:
            return T_INTERFACE
    return found if found is not None else T_INTERFACE
