"""Per-connection budgets: what one peer may make a server hold (``docs/limits.md``).

Every wire enforces them on each connection on its own: over a budget, that connection gets
a clear error (a GOAWAY with a status and the budget's name, HTTP/2 GOAWAY
``ENHANCE_YOUR_CALM``, an HTTP error or Go error string) and is closed; nobody else notices.
Set them with ``Server(limits=Limits(...))``; the two older limits (``max_message_size``,
``max_concurrent_calls``) stay keywords of ``Server`` itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "Limits"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """The budgets of one connection (defaults in ``docs/limits.md``)."""

    #: bytes of replies queued for a peer that does not read them; past this the connection
    #: is aborted. Reading stops at the transport's high-water mark already: what piles up
    #: past it are the replies of calls admitted before (a client may pipeline ~100 MiB of
    #: replies and read them later: tests/wires/native), hence a generous default
    max_unsent_bytes: int = 128 * MiB
    #: stream credit (native protocol, in messages) a peer may grant one stream; a
    #: WINDOW_UPDATE beyond it is clamped to it
    max_stream_credit: int = 256
    #: method names a connection remembers (decoded once, then looked up by their bytes) ...
    max_method_names: int = 1024
    #: ... and their total size in bytes; names past either bound are decoded per call
    max_method_name_bytes: int = 64 * 1024
    #: gob type definitions one stream may send (Go sends each type once) ...
    max_type_definitions: int = 1024
    #: ... and their total wire size in bytes
    max_type_definition_bytes: int = 1 * MiB
    #: control frames (HTTP/2 SETTINGS, PING, PRIORITY, unknown types; native PING and
    #: SETTINGS) a connection may send per second
    max_control_frames_per_second: int = 1000
    #: seconds a connection may take to finish a frame (value, message) it has started
    frame_timeout: float = 10.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"Limits.{f.name} must be a positive number, got {v!r}")
            if f.type == "int" and not isinstance(v, int):
                raise ValueError(f"Limits.{f.name} must be an integer, got {v!r}")


DEFAULT_LIMITS = Limits()
