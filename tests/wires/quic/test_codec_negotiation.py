"""Codecs chosen per call and per service on the native wires (tcp:// and quic://), visible
in the reply's metadata; an unknown codec is a clear error; Avro schema evolution between an
old client and a new server and the reverse, over a real connection."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, ClassVar

import pytest

import wirecall
from support.quic import serving
from wirecall import InvalidArgument
from wirecall.codec.avro import AVRO_INT
from wirecall.transport.base import parse_url


# -- two versions of one service's records (same Avro names, evolved fields) --------------
@dataclasses.dataclass
class OrderV1:
    __avro_name__ = "Order"
    id: Annotated[int, AVRO_INT]  # widened to long in v2
    item: str  # renamed to product in v2 (alias)
    note: str = ""  # removed in v2 (had a default)


@dataclasses.dataclass
class OrderV2:
    __avro_name__ = "Order"
    __avro_aliases__: ClassVar[dict[str, list[str]]] = {"product": ["item"]}
    id: int
    product: str
    priority: int = 5  # added, with a default


@dataclasses.dataclass
class PointV1:
    __avro_name__ = "Point"
    x: int
    label: str = "-"


@dataclasses.dataclass
class PointV2:
    __avro_name__ = "Point"
    x: int
    y: int = 0


class ShopV2:
    """The new server."""

    def Store(self, order: OrderV2) -> str:
        return f"{order.id}:{order.product}:{order.priority}"

    def Move(self, p: PointV2) -> PointV2:
        return PointV2(p.x + 1, p.y + 1)

    def Fetch(self, key: str) -> OrderV2:
        return OrderV2(2**40, key, 1)

    def Add(self, a: int, b: int) -> int:
        return a + b


class ShopV1:
    """The old server."""

    def Store(self, order: OrderV1) -> str:
        return f"{order.id}:{order.item}:{order.note}"

    def Move(self, p: PointV1) -> PointV1:
        return PointV1(p.x + 1, p.label + "!")


@pytest.mark.parametrize("scheme", ["tcp", "quic"])
async def test_codec_per_call_and_per_service_visible_in_metadata(scheme: str) -> None:
    async with serving(scheme, ShopV2(), "Shop") as (url, opts):
        conn = await wirecall.transport.base.load_transport(scheme).connect(
            parse_url(url), service_codecs={"Shop": "json"}, **opts)
        try:
            # per service: every Shop call goes as JSON and says so
            assert conn.call_codecs.for_call("Shop.Move", None).name == "json"
            r = await conn.call("Shop.Move", [PointV2(1, 1)], 5, None, PointV2)
            assert r == PointV2(2, 2)
            # per call: metadata names the codec, the server's reply metadata names it back
            _cid, fut = conn.start("Shop.Fetch", ["k"], 5, {"wirecall-codec": "avro"}, OrderV2)
            assert await fut == OrderV2(2**40, "k", 1)
            # a call with several parameters cannot take a per-call codec
            with pytest.raises(InvalidArgument, match="exactly one"):
                await conn.call("Shop.Add", [1, 2], 5, {"wirecall-codec": "msgpack"}, Any)
            # an unknown codec: refused by the client at once, naming the known ones
            with pytest.raises(InvalidArgument, match=r"unknown codec 'xml'; known: .*avro"):
                await conn.call("Shop.Move", [PointV2(1)], 5, {"wirecall-codec": "xml"}, Any)
        finally:
            await conn.aclose()


@pytest.mark.parametrize("scheme", ["tcp", "quic"])
async def test_a_server_refuses_a_codec_it_does_not_know_naming_it(scheme: str) -> None:

    async with serving(scheme, ShopV2(), "Shop") as (url, opts):
        conn = await wirecall.transport.base.load_transport(scheme).connect(
            parse_url(url), **opts)
        try:
            # bypass the client's own check: the raw REQUEST names a codec nobody has
            cid = conn.new_id()
            fut = conn._loop.create_future()
            conn._pending[cid] = (fut, Any)
            conn.conn.send_request(cid, "Shop.Move", b"\x90", 5, {"wirecall-codec": "yaml"})
            conn._flush()
            with pytest.raises(InvalidArgument, match="unknown codec 'yaml'"):
                await fut
        finally:
            await conn.aclose()


@pytest.mark.parametrize("scheme", ["tcp", "quic"])
async def test_avro_old_client_new_server(scheme: str) -> None:
    async with (serving(scheme, ShopV2(), "Shop") as (url, opts),
                await wirecall.connect(url, codec="avro", **opts) as c):
        # v1 data read by the v2 server: int->long, item->product (alias), note dropped,
        # priority from its default
        assert await c.call("Shop.Store", OrderV1(7, "tea", "x")) == "7:tea:5"
        # v2 reply read by the v1 client: y dropped, label from its default
        assert await c.call("Shop.Move", PointV1(1), result_type=PointV1) == PointV1(2, "-")
        # v2 writes a long and renames item: the old reader cannot take it (Avro's rules),
        # and says which field failed
        with pytest.raises(InvalidArgument, match="cannot decode the reply"):
            await c.call("Shop.Fetch", "k", result_type=OrderV1)
        for i in range(3):  # after the first call only the fingerprint travels
            assert await c.call("Shop.Store", OrderV1(i, "t")) == f"{i}:t:5"


@pytest.mark.parametrize("scheme", ["tcp", "quic"])
async def test_avro_new_client_old_server(scheme: str) -> None:
    async with (serving(scheme, ShopV1(), "Shop") as (url, opts),
                await wirecall.connect(url, codec="avro", **opts) as c):
        # v2 point read by the v1 server: y dropped, label default; v1 reply read as v2
        assert await c.call("Shop.Move", PointV2(4, 9), result_type=PointV2) == PointV2(5, 0)
        # v2 order to the v1 server: long -> int and a renamed field are refused, by name
        with pytest.raises(InvalidArgument, match=r"cannot decode params of Shop\.Store"):
            await c.call("Shop.Store", OrderV2(1, "tea"))
        assert await c.call("Shop.Move", PointV2(0), result_type=PointV2) == PointV2(1, 0)
