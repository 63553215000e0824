"""Registration and introspection: turn plain classes and functions into callable methods.

Rules (Go's ``net/rpc`` rules in Python idiom):

* ``server.register(obj)`` exposes every public method of ``obj`` (no leading underscore,
  defined on its class, not hidden with ``@method(hidden=True)``) as ``ClassName.Method``;
  ``register(obj, name="Calc")`` uses another service name (``RegisterName``).
* ``server.register(func)`` exposes a plain function under a flat name (``subtract``).
* Parameters are decoded into their annotated types (msgspec ``Struct``, dataclass, TypedDict,
  builtins, ``Optional``/unions, containers); a parameter annotated :class:`Context` receives
  the call context and is not part of the wire arguments.
* Named arguments bind by exact name first; a name with no exact match binds to the one
  parameter it equals with case and underscores ignored (Go's exported field names: ``Tag``
  -> ``tag``, ``TimeMs`` -> ``time_ms``). A name matching none (or several) parameters, or
  naming one already bound, is ``INVALID_ARGUMENT`` naming it.
* Plain ``def`` handlers run in a worker thread so they cannot block the event loop;
  ``@method(inline=True)`` runs a cheap one directly on the loop.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, get_args, get_origin

import msgspec

from .codec.protobuf import method_proto_types
from .context import Context
from .errors import InvalidArgument
from .seam import BIDI_STREAM, CLIENT_STREAM, SERVER_STREAM, UNARY

__all__ = [
    "BIDI_STREAM",
    "CLIENT_STREAM",
    "SERVER_STREAM",
    "UNARY",
    "MethodSpec",
    "Param",
    "RegistrationError",
    "ServiceRegistry",
    "method",
    "stream_item",
]

F = TypeVar("F", bound=Callable[..., Any])



class RegistrationError(ValueError):
    """A service or function cannot be registered (nothing to expose, duplicate name...)."""


@dataclasses.dataclass(frozen=True)
class MethodOptions:
    name: str | None = None
    hidden: bool = False
    inline: bool = False


@typing.overload
def method(func: F, /) -> F: ...


@typing.overload
def method(
    *, name: str | None = None, hidden: bool = False, inline: bool = False
) -> Callable[[F], F]: ...


def method(
    func: F | None = None, *, name: str | None = None, hidden: bool = False, inline: bool = False
) -> Any:
    """Mark a handler: ``name`` renames it on the wire, ``hidden`` keeps it off the wire,
    ``inline`` runs a plain ``def`` on the event loop instead of a worker thread (for
    handlers that never block: a few microseconds of pure computation).

    Usable bare (``@method``) or with arguments (``@method(name="add", inline=True)``).
    """
    opts = MethodOptions(name=name, hidden=hidden, inline=inline)

    def mark(f: F) -> F:
        target = f.__func__ if isinstance(f, (staticmethod, classmethod)) else f
        target.__wirecall_method__ = opts  # type: ignore[attr-defined,union-attr,unused-ignore]
        return f

    if func is not None:
        return mark(func)
    return mark


def _is_struct_like(tp: Any) -> bool:
    if isinstance(tp, type):
        if issubclass(tp, msgspec.Struct) or dataclasses.is_dataclass(tp):
            return True
        if typing.is_typeddict(tp):
            return True
        if issubclass(tp, dict):
            return True
    origin = get_origin(tp)
    return origin in (dict, collections.abc.Mapping)


_ANY_TYPES: tuple[Any, ...] = (Any, object, inspect.Parameter.empty)


def stream_item(tp: Any) -> Any:
    """If ``tp`` is an async iterator/iterable type, its item type; else a sentinel None."""
    origin = get_origin(tp)
    if origin in (
        collections.abc.AsyncIterator,
        collections.abc.AsyncIterable,
        collections.abc.AsyncGenerator,
    ):
        args = get_args(tp)
        return args[0] if args else Any
    return None


@dataclasses.dataclass
class Param:
    name: str
    type: Any
    default: Any  # inspect.Parameter.empty when required
    kind: inspect._ParameterKind
    passthrough: bool = dataclasses.field(init=False, default=False)

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    def __post_init__(self) -> None:
        self.passthrough = any(self.type is t for t in _ANY_TYPES)

    def convert(self, value: Any) -> Any:
        if self.passthrough:
            return value
        try:
            return msgspec.convert(value, self.type)
        except msgspec.ValidationError as exc:
            raise InvalidArgument(message=f"invalid argument {self.name!r}: {exc}") from None


class MethodSpec:
    """One exposed method: how to bind wire arguments to it and how to run it."""

    __slots__ = (
        "_array_decoders",
        "_array_type",
        "_by_name",
        "_loose",
        "_varargs",
        "_varkw",
        "context_name",
        "doc",
        "fast",
        "func",
        "inline",
        "is_async",
        "mode",
        "name",
        "params",
        "proto",
        "request_type",
        "result_type",
        "single",
        "wants_context",
    )

    def __init__(self, name: str, func: Callable[..., Any], *, inline: bool = False) -> None:
        self.name = name
        self.func = func
        self.doc = inspect.getdoc(func) or ""
        self.is_async = inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)
        self.inline = inline
        try:
            hints = typing.get_type_hints(func)
        except Exception:  # unresolvable forward references: fall back to raw annotations
            hints = dict(getattr(func, "__annotations__", {}))
        sig = inspect.signature(func)
        self.context_name: str | None = None
        self.params: list[Param] = []
        self._varargs: Param | None = None
        self._varkw: Param | None = None
        for p in sig.parameters.values():
            tp = hints.get(p.name, inspect.Parameter.empty)
            if tp is Context:
                self.context_name = p.name
                continue
            prm = Param(p.name, tp, p.default, p.kind)
            if p.kind is inspect.Parameter.VAR_POSITIONAL:
                self._varargs = prm
            elif p.kind is inspect.Parameter.VAR_KEYWORD:
                self._varkw = prm
            else:
                self.params.append(prm)
        self.wants_context = self.context_name is not None
        self._by_name = {p.name: p for p in self.params}
        #: folded name -> the parameters it folds from (built at the first inexact name)
        self._loose: dict[str, list[Param]] | None = None
        self.single = len(self.params) == 1 and self._varargs is None and self._varkw is None
        ret = hints.get("return", Any)
        # Streaming modes, from the type hints: an async-iterator parameter means the client
        # streams; an async-iterator return (or an async generator) means the server streams.
        in_stream = [p for p in self.params if stream_item(p.type) is not None]
        out_item = stream_item(ret)
        if inspect.isasyncgenfunction(func) and out_item is None:
            out_item = Any
        if in_stream and out_item is not None:
            self.mode = BIDI_STREAM
        elif in_stream:
            self.mode = CLIENT_STREAM
        elif out_item is not None:
            self.mode = SERVER_STREAM
        else:
            self.mode = UNARY
        self.result_type: Any = out_item if out_item is not None else ret
        self.request_type: Any = (
            stream_item(in_stream[0].type)
            if in_stream
            else (self.params[0].type if self.single else Any)
        )
        #: the positional array type when every parameter is required and positional
        self._array_type: Any = None
        if (
            self.mode == UNARY
            and self.params
            and self._varargs is None
            and self._varkw is None
            and all(p.required and p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                               inspect.Parameter.POSITIONAL_OR_KEYWORD)
                    for p in self.params)
        ):
            self._array_type = tuple[  # type: ignore[misc]
                tuple(Any if p.passthrough else p.type for p in self.params)
            ]
        self._array_decoders: dict[Any, Any] = {}
        #: runs inline with no context parameter: eligible for the transports' fast lane
        self.fast = inline and not self.is_async and self.context_name is None
        #: (request class, response class, mode) when generated from a ``.proto``, else None
        self.proto: tuple[Any, Any, str] | None = method_proto_types(func, name)

    # -- binding -------------------------------------------------------------------------

    def array_decoder(self, module: Any) -> Any:
        """A msgspec decoder (of ``module``: ``msgspec.msgpack`` or ``msgspec.json``) that
        reads a positional params array straight into the annotated types, or None.

        Transports use it as a fast lane; on any decode or validation error they fall back
        to the general path (:meth:`bind`), which produces the documented error messages.
        """
        if self._array_type is None:
            return None
        dec = self._array_decoders.get(module)
        if dec is None:
            try:
                dec = module.Decoder(self._array_type)
            except (TypeError, ValueError):  # a type msgspec cannot decode into directly
                self._array_type = None
                return None
            self._array_decoders[module] = dec
        return dec

    def bind(self, params: Any) -> tuple[list[Any], dict[str, Any]]:
        """Turn wire params (a list: positional, a dict: named, None: none) into call args.

        A method with exactly one parameter also accepts a dict of *that parameter's fields*
        as named params (JSON-RPC ``{"A": 1, "B": 2}`` for ``Add(self, args: Args)``).
        """
        if type(params) is list and len(params) == 1 and self.single:
            p = self.params[0]  # the tutorial's shape: one struct argument
            if p.passthrough:
                return params, {}
            try:
                return [msgspec.convert(params[0], p.type)], {}
            except msgspec.ValidationError as exc:
                raise InvalidArgument(message=f"invalid argument {p.name!r}: {exc}") from None
        if params is None:
            params = ()
        if isinstance(params, (list, tuple)):
            return self._bind_positional(params), {}
        if isinstance(params, dict):
            if self.single and not (params.keys() <= self._by_name.keys()):
                p = self.params[0]
                if p.type in _ANY_TYPES or _is_struct_like(p.type):
                    return [p.convert(params)], {}
            return [], self._bind_named(params)
        raise InvalidArgument(
            message=f"params of {self.name} must be an array or an object, "
            f"got {type(params).__name__}"
        )

    def _bind_positional(self, values: list[Any] | tuple[Any, ...]) -> list[Any]:
        params = self.params
        n = len(values)
        if n == 1 and self.single:  # the tutorial's shape: one struct argument
            return [params[0].convert(values[0])]
        if n > len(params) and self._varargs is None:
            raise InvalidArgument(
                message=f"{self.name} takes {len(params)} argument(s), {n} given"
            )
        out = []
        for i, prm in enumerate(params):
            if i < n:
                out.append(prm.convert(values[i]))
            elif prm.required:
                raise InvalidArgument(message=f"missing argument {prm.name!r} for {self.name}")
            else:
                break
        if n > len(params) and self._varargs is not None:
            out.extend(self._varargs.convert(v) for v in values[len(params):])
        return out

    def _bind_named(self, values: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, val in values.items():
            prm = self._by_name.get(key)
            if prm is None and type(key) is str:
                prm = self._loose_param(key, values, out)
            if prm is None:
                if self._varkw is None:
                    raise InvalidArgument(
                        message=f"unexpected argument {key!r} for {self.name}"
                    )
                out[key] = self._varkw.convert(val)
            elif prm.kind is inspect.Parameter.POSITIONAL_ONLY:
                raise InvalidArgument(message=f"argument {key!r} of {self.name} is positional")
            else:
                out[prm.name] = prm.convert(val)
        for prm in self.params:
            if prm.required and prm.name not in out:
                raise InvalidArgument(message=f"missing argument {prm.name!r} for {self.name}")
        return out

    def _loose_param(
        self, key: str, values: Mapping[str, Any], bound: Mapping[str, Any]
    ) -> Param | None:
        """The parameter ``key`` names with case and underscores ignored (``Tag`` -> ``tag``,
        ``TimeMs`` -> ``time_ms``: what a Go struct sends), None if it names none."""
        table = self._loose
        if table is None:
            table = {}
            for p in self.params:
                table.setdefault(_fold(p.name), []).append(p)
            self._loose = table
        found = table.get(_fold(key))
        if not found:
            return None
        if len(found) > 1:
            names = ", ".join(repr(p.name) for p in found)
            raise InvalidArgument(
                message=f"argument {key!r} of {self.name} matches several parameters ({names})"
            )
        prm = found[0]
        if prm.name in values or prm.name in bound:
            raise InvalidArgument(
                message=f"argument {key!r} of {self.name} names {prm.name!r} again"
            )
        return prm

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (used by the introspection service and ``wirecall list``)."""
        return {
            "name": self.name,
            "mode": self.mode,
            "params": [
                {"name": p.name, "type": type_name(p.type), "required": p.required}
                for p in self.params
            ],
            "result": type_name(self.result_type),
            "doc": self.doc,
        }

    def __repr__(self) -> str:
        return f"<MethodSpec {self.name} {self.mode}>"


