"""A DB-API cursor subset straight on libpq (psycopg's ``pq`` layer), for the store's operations.

The operations in :mod:`.sql` use ``execute``, ``rowcount``, ``fetchone`` and ``fetchall``
only. A psycopg cursor spends ~200,000 instructions of Python per statement (its adaptation
and result machinery); on PostgreSQL that was the bulk of a coordinator step. This cursor sends
``PQexecParams`` itself (libpq, the GIL released while it waits): parameters as text with
their types (``$1``... placeholders, written by :class:`.sql.Dialect`), results parsed by
column type. Values are still parameters, never formatted into the SQL.

Errors are psycopg's classes (``psycopg.errors.lookup`` by SQLSTATE); a broken connection
raises :class:`psycopg.OperationalError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["PqCursor", "broken"]

# PostgreSQL type oids
_BOOL, _INT8, _FLOAT8 = 16, 20, 701


def _text(b: bytes) -> str:
    return b.decode()


def _bool(b: bytes) -> bool:
    return b == b"t"


_PARSE: dict[int, Callable[[bytes], Any]] = {
    _BOOL: _bool, 20: int, 21: int, 23: int, 26: int, 700: float, _FLOAT8: float,
}


def broken(pgconn: Any) -> bool:
    """Whether the connection is gone (as opposed to a statement that failed)."""
    import psycopg

    return bool(pgconn.status != psycopg.pq.ConnStatus.OK)


class PqCursor:
    rowcount: int

    def __init__(self, pgconn: Any) -> None:
        self.pgconn = pgconn
        self.rowcount = -1
        self.statusmessage = ""
        self._rows: list[tuple[Any, ...]] = []
        self._pos = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        import psycopg

        values: list[bytes | None] = []
        types: list[int] = []
        for v in params:
            if v is None:
                values.append(None)
                types.append(0)
            elif isinstance(v, str):  # (an enum member of ours too: its value)
                values.append(v.encode())
                types.append(0)  # "unknown": the server types it from the context
            elif isinstance(v, bool):
                values.append(b"t" if v else b"f")
                types.append(_BOOL)
            elif isinstance(v, int):
                values.append(str(v).encode())
                types.append(_INT8)
            elif isinstance(v, float):
                values.append(repr(v).encode())
                types.append(_FLOAT8)
            else:
                raise TypeError(f"cannot send a {type(v).__name__} parameter")
        res = self.pgconn.exec_params(sql.encode(), values or None, types or None)
        status = res.status
        self.statusmessage = (res.command_status or b"").decode()
        self._pos = 0
        if status == psycopg.pq.ExecStatus.TUPLES_OK:
            parse = [_PARSE.get(res.ftype(i), _text) for i in range(res.nfields)]
            get = res.get_value
            rows = []
            for r in range(res.ntuples):
                row = []
                for i, conv in enumerate(parse):
                    raw = get(r, i)
                    row.append(None if raw is None else conv(raw))
                rows.append(tuple(row))
            self._rows = rows
            self.rowcount = len(rows)
        elif status == psycopg.pq.ExecStatus.COMMAND_OK:
            self._rows = []
            n = res.command_tuples
            self.rowcount = -1 if n is None else n
        else:
            raise _error(self.pgconn, res)

    def fetchone(self) -> Any:
        if self._pos >= len(self._rows):
            return None
        self._pos += 1
        return self._rows[self._pos - 1]

    def fetchall(self) -> list[Any]:
        rows = self._rows[self._pos:]
        self._pos = len(self._rows)
        return rows


def _error(pgconn: Any, res: Any) -> Exception:
    import psycopg

    message = (res.error_message or b"").decode(errors="replace").strip()
    if broken(pgconn):
        return psycopg.OperationalError(message or "the connection is broken")
    sqlstate = res.error_field(psycopg.pq.DiagnosticField.SQLSTATE)
    try:
        cls: type[Exception] = psycopg.errors.lookup(sqlstate.decode()) if sqlstate else \
            psycopg.DatabaseError
    except KeyError:
        cls = psycopg.DatabaseError
    return cls(message)
