"""The gob encoder: one :class:`Encoder` per stream (per connection direction).

Type ids are assigned per stream, from 65, in the order Go's ``encoding/gob`` assigns them
(a struct before its fields; a slice, array or map after its elements), and each type is
defined once per stream, just before the first value that needs it: so a fresh Go program
encoding the same values produces the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .types import (
    BOOL,
    BYTES,
    COMPLEX,
    FIRST_USER_ID,
    FLOAT,
    INT,
    INTERFACE,
    STRING,
    UINT,
    GoType,
    go_type,
    go_type_of_value,
)
from .wire import GobError, append_int, append_uint, float_bits, to_float32

__all__ = ["Encoder", "compile_encoder"]

EncFn = Callable[[Any, bytearray, "Encoder"], None]
OmitFn = Callable[[Any], bool]

_compiled: dict[GoType, EncFn] = {}


class Encoder:
    """Encodes values onto one gob stream; remembers which types the peer already knows."""

    __slots__ = ("_assigned", "_ids", "_names", "_next", "_pending", "_sent", "_sent_order")

    def __init__(self) -> None:
        self._ids: dict[GoType, int] = {}
        self._names: dict[GoType, str] = {}
        self._sent: set[GoType] = set()
        self._next = FIRST_USER_ID
        self._pending: list[bytes] = []
        self._assigned: list[GoType] = []
        self._sent_order: list[GoType] = []

    def mark(self) -> tuple[int, int]:
        """A point to :meth:`rollback` to if the messages being built are thrown away."""
        return len(self._assigned), len(self._sent_order)

    def rollback(self, mark: tuple[int, int]) -> None:
        """Forget the types assigned or sent since ``mark`` (their bytes were never sent)."""
        na, ns = mark
        while len(self._assigned) > na:
            t = self._assigned.pop()
            self._ids.pop(t, None)
            self._names.pop(t, None)
            self._next -= 1
        while len(self._sent_order) > ns:
            self._sent.discard(self._sent_order.pop())
        self._pending = []

    # -- public ------------------------------------------------------------------------

    def encode(self, value: Any, pytype: Any = None) -> bytes:
        """The messages (type definitions, then the value) for one ``Encode(value)``.

        ``pytype`` is the Python annotation saying which Go type to send (``None``: infer
        from the value; a :class:`GoType` is used as is).
        """
        if isinstance(pytype, GoType):
            gt = pytype
        elif pytype is None or pytype is Any or pytype is object:
            if value is None:
                raise GobError("cannot encode nil value")
            gt = go_type_of_value(value)
        else:
            gt = go_type(pytype)
        return self.encode_go(value, gt)

    def encode_go(self, value: Any, gt: GoType) -> bytes:
        out = bytearray()
        self.append_value(out, value, gt)
        return bytes(out)

    def append_value(self, out: bytearray, value: Any, gt: GoType) -> None:
        """Append the complete messages for ``value`` of Go type ``gt`` to ``out``."""
        tid = gt.wire
        if not tid:
            tid = self._ids.get(gt) or self._assign(gt, _top_name(gt))
            if gt not in self._sent:
                self._send(gt)
        body = bytearray()
        append_int(body, tid)
        enc = _compiled.get(gt) or compile_encoder(gt)
        if gt.kind == "struct":
            enc(value, body, self)
        else:
            if value is None:
                raise GobError("cannot encode nil value")
            body.append(0)
            enc(value, body, self)
        pending = self._pending
        if pending:
            self._pending = []
            for msg in pending:
                append_uint(out, len(msg))
                out += msg
        append_uint(out, len(body))
        out += body

    # -- type ids and definitions --------------------------------------------------------

    def type_id(self, gt: GoType) -> int:
        return gt.wire or self._assign(gt, _top_name(gt))

    def _assign(self, t: GoType, name: str) -> int:
        if t.wire:
            return t.wire
        tid = self._ids.get(t)
        if tid is not None:
            return tid
        kind = t.kind
        if kind == "struct":
            tid = self._new(t, name)
            for f in t.fields:
                ft = f.type
                self._assign(ft, ft.name if ft.kind == "struct" else ft.gostring)
            return tid
        if kind == "slice":
            assert t.elem is not None
            elem = t.elem
            pointer_elem = t.gostring.startswith("[]*")
            self._assign(elem, elem.name if elem.kind == "struct" and not pointer_elem else "")
        elif kind == "array":
            assert t.elem is not None
            self._assign(t.elem, "")
        elif kind == "map":
            assert t.key is not None and t.elem is not None
            self._assign(t.key, "")
            self._assign(t.elem, "")
        else:
            raise GobError(f"cannot assign a type id to {t!r}")
        tid = self._ids.get(t)  # a recursive element may have assigned us already
        return tid if tid is not None else self._new(t, name)

    def _new(self, t: GoType, name: str) -> int:
        tid = self._next
        self._next += 1
        self._ids[t] = tid
        self._names[t] = name
        self._assigned.append(t)
        return tid

    def _send(self, t: GoType) -> None:
        if t.wire or t in self._sent:
            return
        self._pending.append(self._definition(t))
        self._sent.add(t)
        self._sent_order.append(t)
        if t.kind == "struct":
            for f in t.fields:
                self._send(f.type)
        elif t.kind in ("slice", "array"):
            assert t.elem is not None
            self._send(t.elem)
        elif t.kind == "map":
            assert t.key is not None and t.elem is not None
            self._send(t.key)
            self._send(t.elem)

    def _definition(self, t: GoType) -> bytes:
        """``int(-id)`` then the wireType value describing ``t``."""
        tid = self._ids[t]
        out = bytearray()
        append_int(out, -tid)
        common = bytearray()
        name = self._names.get(t, "")
        if name:
            common.append(1)
            _append_str(common, name)
            common.append(1)
        else:
            common.append(2)
        append_int(common, tid)
        common.append(0)
        kind = t.kind
        if kind == "array":
            assert t.elem is not None
            out.append(1)  # wireType.ArrayT
            out.append(1)
            out += common
            out.append(1)
            append_int(out, self._assign(t.elem, ""))
            if t.length:
                out.append(1)
                append_int(out, t.length)
            out.append(0)
        elif kind == "slice":
            assert t.elem is not None
            out.append(2)  # wireType.SliceT
            out.append(1)
            out += common
            out.append(1)
            append_int(out, self._ids.get(t.elem) or t.elem.wire)
            out.append(0)
        elif kind == "struct":
            out.append(3)  # wireType.StructT
            out.append(1)
            out += common
            fields = t.fields
            if fields:
                out.append(1)
                append_uint(out, len(fields))
                for f in fields:
                    if f.name:
                        out.append(1)
                        _append_str(out, f.name)
                        out.append(1)
                    else:
                        out.append(2)
                    append_int(out, f.type.wire or self._ids[f.type])
                    out.append(0)
            out.append(0)
        elif kind == "map":
            assert t.key is not None and t.elem is not None
            out.append(4)  # wireType.MapT
            out.append(1)
            out += common
            out.append(1)
            append_int(out, t.key.wire or self._ids[t.key])
            out.append(1)
            append_int(out, t.elem.wire or self._ids[t.elem])
            out.append(0)
        out.append(0)
        return bytes(out)

    def define_for_interface(self, t: GoType) -> int:
        """Make sure the peer knows ``t`` before the current message; return its id."""
        tid = t.wire or self._assign(t, _top_name(t))
        self._send(t)
        return tid


def _top_name(t: GoType) -> str:
    return t.name if t.kind == "struct" else ""


def _append_str(out: bytearray, s: str) -> None:
    b = s.encode("utf-8", "surrogateescape")
    append_uint(out, len(b))
    out += b


# -- value encoders -------------------------------------------------------------------


def compile_encoder(t: GoType) -> EncFn:
    """The function appending the encoding of a value of Go type ``t`` (no field tag)."""
    fn = _compiled.get(t)
    if fn is not None:
        return fn
    # A placeholder first, so recursive types find themselves while compiling.
    cell: list[EncFn] = []

    def forward(v: Any, out: bytearray, st: Encoder) -> None:
        cell[0](v, out, st)

    _compiled[t] = forward
    fn = _build(t)
    cell.append(fn)
    _compiled[t] = fn
    return fn


def omit_fn(t: GoType, pointer: bool) -> OmitFn:
    """Whether a struct field holding this value is left out (Go's zero-value rule)."""
    kind = t.kind
    if kind in ("struct", "array"):
        return _is_none
    if kind == "interface":
        return _is_none
    if kind in ("int", "uint", "float", "complex"):
        return _is_zero_num
    # bool, string, bytes, slice; and map: Python cannot tell Go's nil map from an empty one,
    # so an empty dict is sent like the zero value of a map field (nil: omitted).
    return _is_falsy


def _is_none(v: Any) -> bool:
    return v is None


def _is_zero_num(v: Any) -> bool:
    return v is None or v == 0


def _is_falsy(v: Any) -> bool:
    return not v


def _int_encoder(t: GoType) -> EncFn:
    sc = t.scalar
    lo, hi = (sc.lo, sc.hi) if sc is not None else (-(1 << 63), (1 << 63) - 1)
    name = t.name

    def enc_int(v: Any, out: bytearray, st: Encoder) -> None:
        if not (lo <= v <= hi):
            raise GobError(f"value {v!r} out of range for Go {name}")
        if 0 <= v < 64:
            out.append(v << 1)
        else:
            append_int(out, int(v))

    return enc_int


def _uint_encoder(t: GoType) -> EncFn:
    sc = t.scalar
    hi = sc.hi if sc is not None else (1 << 64) - 1
    name = t.name

    def enc_uint(v: Any, out: bytearray, st: Encoder) -> None:
        if not (0 <= v <= hi):
            raise GobError(f"value {v!r} out of range for Go {name}")
        append_uint(out, int(v))

    return enc_uint


def _enc_f32(v: Any, out: bytearray, st: Encoder) -> None:
    try:
        append_uint(out, float_bits(to_float32(float(v))))
    except OverflowError:
        raise GobError(f"value {v!r} out of range for Go float32") from None


def _enc_float(v: Any, out: bytearray, st: Encoder) -> None:
    append_uint(out, float_bits(v))


def _float_encoder(t: GoType) -> EncFn:
    return _enc_f32 if t.name == "float32" else _enc_float


def _complex_encoder(t: GoType) -> EncFn:
    f32 = t.name == "complex64"

    def enc_complex(v: Any, out: bytearray, st: Encoder) -> None:
        c = complex(v)
        re, im = c.real, c.imag
        if f32:
            re, im = to_float32(re), to_float32(im)
        append_uint(out, float_bits(re))
        append_uint(out, float_bits(im))

    return enc_complex


def _enc_bool(v: Any, out: bytearray, st: Encoder) -> None:
    out.append(1 if v else 0)


def _enc_str(v: Any, out: bytearray, st: Encoder) -> None:
    if not isinstance(v, str):
        raise GobError(f"expected str for Go string, got {type(v).__name__}")
    if v.isascii():
        append_uint(out, len(v))
        out += v.encode()
    else:
        b = v.encode("utf-8", "surrogateescape")
        append_uint(out, len(b))
        out += b


def _enc_bytes(v: Any, out: bytearray, st: Encoder) -> None:
    if isinstance(v, str):
        v = v.encode("utf-8", "surrogateescape")
    append_uint(out, len(v))
    out += v


def _seq_encoder(t: GoType) -> EncFn:
    assert t.elem is not None
    elem = compile_encoder(t.elem)
    length = t.length if t.kind == "array" else -1
    tname = t.gostring

    def enc_seq(v: Any, out: bytearray, st: Encoder) -> None:
        n = len(v)
        if length >= 0 and n != length:
            raise GobError(f"{tname} needs exactly {length} elements, got {n}")
        append_uint(out, n)
        for x in v:
            if x is None and elem is not _enc_interface:
                raise GobError(f"encodeArray: nil element in {tname}")
            elem(x, out, st)

    return enc_seq


def _map_encoder(t: GoType) -> EncFn:
    assert t.key is not None and t.elem is not None
    kenc = compile_encoder(t.key)
    venc = compile_encoder(t.elem)

    def enc_map(v: Any, out: bytearray, st: Encoder) -> None:
        append_uint(out, len(v))
        for k, x in v.items():
            kenc(k, out, st)
            venc(x, out, st)

    return enc_map


#: builtin wire id -> the encoder of a value of that type (interface: see _enc_interface)
_BUILTIN_ENCODERS: dict[int, Callable[[GoType], EncFn]] = {
    INT: _int_encoder,
    UINT: _uint_encoder,
    FLOAT: _float_encoder,
    COMPLEX: _complex_encoder,
    BOOL: lambda _t: _enc_bool,
    STRING: lambda _t: _enc_str,
    BYTES: lambda _t: _enc_bytes,
    INTERFACE: lambda _t: _enc_interface,
}
#: composite kind -> the encoder of a value of that type
_COMPOSITE_ENCODERS: dict[str, Callable[[GoType], EncFn]] = {
    "slice": _seq_encoder,
    "array": _seq_encoder,
    "map": _map_encoder,
}


def _build(t: GoType) -> EncFn:
    builder = _BUILTIN_ENCODERS.get(t.wire)
    if builder is None:
        builder = _COMPOSITE_ENCODERS.get(t.kind)
    if builder is not None:
        return builder(t)
    if t.kind == "struct":
        return _build_struct(t)
    raise GobError(f"cannot encode Go type {t!r}")


def _build_struct(t: GoType) -> EncFn:
    plan = [
        (i, f.attr, f.name, compile_encoder(f.type), omit_fn(f.type, f.pointer))
        for i, f in enumerate(t.fields)
    ]
    # a dict sent as this struct may be keyed by the Python-side names (``time_ms`` where
    # the Go field is ``TimeMs``)
    alt = {f.name: f.key for f in t.fields if f.key and f.key != f.name}
    tname = t.gostring

    def enc_struct(v: Any, out: bytearray, st: Encoder) -> None:
        last = -1
        if isinstance(v, dict):
            for i, _attr, name, fenc, omit in plan:
                x = v.get(name)
                if x is None and name in alt:
                    x = v.get(alt[name])
                if omit(x):
                    continue
                append_uint(out, i - last)
                last = i
                fenc(x, out, st)
        else:
            try:
                for i, attr, _name, fenc, omit in plan:
                    x = getattr(v, attr)
                    if omit(x):
                        continue
                    d = i - last
                    if d < 128:
                        out.append(d)
                    else:
                        append_uint(out, d)
                    last = i
                    fenc(x, out, st)
            except AttributeError as exc:
                raise GobError(f"cannot encode {type(v).__name__} as {tname}: {exc}") from None
        out.append(0)

    return enc_struct


def _enc_interface(v: Any, out: bytearray, st: Encoder) -> None:
    if v is None:
        out.append(0)
        return
    ct = go_type_of_value(v)
    name = ct.gostring.encode()
    append_uint(out, len(name))
    out += name
    tid = st.define_for_interface(ct)
    append_int(out, tid)
    inner = bytearray()
    enc = _compiled.get(ct) or compile_encoder(ct)
    if ct.kind != "struct":
        inner.append(0)
    enc(v, inner, st)
    append_uint(out, len(inner))
    out += inner
