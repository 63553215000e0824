"""What the coordinator persists: a global transaction, its branch operations, their history.

Plain data, no I/O. Statuses follow DTM's names (``prepared``, ``submitted``, ``aborting``,
``succeeded``, ``failed``); a branch operation is ``prepared`` until it ``succeeded`` (or, for a
saga action, ``failed`` with a business failure).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from typing import Any

from wirecall.errors import InvalidArgument, RpcError
from wirecall.status import Status

__all__ = [
    "BRANCH_DONE",
    "NON_TERMINAL",
    "TERMINAL",
    "Branch",
    "BranchOp",
    "GlobalTx",
    "HistoryEntry",
    "Mode",
    "Options",
    "Outcome",
    "TxStatus",
    "check_gid",
    "classify",
]


class Mode(enum.StrEnum):
    SAGA = "saga"
    TCC = "tcc"
    MSG = "msg"
    XA = "xa"


class TxStatus(enum.StrEnum):
    PREPARED = "prepared"  # TCC/XA: branches being registered; msg: local tx not submitted
    SUBMITTED = "submitted"  # going forward (saga actions, confirm, commit, msg actions)
    ABORTING = "aborting"  # going backward (compensate, cancel, rollback)
    SUCCEEDED = "succeeded"
    FAILED = "failed"


TERMINAL = frozenset({TxStatus.SUCCEEDED, TxStatus.FAILED})
NON_TERMINAL = (TxStatus.PREPARED, TxStatus.SUBMITTED, TxStatus.ABORTING)


class BranchOp(enum.StrEnum):
    ACTION = "action"  # saga forward step, msg delivery
    COMPENSATE = "compensate"  # saga backward step
    TRY = "try"  # TCC first phase (called by the business code; recorded for the history)
    CONFIRM = "confirm"
    CANCEL = "cancel"
    COMMIT = "commit"  # XA phase 2
    ROLLBACK = "rollback"


BRANCH_DONE = frozenset({"succeeded", "failed"})


class Outcome(enum.StrEnum):
    """A branch's answer under the outcome protocol."""

    SUCCESS = "success"  # OK
    FAILURE = "failure"  # ABORTED: business failure, go backward
    ONGOING = "ongoing"  # FAILED_PRECONDITION: in progress, ask again later
    RETRY = "retry"  # anything else: transport error, timeout, crash...


def classify(error: BaseException | None) -> Outcome:
    """Map a branch call's result to the outcome protocol."""
    if error is None:
        return Outcome.SUCCESS
    if isinstance(error, RpcError):
        if error.status == Status.ABORTED:
            return Outcome.FAILURE
        if error.status == Status.FAILED_PRECONDITION:
            return Outcome.ONGOING
    return Outcome.RETRY


_GID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


def check_gid(gid: Any, field: str = "gid") -> str:
    """A gid or branch id: 1-128 characters of ``[A-Za-z0-9_.:-]`` (INVALID_ARGUMENT otherwise).

    Never formatted into SQL (every query is parameterised); the check is for operators'
    sanity (logs, CLI) and for XA transaction names, which PostgreSQL cannot parameterise.
    """
    if not isinstance(gid, str) or not _GID.match(gid):
        raise InvalidArgument(
            message=f"{field} must be 1-128 characters of [A-Za-z0-9_.:-], got {gid!r}")
    return gid


@dataclasses.dataclass
class Options:
    """Per-transaction knobs (all optional on the wire; unknown keys are an error)."""

    timeout: float | None = None  # global timeout in seconds (saga: none by default, like DTM)
    branch_timeout: float = 3.0  # per branch call
    retry_interval: float = 1.0  # first backoff; doubles on each failure
    max_retry_interval: float = 60.0
    retry_limit: int | None = None  # saga: retries of one action before compensating
    alert_after: int = 3  # compensation/confirm attempts before the stuck alert
    concurrent: bool = False  # saga: run actions concurrently (respecting ``orders``)
    orders: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # bid -> deps
    query_prepared: dict[str, str] | None = None  # msg: {"url":..., "method":...}

    @classmethod
    def parse(cls, raw: Any) -> Options:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise InvalidArgument(message="options must be a mapping")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise InvalidArgument(message=f"options: unknown option(s) {', '.join(unknown)}")
        o = cls(**raw)
        for name in ("timeout", "branch_timeout", "retry_interval", "max_retry_interval"):
            v = getattr(o, name)
            if v is not None and (not isinstance(v, int | float) or v <= 0):
                raise InvalidArgument(message=f"options.{name} must be a positive number")
        if o.retry_limit is not None and (not isinstance(o.retry_limit, int) or o.retry_limit < 0):
            raise InvalidArgument(message="options.retry_limit must be a non-negative integer")
        if not isinstance(o.alert_after, int) or o.alert_after < 1:
            raise InvalidArgument(message="options.alert_after must be a positive integer")
        if not isinstance(o.orders, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) for x in v)
            for k, v in o.orders.items()
        ):
            raise InvalidArgument(
                message="options.orders must map a branch id to a list of branch ids")
        if o.query_prepared is not None:
            qp = o.query_prepared
            if not isinstance(qp, dict) or set(qp) != {"url", "method"}:
                raise InvalidArgument(message="options.query_prepared must be {url, method}")
        return o

    def to_json(self) -> str:
        # every field is plain JSON data already (asdict would deep-copy it first)
        return json.dumps({f: getattr(self, f) for f in _OPTION_FIELDS}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Options:
        return cls(**json.loads(text))


_OPTION_FIELDS = tuple(f.name for f in dataclasses.fields(Options))


@dataclasses.dataclass
class Branch:
    """One operation of one branch: the coordinator calls ``method`` at ``url`` with
    ``gid``, ``branch_id``, ``op`` and ``payload`` as named parameters."""

    gid: str
    branch_id: str
    op: str
    url: str
    method: str
    payload: Any = None
    status: str = "prepared"
    attempts: int = 0
    last_error: str = ""
    updated_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class GlobalTx:
    gid: str
    mode: str
    status: str
    options: Options
    created_at: float
    updated_at: float = 0.0
    timeout_at: float | None = None
    next_due: float = 0.0
    interval: float = 0.0  # current backoff interval (0: none yet)
    owner: str = ""
    lease_until: float = 0.0
    reason: str = ""
    rounds: int = 0  # backward/forward rounds that did not finish (alerting)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["options"] = dataclasses.asdict(self.options)
        return d


@dataclasses.dataclass
class HistoryEntry:
    gid: str
    branch_id: str
    op: str
    at: float
    outcome: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
