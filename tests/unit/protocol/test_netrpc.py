"""net/rpc gob framing, sans-IO: both ends in memory."""

from __future__ import annotations

import pytest

from interop.gotypes import Args
from wirecall.codec.gob import GobTooLarge, go_type
from wirecall.protocol import netrpc as nr

ARGS_T = go_type(Args)
INT_T = go_type(int)


def test_requests_and_out_of_order_replies_byte_by_byte() -> None:
    cli = nr.ClientConnection(1 << 20)
    srv = nr.ServerConnection(1 << 20)
    for seq in (1, 2, 3):
        cli.send_request(seq, "Calculator.Add", Args(seq, 10), ARGS_T)
    wire = cli.data_to_send()
    calls = []
    for i in range(len(wire)):  # one byte at a time
        calls += srv.receive(wire[i : i + 1])
    assert [(c.seq, c.method) for c in calls] == [(i, "Calculator.Add") for i in (1, 2, 3)]
    args = [srv.decode_body(c.body, Args) for c in calls]
    assert args == [Args(1, 10), Args(2, 10), Args(3, 10)]
    srv.send_reply(3, "Calculator.Add", 13, INT_T)
    srv.send_error(1, "Calculator.Add", "boom")
    srv.send_reply(2, "Calculator.Add", 12, INT_T)
    replies = cli.receive(srv.data_to_send())
    assert [(r.seq, r.error) for r in replies] == [(3, ""), (1, "boom"), (2, "")]
    assert cli.decode_body(replies[0].body, int) == 13
    assert cli.decode_body(replies[1].body) == {}  # the struct{}{} body of an error
    assert cli.decode_body(replies[2].body, int) == 12


def test_failed_reply_encoding_leaves_the_stream_consistent() -> None:
    cli = nr.ClientConnection(1 << 20)
    srv = nr.ServerConnection(1 << 20)
    cli.send_request(1, "X.Y", Args(1, 2), ARGS_T)
    srv.receive(cli.data_to_send())
    with pytest.raises(Exception, match="out of range"):
        srv.send_reply(1, "X.Y", 1 << 70, INT_T)
    assert srv.data_to_send() == b""
    srv.send_error(1, "X.Y", "cannot encode")
    srv.send_reply(2, "X.Y", 5, INT_T)
    replies = cli.receive(srv.data_to_send())
    assert [(r.seq, r.error) for r in replies] == [(1, "cannot encode"), (2, "")]
    assert cli.decode_body(replies[1].body, int) == 5


def test_oversized_message_refused_from_its_prefix() -> None:
    srv = nr.ServerConnection(1000)
    with pytest.raises(GobTooLarge):
        srv.receive(b"\xfe\x10\x00")  # announces 4096 bytes


def test_dict_argument_becomes_an_anonymous_struct() -> None:
    t = nr.body_type(None, {"A": 1, "B": 2})
    assert t.kind == "struct" and [f.name for f in t.fields] == ["A", "B"]
    cli = nr.ClientConnection(1 << 20)
    srv = nr.ServerConnection(1 << 20)
    cli.send_request(1, "Calculator.Add", {"A": 1, "B": 2}, t)
    (call,) = srv.receive(cli.data_to_send())
    assert srv.decode_body(call.body, Args) == Args(1, 2)
