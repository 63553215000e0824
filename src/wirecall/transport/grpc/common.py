"""What the gRPC server and client sides share."""

from __future__ import annotations

import ssl as ssl_mod

__all__ = ["HIGH_WATER", "alpn_h2"]

#: bytes queued on one stream before send() waits for the window
HIGH_WATER = 256 * 1024


def alpn_h2(ctx: ssl_mod.SSLContext) -> ssl_mod.SSLContext:
    """``ctx`` offering (client) or accepting (server) only ALPN ``h2``."""
    ctx.set_alpn_protocols(["h2"])
    return ctx
