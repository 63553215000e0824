"""The last possible timestamp of each worker id, persisted on the node's disk.

A node reserves a horizon ("I may issue up to ``until_ms``") before issuing in it, and writes
it here and in the registry; a restart (even with the clock set back) starts above the larger
of the two. The file is JSON ``{"workers": {key: until_ms}}``, replaced atomically (written to
a temporary file, fsynced, renamed), so a crash leaves the old or the new version, never a
torn one.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

__all__ = ["LocalState"]


class LocalState:
    """``{key: until_ms}`` in ``path`` (created on first write)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: dict[str, int] = self._read()

    def _read(self) -> dict[str, int]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ValueError(f"idgen state file {self.path}: unreadable ({exc}); "
                             "refusing to start without the last issued timestamps") from exc
        workers = raw.get("workers", {}) if isinstance(raw, dict) else None
        if not isinstance(workers, dict):
            raise ValueError(f"idgen state file {self.path}: no 'workers' object")
        return {str(k): int(v) for k, v in workers.items()}

    def get(self, key: str) -> int:
        """The persisted ``until_ms`` of ``key`` (0 if none)."""
        with self._lock:
            return self._data.get(key, 0)

    def put(self, key: str, until_ms: int) -> None:
        """Persist ``until_ms`` for ``key`` (never lowers it); durable when this returns."""
        with self._lock:
            if until_ms <= self._data.get(key, 0):
                return
            self._data[key] = until_ms
            self._write()

    def settle(self, key: str, last_ms: int) -> None:
        """After a clean stop (nothing is issued any more): record the last time actually
        issued in, which may lower the reserved horizon, so a restart need not wait."""
        with self._lock:
            self._data[key] = last_ms
            self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump({"workers": self._data}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
