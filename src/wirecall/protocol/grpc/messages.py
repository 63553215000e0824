"""gRPC's length-prefixed messages, sans-IO: splitting a stream's DATA into messages (the
size limit checked on the prefix, before the payload is buffered), framing, and
``grpc-encoding: gzip`` (inflating never goes past the size limit)."""

from __future__ import annotations

import zlib

from ...status import Status
from .headers import ACCEPT_ENCODING

__all__ = [
    "PREFIX",
    "MessageError",
    "MessageReader",
    "frame_message",
    "gzip_compress",
    "gzip_decompress",
]

#: bytes before each message: a compressed flag and a 4-byte big-endian length
PREFIX = 5


class MessageError(Exception):
    """A message broke the framing rules; ``status`` is what the call ends with."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class MessageReader:
    """Splits one stream's DATA into gRPC messages; refuses oversize ones from the prefix."""

    __slots__ = ("_buf", "_need", "compressed_ok", "count", "encoding", "max_size")

    def __init__(self, max_size: int, compressed_ok: bool) -> None:
        self._buf = bytearray()
        self._need = -1  # payload length of the message being read, -1 while in the prefix
        self.max_size = max_size
        self.compressed_ok = compressed_ok
        self.encoding = "identity"  # the peer's grpc-encoding (named in errors)
        self.count = 0  # messages completed (marks the one being read: the frame timer)

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def remaining(self) -> int:
        """Bytes still to come of the message being read (0 at a message boundary)."""
        if not self._buf:
            return 0
        return (PREFIX if self._need < 0 else PREFIX + self._need) - len(self._buf)

    def feed(self, data: bytes) -> list[tuple[bool, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[bool, bytes]] = []
        while True:
            if self._need < 0:
                if len(buf) < PREFIX:
                    return out
                flag = buf[0]
                length = int.from_bytes(buf[1:5], "big")
                if flag > 1:
                    raise MessageError(
                        Status.INTERNAL, f"malformed message prefix: compressed flag {flag}"
                    )
                if flag and not self.compressed_ok:
                    raise MessageError(Status.INTERNAL, (
                        "compressed message but no grpc-encoding was negotiated"
                        if self.encoding == "identity" else
                        f"message compressed with unsupported grpc-encoding "
                        f"{self.encoding!r} (supported: {ACCEPT_ENCODING})"
                    ))
                if length > self.max_size:
                    raise MessageError(
                        Status.RESOURCE_EXHAUSTED,
                        f"message of {length} bytes is over the limit of {self.max_size}",
                    )
                self._need = length
            end = PREFIX + self._need
            if len(buf) < end:
                return out
            out.append((buf[0] == 1, bytes(buf[PREFIX:end])))
            del buf[:end]
            self._need = -1
            self.count += 1

    def at_boundary(self) -> bool:
        return not self._buf


def frame_message(payload: bytes, compressed: bool = False) -> bytes:
    return (b"\x01" if compressed else b"\x00") + len(payload).to_bytes(4, "big") + payload


def gzip_compress(payload: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(payload) + c.flush()


def gzip_decompress(payload: bytes, max_size: int) -> bytes:
    """Inflate a gzip message, producing at most ``max_size + 1`` bytes: a message that
    inflates past the limit (a decompression bomb) is refused with RESOURCE_EXHAUSTED as soon
    as the limit is crossed, never inflated whole. Concatenated gzip members are allowed
    (RFC 1952); a truncated stream is INTERNAL."""
    out = b""
    data = payload
    while True:
        d = zlib.decompressobj(31)
        try:
            chunk = d.decompress(data, max_size + 1 - len(out))
        except zlib.error as exc:
            raise MessageError(Status.INTERNAL, f"bad gzip message: {exc}") from None
        out = out + chunk if out else chunk
        if len(out) > max_size:
            raise MessageError(
                Status.RESOURCE_EXHAUSTED,
                f"decompressed message is over the limit of {max_size} bytes",
            )
        if not d.eof:
            raise MessageError(Status.INTERNAL, "bad gzip message: truncated")
        data = d.unused_data
        if not data:
            return out