def _fold(name: str) -> str:
    """A name as the loose binding rule compares it: ``TimeMs``, ``TIME_MS``, ``time_ms``
    are one name."""
    return name.replace("_", "").casefold()


def type_name(tp: Any) -> str:
    if tp is inspect.Parameter.empty or tp is Any:
        return "any"
    if tp is type(None) or tp is None:
        return "None"
    if isinstance(tp, type) and get_origin(tp) is None:
        return tp.__name__
    return repr(tp).replace("typing.", "").replace("collections.abc.", "")


def _options(func: Any) -> MethodOptions | None:
    target = getattr(func, "__func__", func)
    opts = getattr(target, "__wirecall_method__", None)
    return opts if isinstance(opts, MethodOptions) else None


def _is_plain_function(obj: Any) -> bool:
    return inspect.isfunction(obj) or inspect.isbuiltin(obj) or (
        callable(obj) and not isinstance(obj, type) and inspect.ismethod(obj)
    )


class ServiceRegistry:
    """The name -> :class:`MethodSpec` table every listener dispatches through."""

    def __init__(self) -> None:
        self.methods: dict[str, MethodSpec] = {}
        self.services: dict[str, list[str]] = {}
        #: the transports' fast-lane caches (method -> lane), one per codec module; emptied
        #: whenever the table changes so no connection keeps serving a removed method
        self.lanes: dict[Any, dict[str, Any]] = {}

    def register(self, obj: Any, name: str | None = None) -> list[MethodSpec]:
        if _is_plain_function(obj):
            return [self.register_function(obj, name)]
        if isinstance(obj, type):
            raise RegistrationError(
                f"register() wants an instance, got the class {obj.__name__}: "
                f"use register({obj.__name__}())"
            )
        svc = name or getattr(type(obj), "__wirecall_service__", None) or type(obj).__name__
        if not svc or "." in svc:
            raise RegistrationError(f"invalid service name {svc!r}")
        if svc in self.services:
            raise RegistrationError(f"service {svc!r} is already registered")
        specs: list[MethodSpec] = []
        for attr in dir(type(obj)):
            if attr.startswith("_"):
                continue
            raw = inspect.getattr_static(type(obj), attr)
            if isinstance(raw, property):
                continue
            bound = getattr(obj, attr, None)
            if bound is None or not callable(bound) or isinstance(bound, type):
                continue
            opts = _options(bound)
            if opts is not None and opts.hidden:
                continue
            mname = (opts.name if opts and opts.name else attr)
            specs.append(MethodSpec(f"{svc}.{mname}", bound, inline=bool(opts and opts.inline)))
        if not specs:
            raise RegistrationError(
                f"{type(obj).__name__} has no exposable method (public methods are exposed; "
                "names starting with '_' and @method(hidden=True) are not)"
            )
        for spec in specs:
            self._add(spec)
        self.services[svc] = [s.name for s in specs]
        full = getattr(type(obj), "__grpc_service__", None)
        if full and full != svc:  # a .proto service also answers to pkg.Service.Method
            for spec in specs:
                self.methods.setdefault(f"{full}.{spec.name.rpartition('.')[2]}", spec)
        return specs

    def register_function(self, func: Callable[..., Any], name: str | None = None) -> MethodSpec:
        opts = _options(func)
        fname = name or (opts.name if opts and opts.name else None) or func.__name__
        if not fname or fname == "<lambda>":
            raise RegistrationError("a lambda needs an explicit name: register(f, name=...)")
        spec = MethodSpec(fname, func, inline=bool(opts and opts.inline))
        self._add(spec)
        svc, _, _ = fname.rpartition(".")
        self.services.setdefault(svc, []).append(fname)
        return spec

    def _add(self, spec: MethodSpec) -> None:
        if spec.name in self.methods:
            raise RegistrationError(f"method {spec.name!r} is already registered")
        self.methods[spec.name] = spec
        for lane in self.lanes.values():
            lane.clear()

    def unregister(self, service: str) -> None:
        for m in self.services.pop(service, []):
            self.methods.pop(m, None)
        for lane in self.lanes.values():
            lane.clear()

    def describe(self) -> dict[str, Any]:
        return {
            svc: [self.methods[m].describe() for m in names if m in self.methods]
            for svc, names in sorted(self.services.items())
        }
