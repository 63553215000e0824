"""Registration rules and argument binding (no network)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any, TypedDict

import msgspec
import pytest

from wirecall import Context, InvalidArgument, RegistrationError, Server, Unimplemented, method
from wirecall.service import MethodSpec, ServiceRegistry


class Args(msgspec.Struct):
    A: int
    B: int


@dataclasses.dataclass
class DC:
    name: str
    tags: list[str]


class TD(TypedDict):
    x: int


class Calc:
    def Add(self, args: Args) -> int:
        return args.A + args.B

    @method(name="Sum")
    def total(self, *values: int) -> int:
        return sum(values)

    @method(hidden=True)
    def Secret(self) -> None: ...

    def _private(self) -> None: ...

    @property
    def Prop(self) -> int:
        return 1


def test_register_uses_the_class_name_and_public_methods_only() -> None:
    reg = ServiceRegistry()
    reg.register(Calc())
    assert sorted(reg.methods) == ["Calc.Add", "Calc.Sum"]


def test_register_name_overrides_the_service_name() -> None:
    reg = ServiceRegistry()
    reg.register(Calc(), name="Calculator")
    assert "Calculator.Add" in reg.methods and "Calc.Add" not in reg.methods


def test_nothing_exposable_is_a_clear_error() -> None:
    class Empty:
        def _x(self) -> None: ...

    with pytest.raises(RegistrationError, match="Empty has no exposable method"):
        ServiceRegistry().register(Empty())


def test_registering_a_class_instead_of_an_instance_is_refused() -> None:
    with pytest.raises(RegistrationError, match=r"use register\(Calc\(\)\)"):
        ServiceRegistry().register(Calc)


def test_duplicates_are_refused() -> None:
    reg = ServiceRegistry()
    reg.register(Calc())
    with pytest.raises(RegistrationError, match="already registered"):
        reg.register(Calc())


def test_plain_functions_get_flat_names() -> None:
    def subtract(minuend: int, subtrahend: int) -> int:
        return minuend - subtrahend

    def eth_getBalance(address: str) -> str:
        return "0x0"

    reg = ServiceRegistry()
    reg.register(subtract)
    reg.register(eth_getBalance)
    assert {"subtract", "eth_getBalance"} <= set(reg.methods)
    with pytest.raises(RegistrationError, match="lambda"):
        reg.register(lambda: 1)


def spec_of(fn: Any) -> MethodSpec:
    return MethodSpec("t.f", fn)


def test_bind_struct_positional_dict_and_fields_as_named() -> None:
    s = spec_of(Calc().Add)
    assert s.bind([{"A": 1, "B": 2}]) == ([Args(1, 2)], {})
    assert s.bind({"args": {"A": 1, "B": 2}}) == ([], {"args": Args(1, 2)})
    # JSON-RPC style: the struct's fields as named params
    assert s.bind({"A": 1, "B": 2}) == ([Args(1, 2)], {})


def test_bind_reports_the_field_path_on_a_wrong_type() -> None:
    s = spec_of(Calc().Add)
    with pytest.raises(InvalidArgument, match=r"invalid argument 'args'.*\$\.A"):
        s.bind([{"A": "x", "B": 2}])
    with pytest.raises(InvalidArgument, match="missing required field `B`"):
        s.bind([{"A": 1}])


def test_bind_named_positional_defaults_and_arity() -> None:
    def f(a: int, b: int = 10, *, c: str = "c") -> None: ...

    s = spec_of(f)
    assert s.bind([1]) == ([1], {})
    assert s.bind({"a": 1, "c": "z"}) == ([], {"a": 1, "c": "z"})
    with pytest.raises(InvalidArgument, match="missing argument 'a'"):
        s.bind({"b": 1})
    with pytest.raises(InvalidArgument, match="unexpected argument 'zzz'"):
        s.bind({"a": 1, "zzz": 2})
    with pytest.raises(InvalidArgument, match="takes 3 argument"):
        s.bind([1, 2, 3, 4])
    with pytest.raises(InvalidArgument, match="must be an array or an object"):
        s.bind("nope")


def test_bind_dataclass_typeddict_and_context_param() -> None:
    def g(d: DC, t: TD, ctx: Context) -> None: ...

    s = spec_of(g)
    assert s.context_name == "ctx" and [p.name for p in s.params] == ["d", "t"]
    args, _ = s.bind([{"name": "n", "tags": ["a"]}, {"x": 3}])
    assert args == [DC("n", ["a"]), {"x": 3}]
    with pytest.raises(InvalidArgument, match=r"'t'.*\$\.x"):
        s.bind([{"name": "n", "tags": []}, {"x": "no"}])


def test_stream_modes_from_type_hints() -> None:
    async def server_stream(n: int) -> AsyncIterator[int]:
        yield n

    async def client_stream(items: AsyncIterator[int]) -> int:
        return 0

    async def bidi(items: AsyncIterator[int]) -> AsyncIterator[str]:
        yield ""

    assert spec_of(Calc().Add).mode == "unary"
    assert spec_of(server_stream).mode == "server_stream"
    assert spec_of(client_stream).mode == "client_stream"
    assert spec_of(bidi).mode == "bidi_stream"
    assert spec_of(bidi).request_type is int and spec_of(bidi).result_type is str


async def test_unknown_service_and_method_name_the_missing_part() -> None:
    s = Server().register(Calc())
    with pytest.raises(Unimplemented, match="unknown service 'Nope'"):
        await s.dispatch("Nope.Add", [])
    with pytest.raises(Unimplemented, match=r"unknown method 'Calc\.Nope'"):
        await s.dispatch("Calc.Nope", [])


async def test_describe_lists_signatures() -> None:
    s = Server().register(Calc())
    d = await s.dispatch("rpc.describe", [])
    add = next(m for m in d["Calc"] if m["name"] == "Calc.Add")
    assert add["params"] == [{"name": "args", "type": "Args", "required": True}]
    assert add["result"] == "int"
