"""Deterministic crash points for crash-safety tests.

``WIRECALL_TXN_CRASH=point`` (or ``point:N``) makes the process ``os._exit(137)`` -- like
``kill -9``: no cleanup, no flush -- the N-th time (default the first) execution passes
``crash_point("point")``. Unset (production), a crash point costs one dict lookup.

Points in the coordinator: ``submit.after_create``, ``branch.before_call``,
``branch.after_call`` (the branch applied it, the answer is not recorded),
``branch.after_record``, ``status.after_change``, ``query.after_call``. Branch servers and
submitters in the tests add their own names.
"""

from __future__ import annotations

import os

__all__ = ["ENV", "POINTS", "arm", "armed", "crash_point"]

ENV = "WIRECALL_TXN_CRASH"
POINTS = ("submit.after_create", "branch.before_call", "branch.after_call",
          "branch.after_record", "status.after_change", "query.after_call")


def _parse(spec: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, n = part.partition(":")
        out[name] = int(n) if n else 1
    return out


_armed = _parse(os.environ.get(ENV, ""))


def arm(spec: str) -> None:
    """Re-arm from a spec like the environment variable's (a forked test process)."""
    _armed.clear()
    _armed.update(_parse(spec))


def crash_point(name: str) -> None:
    """Exit here, abruptly, if the environment armed ``name`` and its count is reached."""
    if not _armed:
        return
    left = _armed.get(name)
    if left is None:
        return
    if left <= 1:
        os._exit(137)
    _armed[name] = left - 1


def armed() -> bool:
    """Whether any crash point is armed in this process."""
    return bool(_armed)
