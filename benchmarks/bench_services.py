"""The server the core benchmark runs: the tutorial's Calculator plus a bytes echo."""

from __future__ import annotations

import wirecall
from wirecall.tutorial.calculator import Calculator


class Bench:
    @wirecall.method(inline=True)
    def Echo(self, data: bytes) -> bytes:
        return data


server = wirecall.Server()
server.register(Calculator())
server.register(Bench())
