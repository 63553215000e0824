"""rpc.discover: an OpenRPC document generated from the registered services' type hints."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import AsyncIterator
from typing import Any, TypedDict

import msgspec
import pytest

import wirecall
from wirecall.observability.openrpc import document
from wirecall.tutorial.calculator import Calculator


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(msgspec.Struct):
    x: int
    y: int


@dataclasses.dataclass
class Box:
    name: str
    corners: list[Point]
    color: Color = Color.RED


class Opts(TypedDict):
    scale: float


class Shapes:
    """Rich signatures."""

    async def Area(self, box: Box, opts: Opts | None = None) -> float:
        """The area of a box.

        Longer description here."""
        return 0.0

    async def Untyped(self, x, y=2):  # type: ignore[no-untyped-def]
        return x

    async def Points(self, n: int) -> AsyncIterator[Point]:
        for i in range(n):
            yield Point(i, i)


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    s = wirecall.Server()
    s.register(Calculator())
    s.register(Shapes())
    [url] = await s.start("http://127.0.0.1:0")
    c = await wirecall.connect(url)
    yield c
    await c.close()
    await s.close()


async def test_rpc_discover_over_http(client: Any) -> None:
    doc = await client.call("rpc.discover")
    assert doc["openrpc"].startswith("1.")
    assert doc["info"]["title"] == "wirecall" and doc["info"]["version"] == wirecall.__version__
    methods = {m["name"]: m for m in doc["methods"]}
    assert not any(n.startswith("rpc.") for n in methods)
    add = methods["Calculator.Add"]
    assert add["params"] == [{"name": "args", "required": True,
                              "schema": {"$ref": "#/components/schemas/Args"}}]
    assert add["result"]["schema"] == {"type": "integer"}
    assert methods["Calculator.Divide"]["result"]["schema"] == {"type": "number"}
    args = doc["components"]["schemas"]["Args"]
    assert args["properties"] == {"A": {"type": "integer"}, "B": {"type": "integer"}}
    assert sorted(args["required"]) == ["A", "B"]
    assert doc["servers"][0]["url"].startswith("http://127.0.0.1:")


async def test_rich_types(client: Any) -> None:
    doc = await client.call("rpc.discover")
    methods = {m["name"]: m for m in doc["methods"]}
    comps = doc["components"]["schemas"]
    area = methods["Shapes.Area"]
    assert area["summary"] == "The area of a box."
    assert "Longer description" in area["description"]
    box, opts = area["params"]
    assert box["required"] is True and box["schema"] == {"$ref": "#/components/schemas/Box"}
    assert opts["required"] is False
    assert {"$ref": "#/components/schemas/Opts"} in opts["schema"]["anyOf"]
    assert comps["Box"]["properties"]["corners"]["items"] == {"$ref": "#/components/schemas/Point"}
    assert comps["Color"]["enum"] == ["blue", "red"]
    untyped = methods["Shapes.Untyped"]
    assert untyped["params"] == [{"name": "x", "required": True, "schema": {}},
                                 {"name": "y", "required": False, "schema": {}}]
    pts = methods["Shapes.Points"]
    assert pts["x-wirecall-mode"] == "server_stream"
    assert pts["result"]["schema"] == {"$ref": "#/components/schemas/Point"}


def test_document_without_a_listener() -> None:
    s = wirecall.Server()
    s.register(Calculator())
    doc = document(s.registry, title="calc", version="9")
    assert doc["info"] == {"title": "calc", "version": "9"}
    assert [m["name"] for m in doc["methods"]] == ["Calculator.Add", "Calculator.Divide"]
    assert "servers" not in doc
