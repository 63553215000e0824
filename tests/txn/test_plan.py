"""The coordinator's sans-IO decisions (txn/plan.py) without a store or a network."""

from __future__ import annotations

import pytest

from wirecall.errors import Aborted, FailedPrecondition, InvalidArgument, RpcError, Unavailable
from wirecall.status import Status
from wirecall.txn.model import Branch, GlobalTx, Options, Outcome, classify
from wirecall.txn.plan import apply_outcome, backoff, next_step


def saga(ids: list[str], **opts: object) -> tuple[GlobalTx, list[Branch]]:
    g = GlobalTx("g", "saga", "submitted", Options(**opts), created_at=0.0)  # type: ignore[arg-type]
    bs = []
    for bid in ids:
        bs += [Branch("g", bid, "action", "tcp://h:1", "A"),
               Branch("g", bid, "compensate", "tcp://h:1", "C")]
    return g, bs


def op(bs: list[Branch], bid: str, name: str) -> Branch:
    return next(b for b in bs if b.branch_id == bid and b.op == name)


def test_outcome_protocol() -> None:
    assert classify(None) == Outcome.SUCCESS
    assert classify(Aborted(message="x")) == Outcome.FAILURE
    assert classify(FailedPrecondition(message="x")) == Outcome.ONGOING
    assert classify(Unavailable(message="x")) == Outcome.RETRY
    assert classify(RpcError(Status.INTERNAL, "x")) == Outcome.RETRY
    assert classify(TimeoutError()) == Outcome.RETRY


def test_ordered_saga_one_step_at_a_time_then_succeeds() -> None:
    g, bs = saga(["1", "2", "3"])
    assert [b.branch_id for b in next_step(g, bs, 0).calls] == ["1"]
    op(bs, "1", "action").status = "succeeded"
    assert [b.branch_id for b in next_step(g, bs, 0).calls] == ["2"]
    op(bs, "2", "action").status = "succeeded"
    op(bs, "3", "action").status = "succeeded"
    assert next_step(g, bs, 0).status == "succeeded"


def test_concurrent_saga_graph_forward_and_backward() -> None:
    g, bs = saga(["a", "b", "c", "d"], concurrent=True, orders={"c": ["a", "b"], "d": ["c"]})
    assert sorted(b.branch_id for b in next_step(g, bs, 0).calls) == ["a", "b"]
    op(bs, "a", "action").status = "succeeded"
    assert [b.branch_id for b in next_step(g, bs, 0).calls] == ["b"]
    op(bs, "b", "action").status = "succeeded"
    assert [b.branch_id for b in next_step(g, bs, 0).calls] == ["c"]
    op(bs, "c", "action").status = "succeeded"
    op(bs, "d", "action").status = "failed"
    step = next_step(g, bs, 0)
    assert step.status == "aborting" and "d failed" in step.reason
    g.status = "aborting"
    assert [b.branch_id for b in next_step(g, bs, 0).calls] == ["d"]
    op(bs, "d", "compensate").status = "succeeded"
    assert [b.branch_id for b in next_step(g, bs, 0).calls] == ["c"]
    op(bs, "c", "compensate").status = "succeeded"
    assert sorted(b.branch_id for b in next_step(g, bs, 0).calls) == ["a", "b"]
    op(bs, "a", "compensate").status = "succeeded"
    op(bs, "b", "compensate").status = "succeeded"
    assert next_step(g, bs, 0).status == "failed"


def test_retry_limit_and_alert() -> None:
    g, bs = saga(["1"], retry_limit=2, alert_after=2)
    a = op(bs, "1", "action")
    assert apply_outcome(g, a, Outcome.RETRY, "e") == ("prepared", False)
    assert apply_outcome(g, a, Outcome.RETRY, "e") == ("prepared", False)
    assert apply_outcome(g, a, Outcome.RETRY, "e")[0] == "failed"
    assert "retry limit 2" in a.last_error
    c = op(bs, "1", "compensate")  # compensation never fails: it alerts once, at the threshold
    assert apply_outcome(g, c, Outcome.FAILURE, "e") == ("prepared", False)
    assert apply_outcome(g, c, Outcome.RETRY, "e") == ("prepared", True)
    assert apply_outcome(g, c, Outcome.RETRY, "e") == ("prepared", False)
    ongoing = op(bs, "1", "action")
    before = ongoing.attempts
    apply_outcome(g, ongoing, Outcome.ONGOING, "")
    assert ongoing.attempts == before  # in progress is not a failure


def test_backoff_doubles_and_caps() -> None:
    g, _ = saga(["1"], retry_interval=0.5, max_retry_interval=3.0)
    seen = []
    for _ in range(5):
        g.interval = backoff(g)
        seen.append(g.interval)
    assert seen == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_timeouts() -> None:
    g, bs = saga(["1"])
    g.timeout_at = 10.0
    assert next_step(g, bs, 11).status == "aborting"
    tcc = GlobalTx("t", "tcc", "prepared", Options(), created_at=0.0, timeout_at=5.0)
    assert next_step(tcc, [], 1).wait_until == 5.0
    assert next_step(tcc, [], 6).status == "aborting"
    msg = GlobalTx("m", "msg", "prepared", Options(), created_at=0.0, timeout_at=5.0)
    assert next_step(msg, [], 6).query is True


@pytest.mark.parametrize(("raw", "text"), [
    ({"nope": 1}, "unknown option(s) nope"),
    ({"retry_limit": -1}, "retry_limit"),
    ({"alert_after": 0}, "alert_after"),
    ({"orders": {"a": "b"}}, "orders"),
    ({"query_prepared": {"url": "x"}}, "query_prepared"),
    ("x", "options must be a mapping"),
])
def test_options_are_checked(raw: object, text: str) -> None:
    with pytest.raises(InvalidArgument, match=text.replace("(", r"\(").replace(")", r"\)")):
        Options.parse(raw)
