"""How native frames map onto QUIC streams (sans-IO: no asyncio, no aioquic here).

Stream 0 (the client's first bidirectional stream) is the control stream: both prefaces
(codec, limits), PING/PONG and GOAWAY, every frame with call id 0. Every call then has a
stream of its own, opened by the client: its REQUEST, its MESSAGE and WINDOW_UPDATE frames,
and the final RESPONSE or ERROR, in the native frame format (``protocol/frames.py``). The
call id inside the frames stays the native one; :class:`CallStreams` pairs it with the
stream id. A lost packet thus delays only the stream whose bytes it carried.
"""

from __future__ import annotations

from ...errors import ProtocolError
from ...protocol import frames as fr

__all__ = ["CONTROL_STREAM", "CallStreams", "split_frames", "stream_parser"]

#: the stream carrying the prefaces, PING/PONG and GOAWAY
CONTROL_STREAM = 0

_HEADER = fr.HEADER
_PREFACE_SIZE = fr.PREFACE.size


def split_frames(data: bytes) -> list[tuple[int, int, int, bytes | memoryview]]:
    """``(call id, frame type, flags, frame bytes)`` for each frame of ``data``: the output
    of :meth:`FrameConnection.data_to_send`, whole frames (a preface first, at most: call id
    0, type 0)."""
    out: list[tuple[int, int, int, bytes | memoryview]] = []
    n = len(data)
    off = 0
    mv = memoryview(data)
    if data[:4] == fr.MAGIC:
        out.append((0, 0, 0, mv[:_PREFACE_SIZE]))
        off = _PREFACE_SIZE
    while off < n:
        if n - off < _HEADER.size:
            raise ProtocolError("a partial frame header queued for sending")
        length, ftype, flags, _r, cid = _HEADER.unpack_from(data, off)
        end = off + _HEADER.size + length
        if end > n:
            raise ProtocolError("a partial frame queued for sending")
        out.append((cid, ftype, flags, mv[off:end]))
        off = end
    if len(out) == 1 and off == n:  # one frame: hand over the bytes without a copy
        cid, ftype, flags, _ = out[0]
        out[0] = (cid, ftype, flags, data)
    return out


def stream_parser(*, client: bool, max_frame_size: int, peer_max_frame_size: int
                  ) -> fr.FrameConnection:
    """A frame parser for one call's stream (the control stream exchanged the prefaces)."""
    p = fr.FrameConnection(client=client, max_frame_size=max_frame_size)
    p.preface_received = True
    p.peer_max_frame_size = peer_max_frame_size
    return p


class CallStreams:
    """Which call travels on which stream, both ways, and each stream's frame parser."""

    __slots__ = ("by_call", "by_stream", "ended", "parsers")

    #: :meth:`end` bits: this side sent its FIN; the peer's FIN arrived
    SENT = 1
    RECEIVED = 2

    def __init__(self) -> None:
        self.by_call: dict[int, int] = {}
        self.by_stream: dict[int, int] = {}
        self.parsers: dict[int, fr.FrameConnection] = {}
        self.ended: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.by_call)

    def bind(self, call_id: int, stream_id: int) -> None:
        """Pair a call with its stream; a call id reused on another stream is an error."""
        if call_id == 0:
            raise ProtocolError(f"call id 0 on stream {stream_id} (it belongs to the control "
                                "stream)")
        known = self.by_call.get(call_id)
        if known is not None and known != stream_id:
            raise ProtocolError(f"call id {call_id} already runs on stream {known}")
        self.by_call[call_id] = stream_id
        self.by_stream[stream_id] = call_id

    def end(self, stream_id: int, side: int) -> bool:
        """One direction of a stream ended (:attr:`SENT` or :attr:`RECEIVED`); once both
        have, the stream is forgotten. True when this side has now sent its FIN too."""
        bits = self.ended.get(stream_id, 0) | side
        if bits == self.SENT | self.RECEIVED:
            self.drop_stream(stream_id)
        else:
            self.ended[stream_id] = bits
        return bool(bits & self.SENT)

    def drop_stream(self, stream_id: int) -> int | None:
        """Forget a stream; its call id (None when none was bound)."""
        self.parsers.pop(stream_id, None)
        self.ended.pop(stream_id, None)
        cid = self.by_stream.pop(stream_id, None)
        if cid is not None and self.by_call.get(cid) == stream_id:
            del self.by_call[cid]
        return cid

    def drop_call(self, call_id: int) -> int | None:
        """Forget a call; the stream it ran on (None when unknown)."""
        sid = self.by_call.pop(call_id, None)
        if sid is not None:
            self.by_stream.pop(sid, None)
            self.parsers.pop(sid, None)
            self.ended.pop(sid, None)
        return sid
