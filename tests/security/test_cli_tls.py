"""The CLI over TLS, as a user runs it: ``wirecall serve --cert --key --ca`` on tls:// and
https://, ``wirecall call/list/bench --ca --client-cert --client-key``, a client without a
certificate refused, and SIGHUP to the serving process switching the certificate."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from support.servers import ROOT
from support.tls import Certs, Pair

WIRECALL = [sys.executable, "-m", "wirecall.cli"]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    return subprocess.run([*WIRECALL, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def _install(pair: Pair, dest: Path) -> None:
    for src, name in ((pair.cert, "live.pem"), (pair.key, "live.key")):
        shutil.copy(src, dest / (name + ".tmp"))
        os.replace(dest / (name + ".tmp"), dest / name)


def _served_cn(url: str, certs: Certs) -> str:
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=certs.ca)
    ctx.load_cert_chain(certs.client.cert, certs.client.key)
    with socket.create_connection((host, int(port)), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        cert = tls.getpeercert()
    assert cert is not None
    return next(v for rdn in cert["subject"] for k, v in rdn if k == "commonName")


@pytest.mark.parametrize("scheme", ["tls", "https"])
def test_serve_and_call_over_mtls(server_process: Any, certs: Certs, tmp_path: Path,
                                  scheme: str) -> None:
    _install(certs.server, tmp_path)
    proc = server_process("wirecall.tutorial.calculator:Calculator", f"{scheme}://127.0.0.1:0",
                          "--cert", str(tmp_path / "live.pem"), "--key",
                          str(tmp_path / "live.key"), "--ca", certs.ca)
    url = proc.start()
    assert url.startswith(f"{scheme}://127.0.0.1:")
    mtls = ["--ca", certs.ca, "--client-cert", certs.client.cert, "--client-key",
            certs.client.key]
    r = run("call", url, "Calculator.Add", '{"A": 10, "B": 5}', *mtls)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "15"
    r = run("list", url, *mtls)
    assert r.returncode == 0 and "Calculator.Add" in r.stdout, r.stderr
    r = run("bench", url, "Calculator.Add", '{"A": 1, "B": 2}', "-n", "200", "-c", "8",
            "--warmup", "0", *mtls)
    assert r.returncode == 0, r.stderr
    # no client certificate: refused at the handshake, a clear UNAVAILABLE
    r = run("call", url, "Calculator.Add", '{"A": 1, "B": 2}', "--ca", certs.ca)
    assert r.returncode != 0 and "UNAVAILABLE" in r.stderr, (r.stdout, r.stderr)
    # SIGHUP: the running server presents the new certificate
    assert _served_cn(url, certs) == "localhost"
    _install(certs.server2, tmp_path)
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGHUP)
    for _ in range(100):
        if _served_cn(url, certs) == "localhost-2":
            break
        time.sleep(0.05)
    else:
        raise AssertionError("SIGHUP did not reload the certificate")
    r = run("call", url, "Calculator.Add", '{"A": 2, "B": 2}', *mtls)
    assert r.stdout.strip() == "4", r.stderr
    assert proc.stop() == 0


def test_tls_flags_on_a_plaintext_address_are_errors(certs: Certs) -> None:
    r = run("call", "tcp://127.0.0.1:1", "Calculator.Add", "{}", "--ca", certs.ca)
    assert r.returncode != 0 and "--ca/--client-cert need a TLS address" in r.stderr
    r = run("serve", "wirecall.tutorial.calculator:Calculator", "--listen",
            "tls://127.0.0.1:0", "--ca", certs.ca)
    assert r.returncode != 0 and "--ca (client certificates) needs --cert" in r.stderr


def test_serve_with_auth_flags(server_process: Any, certs: Certs, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# token principal\nt-alice alice\nt-ops ops\n")
    proc = server_process("wirecall.tutorial.calculator:Calculator", "tls://127.0.0.1:0",
                          "--cert", certs.server.cert, "--key", certs.server.key,
                          "--ca", certs.ca, "--client-cert", "optional",
                          "--auth-tokens", str(tokens), "--allow", "Calculator.Divide=ops")
    url = proc.start()
    args = ["Calculator.Add", '{"A": 1, "B": 2}', "--ca", certs.ca]
    r = run("call", url, *args)
    assert r.returncode != 0 and "UNAUTHENTICATED" in r.stderr, r.stderr
    r = run("call", url, *args, "-m", "authorization=Bearer t-alice")
    assert r.returncode == 0 and r.stdout.strip() == "3", r.stderr
    div = ["Calculator.Divide", '{"A": 8, "B": 2}', "--ca", certs.ca]
    r = run("call", url, *div, "-m", "authorization=Bearer t-alice")
    assert r.returncode != 0 and "PERMISSION_DENIED" in r.stderr, r.stderr
    r = run("call", url, *div, "-m", "authorization=Bearer t-ops")
    assert r.returncode == 0 and r.stdout.strip() == "4.0", r.stderr
    # a client certificate authenticates too (its identity is no 'ops': Divide is denied)
    mtls = ["--client-cert", certs.client.cert, "--client-key", certs.client.key]
    assert run("call", url, *args, *mtls).stdout.strip() == "3"
    assert proc.stop() == 0


def test_auth_flag_errors(certs: Certs, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("only-a-token\n")
    r = run("serve", "wirecall.tutorial.calculator:Calculator", "--listen", "tcp://127.0.0.1:0",
            "--auth-tokens", str(bad))
    assert r.returncode != 0 and "want 'TOKEN PRINCIPAL'" in r.stderr, r.stderr
    r = run("serve", "wirecall.tutorial.calculator:Calculator", "--listen", "tcp://127.0.0.1:0",
            "--allow", "A.*=ops")
    assert r.returncode != 0 and "--allow needs --auth-tokens" in r.stderr, r.stderr
