"""The one exception tree: status picks the class, stdlib bases still catch."""

from __future__ import annotations

import pickle

import pytest

from wirecall import errors as E
from wirecall.status import Status


def test_every_status_has_its_subclass() -> None:
    for status in Status:
        if status is not Status.OK:
            err = E.RpcError(status, "m")
            assert type(err) is not E.RpcError and type(err).default_status == status


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (Status.CANCELLED, E.Cancelled),
        (Status.INVALID_ARGUMENT, E.InvalidArgument),
        (Status.DEADLINE_EXCEEDED, E.DeadlineExceeded),
        (Status.NOT_FOUND, E.NotFound),
        (Status.RESOURCE_EXHAUSTED, E.ResourceExhausted),
        (Status.UNIMPLEMENTED, E.Unimplemented),
        (Status.INTERNAL, E.Internal),
        (Status.UNAVAILABLE, E.Unavailable),
        (Status.ABORTED, E.Aborted),
        (Status.UNAUTHENTICATED, E.Unauthenticated),
        (Status.UNKNOWN, E.Unknown),
        (Status.PERMISSION_DENIED, E.PermissionDenied),
        (Status.ALREADY_EXISTS, E.AlreadyExists),
        (Status.FAILED_PRECONDITION, E.FailedPrecondition),
        (Status.OUT_OF_RANGE, E.OutOfRange),
        (Status.DATA_LOSS, E.DataLoss),
    ],
)
def test_status_picks_the_most_specific_class(status: Status, cls: type) -> None:
    err = E.RpcError(status, "msg", {"k": 1})
    assert type(err) is cls
    assert (err.status, err.message, err.details) == (status, "msg", {"k": 1})
    assert str(err) == f"{status.name}: msg"
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls and back.status == status and back.message == "msg"


def test_stdlib_bases_still_catch() -> None:
    with pytest.raises(TimeoutError):
        raise E.RpcError(Status.DEADLINE_EXCEEDED, "late")
    with pytest.raises(ConnectionError):
        raise E.ConnectError(message="refused")
    assert isinstance(E.FrameTooLarge("big"), E.ResourceExhausted)
    assert E.FrameTooLarge("big").status == Status.RESOURCE_EXHAUSTED


def test_protocol_error_takes_message_first_and_an_optional_status() -> None:
    err = E.ProtocolError("bad frame", status=Status.UNAVAILABLE)
    assert (err.status, err.message) == (Status.UNAVAILABLE, "bad frame")
    assert E.ProtocolError("x").status == Status.INTERNAL
    assert E.ProtocolError("y", 14).status == Status.UNAVAILABLE


def test_every_status_has_a_name_and_the_grpc_number() -> None:
    assert len(Status) == 17
    assert Status.OK == 0 and Status.UNAUTHENTICATED == 16 and Status.DATA_LOSS == 15


def test_context_keeps_object_semantics() -> None:
    """Context is a msgspec Struct for speed, but compares and hashes by identity and can be
    weakly referenced, as the transports (sets of running calls) and users expect."""
    import weakref

    from wirecall import Context

    a, b = Context("S.m", {"k": "v"}, None, "peer", "tcp"), Context("S.m", {"k": "v"}, None,
                                                                   "peer", "tcp")
    assert a != b and a == a
    assert len({a, b}) == 2
    assert weakref.ref(a)() is a
    assert (a.method, dict(a.metadata), a.deadline, a.peer, a.transport) == (
        "S.m", {"k": "v"}, None, "peer", "tcp")
    assert not a.cancelled and Context().metadata == {}
    a.cancel()
    assert a.cancelled


def test_a_deadline_timer_that_fires_early_still_counts_as_the_deadline() -> None:
    """Event-loop clocks can fire a deadline timer a millisecond before time.monotonic()
    reaches the deadline: the call must still end DEADLINE_EXCEEDED, not CANCELLED."""
    import asyncio
    import time

    import wirecall
    from wirecall import Context, Status

    ctx = Context("S.m", {}, time.monotonic() + 0.005, "peer", "tcp")
    assert not ctx.expired
    ctx.expire()  # the timer, firing early
    assert ctx.expired and ctx.cancelled and ctx.time_remaining() == 0.0
    err = wirecall.Server().error_from(asyncio.CancelledError(), ctx)
    assert err.status == Status.DEADLINE_EXCEEDED
