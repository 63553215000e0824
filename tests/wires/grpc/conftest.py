"""Every test of this folder runs on both HTTP/2 backends of the gRPC core (ngh2, h2)."""

import pytest

from support.grpc_peer import http2_backend

__all__ = ["http2_backend"]


@pytest.fixture(autouse=True)
def _each_backend(http2_backend: str) -> str:
    return http2_backend
