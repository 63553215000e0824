"""Options of brokers and subscriptions: unknown ones are errors naming them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import InvalidArgument

__all__ = ["positive_int", "reject_unknown"]


def reject_unknown(where: str, options: Mapping[str, Any], known: Iterable[str]) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        known_s = ", ".join(sorted(known)) or "none"
        raise InvalidArgument(message=f"{where}: unknown option(s) {', '.join(unknown)} "
                              f"(known: {known_s})")


def positive_int(name: str, value: Any, *, zero: bool = False) -> int:
    """``value`` (an int or a decimal string) as an int >= 1 (>= 0 with ``zero``)."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(message=f"{name}: {value!r} is not an integer") from None
    if n < (0 if zero else 1):
        raise InvalidArgument(message=f"{name}: must be {'>= 0' if zero else '>= 1'}, "
                              f"not {n}")
    return n
