"""The standard gRPC health service, ``grpc.health.v1.Health`` (Check and Watch), so stock
tools (grpc_health_probe, grpcurl, grpcio's health client) can probe a server.

    from wirecall.observability.health import enable_health
    health = enable_health(server)           # health.set("helloworld.Greeter", NOT_SERVING)

``wirecall serve --health`` does the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..context import Context
from ..errors import NotFound
from ..gen import alias_full_names, service_base, standard_messages
from ..service import method

if TYPE_CHECKING:
    from ..server import Server

__all__ = [
    "NOT_SERVING",
    "SERVICE_UNKNOWN",
    "SERVING",
    "HealthService",
    "enable_health",
    "health_pb2",
]

health_pb2 = standard_messages("grpc_health.v1.health_pb2", "grpc_health_v1.proto")
_HealthBase = service_base(health_pb2, "grpc.health.v1.Health", {
    "Check": ("HealthCheckRequest", "HealthCheckResponse", "unary"),
    "Watch": ("HealthCheckRequest", "HealthCheckResponse", "server_stream"),
})

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthService(_HealthBase):  # type: ignore[misc,valid-type]
    """``grpc.health.v1.Health``. Status per service name; ``""`` is the whole server
    (NOT_SERVING once the server is shutting down)."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._status: dict[str, int] = {"": SERVING}
        self._changed = asyncio.Event()

    @method(hidden=True)  # local API only: nobody on the network may change health
    def set(self, service: str, status: int) -> None:
        """Set a service's status (``SERVING``/``NOT_SERVING``); Watch streams see it.
        A local call, never an RPC method (only Check and Watch are served)."""
        self._status[service] = status
        self._changed.set()
        self._changed = asyncio.Event()

    def _get(self, service: str) -> int | None:
        if service == "" and self._server.closing:
            return int(NOT_SERVING)
        st = self._status.get(service)
        if st is None and _registered(self._server, service):
            return int(SERVING)
        return st

    async def Check(self, request: Any, context: Context) -> Any:
        st = self._get(request.service)
        if st is None:
            raise NotFound(message=f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=st)

    async def Watch(self, request: Any, context: Context) -> AsyncIterator[Any]:
        last: int | None = -1
        while True:
            changed = self._changed
            st = self._get(request.service)
            st = int(SERVICE_UNKNOWN) if st is None else st
            if st != last:
                yield health_pb2.HealthCheckResponse(status=st)
                last = st
            # re-check every second too (server shutdown does not fire the event)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 1.0)


def _registered(server: Server, service: str) -> bool:
    for spec in server.registry.methods.values():
        owner = type(getattr(spec.func, "__self__", None))
        if getattr(owner, "__grpc_service__", None) == service:
            return True
    return False


def enable_health(server: Server) -> HealthService:
    svc = HealthService(server)
    server.register(svc)
    alias_full_names(server, svc)
    return svc
