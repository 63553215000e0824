"""A service that says which process served the call (``wirecall serve --workers`` tests)."""

from __future__ import annotations

import os
import time

from wirecall import method


class Who:
    def Pid(self) -> int:
        """The serving worker's process id."""
        return os.getpid()

    def Add(self, a: int, b: int) -> int:
        return a + b

    @method(inline=True)
    def Hold(self, seconds: float) -> int:
        """Block this worker's event loop for ``seconds`` (it accepts nothing meanwhile)."""
        time.sleep(seconds)
        return os.getpid()
