"""Certificates made once per test session (tests/support/tls.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.tls import Certs, make_certs


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(Path(tmp_path_factory.mktemp("tls")))
