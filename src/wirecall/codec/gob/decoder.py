"""The gob decoder: one :class:`Decoder` per stream (per connection direction).

Bytes go in with :meth:`Decoder.feed`; :meth:`Decoder.next_value` returns the next complete
value message (type definitions on the way are learnt), still undecoded, so the caller can
pick the Python type to decode it into with :meth:`Decoder.decode` (net/rpc needs the request
header before it knows the argument's type).

Decoding into a Python type checks compatibility the way Go does (signed vs unsigned, field
types by name), fills fields the sender omitted (zero values) with their default, ``None``
for ``T | None`` or the type's zero value, and builds the msgspec Struct / dataclass directly.
Decoding into ``Any`` gives plain values: a struct becomes a dict of *all* its wire fields
(omitted ones as zero values), a map a dict, a slice or array a list, ``[]byte`` bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, get_args, get_origin

import msgspec

from .types import (
    BOOL,
    BUILTIN_NAMES,
    BYTES,
    COMPLEX,
    FIRST_USER_ID,
    FLOAT,
    INT,
    INTERFACE,
    STRING,
    UINT,
    GoArray,
    GoScalar,
    ZeroFn,
    const,
    go_field_names,
    is_struct_class,
    py_fields,
    strip_type,
    zero_factory,
)
from .wire import GobError, GobTooLarge, float_from_bits, read_int, read_uint

__all__ = ["Decoder", "GobMessage", "WireType"]

DecFn = Callable[[bytes, int], tuple[Any, int]]

MAX_NAME = 1024


class WireType:
    """A type definition received from the peer."""

    __slots__ = ("elem", "fields", "id", "key", "kind", "length", "name")

    def __init__(self, tid: int) -> None:
        self.id = tid
        self.kind = ""  # "array" | "slice" | "struct" | "map" | "gob" | "binary" | "text"
        self.name = ""
        self.elem = 0
        self.key = 0
        self.length = 0
        self.fields: list[tuple[str, int]] = []

    def __repr__(self) -> str:
        return f"<WireType {self.id} {self.kind} {self.name!r}>"


class GobMessage:
    """One undecoded value message: its type id and where the value starts in ``data``."""

    __slots__ = ("data", "pos", "type_id")

    def __init__(self, type_id: int, data: bytes, pos: int) -> None:
        self.type_id = type_id
        self.data = data
        self.pos = pos

    def __repr__(self) -> str:
        return f"<GobMessage type={self.type_id} {len(self.data)} bytes>"


class Decoder:
    """Decodes one gob stream. ``max_message_size`` bounds every message (and the buffer)."""

    def __init__(
        self,
        max_message_size: int = 64 * 1024 * 1024,
        *,
        max_types: int = 1024,
        max_type_bytes: int = 1024 * 1024,
    ) -> None:
        self.max_message_size = max_message_size
        #: type definitions this stream may send: at most ``max_types``, of at most
        #: ``max_type_bytes`` wire bytes in all (a definition is kept for the stream's life)
        self.max_types = max_types
        self.max_type_bytes = max_type_bytes
        self.type_bytes = 0
        self.types: dict[int, WireType] = {}
        self._buf = bytearray()
        self._pos = 0
        self._decs: dict[tuple[int, Any], DecFn] = {}
        self._zeros: dict[int, ZeroFn] = {}

    # -- framing ---------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def next_value(self) -> GobMessage | None:
        """The next complete value message, or ``None`` until more bytes arrive."""
        buf = self._buf
        while True:
            p = self._pos
            avail = len(buf) - p
            if avail <= 0:
                if p:
                    buf.clear()
                    self._pos = 0
                return None
            b = buf[p]
            if b < 128:
                n = b
                hl = 1
            else:
                k = 256 - b
                if k > 8:
                    raise GobError(f"invalid message length prefix byte {b:#x}")
                if avail < 1 + k:
                    return None
                n = int.from_bytes(buf[p + 1 : p + 1 + k], "big")
                hl = 1 + k
            if n > self.max_message_size:
                raise GobTooLarge(
                    f"gob message of {n} bytes is over the limit of {self.max_message_size}"
                )
            if n == 0:
                raise GobError("empty message")
            end = p + hl + n
            if len(buf) < end:
                return None
            msg = bytes(buf[p + hl : end])
            if end == len(buf):
                buf.clear()
                self._pos = 0
            elif end > 65536:
                del buf[:end]
                self._pos = 0
            else:
                self._pos = end
            try:
                tid, q = read_int(msg, 0)
                if tid < 0:
                    self.type_bytes += len(msg)
                    if self.type_bytes > self.max_type_bytes:
                        raise GobTooLarge(
                            f"type definitions over {self.max_type_bytes} bytes on one stream "
                            "(limits.max_type_definition_bytes)")
                    q = self._read_typedef(-tid, msg, q)
                    if q != len(msg):
                        raise GobError(f"extra data after definition of type {-tid}")
                    continue
            except IndexError:
                raise GobError("truncated type definition") from None
            if tid == 0:
                raise GobError("value message with type id 0")
            return GobMessage(tid, msg, q)

    def decode(self, msg: GobMessage, pytype: Any = Any) -> Any:
        """Decode a value message into ``pytype`` (``Any``: plain dicts/lists/scalars)."""
        try:
            return self._decode_top(msg.type_id, msg.data, msg.pos, pytype)[0]
        except IndexError:
            raise GobError("truncated value") from None
        except RecursionError:
            raise GobError("value nested too deeply") from None

    def decode_bytes(self, data: bytes, pytype: Any = Any) -> Any:
        """Feed complete messages and decode the one value they carry."""
        self.feed(data)
        msg = self.next_value()
        if msg is None:
            raise GobError("incomplete gob data")
        return self.decode(msg, pytype)

    def _decode_top(self, tid: int, buf: bytes, pos: int, pytype: Any) -> tuple[Any, int]:
        fn = self._decs.get((tid, pytype))
        if fn is None:
            fn = self._compile(tid, pytype)
        wt = self.types.get(tid)
        if wt is not None and wt.kind == "struct":
            return fn(buf, pos)
        if buf[pos] != 0:
            raise GobError(f"non-struct value of type {self._type_name(tid)} without singleton tag")
        return fn(buf, pos + 1)

    # -- type definitions ------------------------------------------------------------

    def _read_typedef(self, tid: int, buf: bytes, pos: int) -> int:
        if tid < FIRST_USER_ID:
            raise GobError(f"type definition for reserved id {tid}")
        if tid in self.types:
            raise GobError(f"duplicate type received: id {tid}")
        if len(self.types) >= self.max_types:
            raise GobTooLarge(
                f"more than {self.max_types} type definitions on one stream "
                "(limits.max_type_definitions)")
        wt = WireType(tid)
        field = -1
        while True:
            delta, pos = read_uint(buf, pos)
            if delta == 0:
                break
            field += delta
            if wt.kind:
                raise GobError(f"type {tid}: wireType defines more than one kind")
            if field == 0:
                wt.kind = "array"
                pos = self._read_composite(wt, buf, pos, ("elem", "length"))
            elif field == 1:
                wt.kind = "slice"
                pos = self._read_composite(wt, buf, pos, ("elem",))
            elif field == 2:
                wt.kind = "struct"
                pos = self._read_composite(wt, buf, pos, ("fields",))
            elif field == 3:
                wt.kind = "map"
                pos = self._read_composite(wt, buf, pos, ("key", "elem"))
            elif field in (4, 5, 6):
                wt.kind = ("gob", "binary", "text")[field - 4]
                pos = self._read_composite(wt, buf, pos, ())
            else:
                raise GobError(f"type {tid}: unknown wireType field {field}")
        if not wt.kind:
            raise GobError(f"type {tid}: empty wireType")
        if wt.kind == "array" and not (0 <= wt.length < (1 << 31)):
            raise GobError(f"type {tid}: invalid array length {wt.length}")
        self.types[tid] = wt
        return pos

    def _read_composite(self, wt: WireType, buf: bytes, pos: int, rest: tuple[str, ...]) -> int:
        """``struct { CommonType; <rest...> }``: field 0 is CommonType, then ``rest``."""
        field = -1
        while True:
            delta, pos = read_uint(buf, pos)
            if delta == 0:
                return pos
            field += delta
            if field == 0:
                pos = self._read_common(wt, buf, pos)
            elif field - 1 < len(rest):
                what = rest[field - 1]
                if what == "fields":
                    pos = self._read_fields(wt, buf, pos)
                else:
                    v, pos = read_int(buf, pos)
                    setattr(wt, what, v)
            else:
                raise GobError(f"type {wt.id}: unknown field {field} in {wt.kind} type")

    def _read_common(self, wt: WireType, buf: bytes, pos: int) -> int:
        field = -1
        while True:
            delta, pos = read_uint(buf, pos)
            if delta == 0:
                return pos
            field += delta
            if field == 0:
                wt.name, pos = _read_str(buf, pos, MAX_NAME)
            elif field == 1:
                cid, pos = read_int(buf, pos)
                if cid != wt.id:
                    raise GobError(f"type {wt.id}: definition says it is type {cid}")
            else:
                raise GobError(f"type {wt.id}: unknown CommonType field {field}")

    def _read_fields(self, wt: WireType, buf: bytes, pos: int) -> int:
        n, pos = read_uint(buf, pos)
        if n > len(buf) - pos:
            raise GobError(f"type {wt.id}: {n} fields do not fit in the message")
        for _ in range(n):
            name = ""
            ftid = 0
            field = -1
            while True:
                delta, pos = read_uint(buf, pos)
                if delta == 0:
                    break
                field += delta
                if field == 0:
                    name, pos = _read_str(buf, pos, MAX_NAME)
                elif field == 1:
                    ftid, pos = read_int(buf, pos)
                else:
                    raise GobError(f"type {wt.id}: unknown fieldType field {field}")
            if ftid <= 0:
                raise GobError(f"type {wt.id}: field {name!r} has invalid type id {ftid}")
            wt.fields.append((name, ftid))
        return pos

    def _type_name(self, tid: int) -> str:
        if tid in BUILTIN_NAMES:
            return BUILTIN_NAMES[tid]
        wt = self.types.get(tid)
        if wt is None:
            return f"<undefined type {tid}>"
        return wt.name or f"<{wt.kind} type {tid}>"

    def _wire(self, tid: int) -> WireType:
        wt = self.types.get(tid)
        if wt is None:
            raise GobError(f"type id {tid} is not defined")
        return wt

    # -- compiling decoders ------------------------------------------------------------

    def _compile(self, tid: int, pytype: Any) -> DecFn:
        key = (tid, pytype)
        fn = self._decs.get(key)
        if fn is not None:
            return fn
        cell: list[DecFn] = []

        def forward(buf: bytes, pos: int) -> tuple[Any, int]:
            return cell[0](buf, pos)

        self._decs[key] = forward
        try:
            fn = self._build(tid, pytype)
        except BaseException:
            del self._decs[key]
            raise
        cell.append(fn)
        self._decs[key] = fn
        return fn

    def _mismatch(self, tid: int, pytype: Any) -> GobError:
        return GobError(
            f"type mismatch: Go {self._type_name(tid)} cannot be decoded into {pytype!r}"
        )

    def _build(self, tid: int, pytype: Any) -> DecFn:
        if pytype is Any or pytype is object:
            return self._build_generic(tid)
        base, _optional, meta = strip_type(pytype)
        if base is Any or base is object:
            return self._generic(tid)
        scalar = next((m for m in meta if isinstance(m, GoScalar)), None)
        origin = get_origin(base) or base
        if tid == INTERFACE:
            return self._converting(self._generic(tid), pytype)
        if scalar is not None:
            return self._scalar(tid, scalar, pytype)
        if not isinstance(origin, type):
            return self._converting(self._generic(tid), pytype)
        if issubclass(origin, bool):
            if tid != BOOL:
                raise self._mismatch(tid, pytype)
            return _dec_bool
        if issubclass(origin, int) and origin is int:
            if tid == INT:
                return _dec_int
            if tid == UINT:
                return read_uint
            raise self._mismatch(tid, pytype)
        if origin is float:
            if tid != FLOAT:
                raise self._mismatch(tid, pytype)
            return _dec_float
        if origin is complex:
            if tid != COMPLEX:
                raise self._mismatch(tid, pytype)
            return _dec_complex
        if origin is str:
            if tid != STRING:
                wt = self.types.get(tid)
                if wt is not None and wt.kind == "text":
                    return _dec_str
                raise self._mismatch(tid, pytype)
            return _dec_str
        if origin in (bytes, bytearray):
            if tid != BYTES:
                wt = self.types.get(tid)
                if wt is None or wt.kind not in ("gob", "binary", "text"):
                    raise self._mismatch(tid, pytype)
            return _dec_bytes if origin is bytes else _dec_bytearray
        if is_struct_class(origin):
            return self._struct(tid, origin, pytype)
        if tid < FIRST_USER_ID:
            return self._converting(self._generic(tid), pytype)
        wt = self._wire(tid)
        args = get_args(base)
        if origin in (list, tuple, set, frozenset) and wt.kind in ("slice", "array"):
            et = args[0] if args else Any
            elem = self._compile(wt.elem, et)
            fixed = wt.length if wt.kind == "array" else -1
            dec_list = _seq_decoder(elem, fixed)
            if origin is list:
                return dec_list
            ctor: Any = origin

            def dec_coll(buf: bytes, pos: int) -> tuple[Any, int]:
                v, pos = dec_list(buf, pos)
                return ctor(v), pos

            return dec_coll
        if (origin is dict or issubclass(origin, Mapping)) and wt.kind == "map":
            kdec = self._compile(wt.key, args[0] if args else Any)
            vdec = self._compile(wt.elem, args[1] if len(args) > 1 else Any)
            return _map_decoder(kdec, vdec)
        if any(isinstance(m, GoArray) for m in meta) and wt.kind in ("slice", "array"):
            return self._converting(self._generic(tid), pytype)
        raise self._mismatch(tid, pytype)

    def _scalar(self, tid: int, sc: GoScalar, pytype: Any) -> DecFn:
        if sc.wire != tid:
            raise self._mismatch(tid, pytype)
        if tid == FLOAT:
            return _dec_float
        if tid == COMPLEX:
            return _dec_complex
        reader = _dec_int if tid == INT else read_uint
        lo, hi, name = sc.lo, sc.hi, sc.name

        def dec_ranged(buf: bytes, pos: int) -> tuple[Any, int]:
            v, pos = reader(buf, pos)
            if not (lo <= v <= hi):
                raise GobError(f"value {v} out of range for Go {name}")
            return v, pos

        return dec_ranged

    def _converting(self, fn: DecFn, pytype: Any) -> DecFn:
        def dec_convert(buf: bytes, pos: int) -> tuple[Any, int]:
            v, pos = fn(buf, pos)
            try:
                return msgspec.convert(v, pytype, strict=False), pos
            except msgspec.ValidationError as exc:
                raise GobError(f"cannot convert {v!r} to {pytype!r}: {exc}") from None

        return dec_convert

    def _struct(self, tid: int, cls: Any, pytype: Any) -> DecFn:
        if tid < FIRST_USER_ID:
            raise self._mismatch(tid, pytype)
        wt = self._wire(tid)
        if wt.kind != "struct":
            raise self._mismatch(tid, pytype)
        targets = py_fields(cls)
        find = _field_finder(cls, targets)
        plan: list[tuple[str | None, DecFn]] = []
        matched = 0
        taken: set[str] = set()
        for fname, ftid in wt.fields:
            key = find(fname)
            if key is None or key in taken:
                plan.append((None, self._compile(ftid, Any)))
                continue
            taken.add(key)
            attr, ftype, _has_default = targets[key]
            try:
                plan.append((attr, self._compile(ftid, ftype)))
            except GobError as exc:
                raise GobError(f"field {cls.__name__}.{fname}: {exc.message[5:]}") from None
            matched += 1
        if wt.fields and targets and not matched:
            raise GobError(
                f"type mismatch: no fields matched compiling decoder for {cls.__name__} "
                f"(Go {wt.name or 'struct'} has {', '.join(n for n, _ in wt.fields)})"
            )
        required = [
            (attr, zero_factory(ftype))
            for attr, ftype, has_default in targets.values()
            if not has_default
        ]
        nfields = len(plan)
        name = wt.name or cls.__name__

        def dec_struct(buf: bytes, pos: int) -> tuple[Any, int]:
            kw: dict[str, Any] = {}
            field = -1
            while True:
                delta = buf[pos]
                if delta < 128:
                    pos += 1
                else:
                    delta, pos = read_uint(buf, pos)
                if delta == 0:
                    break
                field += delta
                if field >= nfields:
                    raise GobError(f"field number {field} out of range in {name}")
                attr, fdec = plan[field]
                v, pos = fdec(buf, pos)
                if attr is not None:
                    kw[attr] = v
            for attr, zf in required:
                if attr not in kw:
                    kw[attr] = zf()
            return cls(**kw), pos

        return dec_struct

    # -- generic (Any) decoding ----------------------------------------------------------

    def _generic(self, tid: int) -> DecFn:
        return self._decs.get((tid, Any)) or self._compile(tid, Any)

    def _build_generic(self, tid: int) -> DecFn:
        builtin = _GENERIC_BUILTINS.get(tid)
        if builtin is not None:
            return builtin
        if tid == INTERFACE:
            return self._dec_interface
        wt = self._wire(tid)
        kind = wt.kind
        if kind in ("slice", "array"):
            return _seq_decoder(self._compile(wt.elem, Any), wt.length if kind == "array" else -1)
        if kind == "map":
            return _map_decoder(self._compile(wt.key, Any), self._compile(wt.elem, Any))
        if kind == "struct":
            plan = [(n, self._compile(ft, Any)) for n, ft in wt.fields]
            zeros = [(n, self._zero(ft)) for n, ft in wt.fields]
            nfields = len(plan)
            name = wt.name or "struct"

            def dec_dict(buf: bytes, pos: int) -> tuple[Any, int]:
                out: dict[str, Any] = {}
                field = -1
                while True:
                    delta, pos = read_uint(buf, pos)
                    if delta == 0:
                        break
                    field += delta
                    if field >= nfields:
                        raise GobError(f"field number {field} out of range in {name}")
                    fname, fdec = plan[field]
                    out[fname], pos = fdec(buf, pos)
                for fname, zf in zeros:
                    if fname not in out:
                        out[fname] = zf()
                return out, pos

            return dec_dict
        if kind == "text":
            return _dec_str
        return _dec_bytes  # GobEncoder / BinaryMarshaler: the marshalled bytes

    def _zero(self, tid: int) -> ZeroFn:
        z = self._zeros.get(tid)
        if z is not None:
            return z
        if tid in _BUILTIN_ZEROS:
            z = const(_BUILTIN_ZEROS[tid])
        else:
            wt = self._wire(tid)
            if wt.kind == "slice":
                z = list
            elif wt.kind == "map":
                z = dict
            elif wt.kind == "array":
                self._zeros[tid] = const(None)  # recursion guard
                ez = self._zero(wt.elem)
                n = wt.length
                z = lambda: [ez() for _ in range(n)]  # noqa: E731
            elif wt.kind == "struct":
                self._zeros[tid] = const(None)
                parts = [(n, self._zero(ft)) for n, ft in wt.fields]
                z = lambda: {n: f() for n, f in parts}  # noqa: E731
            elif wt.kind == "text":
                z = const("")
            else:
                z = const(b"")
        self._zeros[tid] = z
        return z

    def _dec_interface(self, buf: bytes, pos: int) -> tuple[Any, int]:
        n, pos = read_uint(buf, pos)
        if n == 0:
            return None, pos
        if n > MAX_NAME or pos + n > len(buf):
            raise GobError(f"invalid interface type name length {n}")
        pos += n
        while True:
            tid, pos = read_int(buf, pos)
            if tid >= 0:
                break
            pos = self._read_typedef(-tid, buf, pos)
            _, pos = read_uint(buf, pos)  # the count of the next delimited item
        size, pos = read_uint(buf, pos)
        if size > len(buf) - pos:
            raise GobError(f"interface value of {size} bytes overruns the message")
        v, end = self._decode_top(tid, buf, pos, Any)
        return v, pos + size if end <= pos + size else end


_BUILTIN_ZEROS: dict[int, Any] = {
    BOOL: False,
    INT: 0,
    UINT: 0,
    FLOAT: 0.0,
    BYTES: b"",
    STRING: "",
    COMPLEX: 0j,
    INTERFACE: None,
}


def _fold(name: str) -> str:
    return name.replace("_", "").casefold()


def _field_finder(cls: Any, targets: dict[str, Any]) -> Callable[[str], str | None]:
    """Wire field name -> the class's field (its key in ``targets``): the Go name first
    (what a Go peer sends), then the Python name (an older wirecall peer), then either with
    case and underscores ignored; None when no field or several fields fit."""
    exact = {go: key for key, go in go_field_names(cls).items()}
    for key in targets:
        exact.setdefault(key, key)
    loose: dict[str, str | None] = {}
    for name, key in exact.items():
        f = _fold(name)
        loose[f] = key if loose.get(f, key) == key else None  # None: several fields fit

    def find(name: str) -> str | None:
        hit = exact.get(name)
        return hit if hit is not None else loose.get(_fold(name))

    return find


def _read_str(buf: bytes, pos: int, limit: int) -> tuple[str, int]:
    n, pos = read_uint(buf, pos)
    if n > limit or pos + n > len(buf):
        raise GobError(f"invalid string length {n}")
    return buf[pos : pos + n].decode("utf-8", "surrogateescape"), pos + n


def _dec_int(buf: bytes, pos: int) -> tuple[Any, int]:
    b = buf[pos]
    if b < 128:
        return (~(b >> 1) if b & 1 else b >> 1), pos + 1
    return read_int(buf, pos)


def _dec_bool(buf: bytes, pos: int) -> tuple[Any, int]:
    b = buf[pos]
    if b > 1:
        raise GobError(f"invalid bool value {b}")
    return b == 1, pos + 1


def _dec_float(buf: bytes, pos: int) -> tuple[Any, int]:
    u, pos = read_uint(buf, pos)
    return float_from_bits(u), pos


def _dec_complex(buf: bytes, pos: int) -> tuple[Any, int]:
    re, pos = read_uint(buf, pos)
    im, pos = read_uint(buf, pos)
    return complex(float_from_bits(re), float_from_bits(im)), pos


def _dec_str(buf: bytes, pos: int) -> tuple[Any, int]:
    n = buf[pos]
    if n < 128:
        pos += 1
    else:
        n, pos = read_uint(buf, pos)
    end = pos + n
    if end > len(buf):
        raise GobError(f"string of {n} bytes overruns the message")
    return buf[pos:end].decode("utf-8", "surrogateescape"), end


def _dec_bytes(buf: bytes, pos: int) -> tuple[Any, int]:
    n, pos = read_uint(buf, pos)
    end = pos + n
    if end > len(buf):
        raise GobError(f"byte slice of {n} bytes overruns the message")
    return buf[pos:end], end


def _dec_bytearray(buf: bytes, pos: int) -> tuple[Any, int]:
    v, pos = _dec_bytes(buf, pos)
    return bytearray(v), pos


_GENERIC_BUILTINS: dict[int, DecFn] = {
    BOOL: _dec_bool,
    INT: _dec_int,
    UINT: read_uint,
    FLOAT: _dec_float,
    COMPLEX: _dec_complex,
    STRING: _dec_str,
    BYTES: _dec_bytes,
}


def _seq_decoder(elem: DecFn, fixed: int) -> DecFn:
    def dec_seq(buf: bytes, pos: int) -> tuple[Any, int]:
        n, pos = read_uint(buf, pos)
        if fixed >= 0 and n != fixed:
            raise GobError(f"array length {n} does not match its type's length {fixed}")
        if n > len(buf) - pos:
            raise GobError(f"{n} elements do not fit in the message")
        out: list[Any] = []
        append = out.append
        for _ in range(n):
            v, pos = elem(buf, pos)
            append(v)
        return out, pos

    return dec_seq


def _map_decoder(kdec: DecFn, vdec: DecFn) -> DecFn:
    def dec_map(buf: bytes, pos: int) -> tuple[Any, int]:
        n, pos = read_uint(buf, pos)
        if 2 * n > len(buf) - pos:
            raise GobError(f"{n} map entries do not fit in the message")
        out: dict[Any, Any] = {}
        for _ in range(n):
            k, pos = kdec(buf, pos)
            v, pos = vdec(buf, pos)
            try:
                out[k] = v
            except TypeError:
                raise GobError(f"map key of type {type(k).__name__} is not supported") from None
        return out, pos

    return dec_map
