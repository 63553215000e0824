"""TLS, mTLS and auth in one script (docs/security.md).

Makes a throwaway CA, a server certificate and two client certificates with ``openssl``,
serves the tutorial's Calculator plus an Admin service on ``tls://`` and ``https://`` with
client certificates optional, bearer tokens, and a rule that only ``ops`` may call
``Admin.*``; then calls it as: nobody, a wrong token, a valid token, an mTLS client and the
``ops`` token.

    .venv/bin/python examples/security.py
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

import wirecall
from wirecall import Context
from wirecall.auth import Auth, bearer
from wirecall.tutorial.calculator import Args, Calculator


class Admin:
    async def WhoAmI(self, ctx: Context) -> str:
        return ctx.identity or "(token)"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certs(d: Path) -> dict[str, str]:
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
            "-days", "2", "-subj", "/CN=example CA")
    for name, san in (("server", "DNS:localhost,IP:127.0.0.1"),
                      ("client", "URI:spiffe://example/billing")):
        openssl("req", "-new", *ec, "-keyout", str(d / f"{name}.key"),
                "-out", str(d / f"{name}.csr"), "-subj", f"/CN={name}",
                "-addext", f"subjectAltName={san}")
        openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
                "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
                "-copy_extensions", "copy", "-out", str(d / f"{name}.pem"))
    return {n: str(d / n) for n in ("ca.pem", "server.pem", "server.key", "client.pem",
                                    "client.key")}


async def attempt(label: str, url: str, **kw: object) -> None:
    md = kw.pop("metadata", None)
    async with await wirecall.connect(url, **kw) as c:  # type: ignore[arg-type]
        for method, args in (("Calculator.Add", [Args(A=2, B=3)]), ("Admin.WhoAmI", [])):
            try:
                out = await c.call(method, *args, timeout=5, metadata=md)  # type: ignore[arg-type]
                print(f"{label}: {method} -> {out}")
            except wirecall.RpcError as exc:
                print(f"{label}: {method} -> {exc.status.name}: {exc.message}")


async def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        f = make_certs(Path(d))
        server = wirecall.Server(interceptors=[Auth(
            tokens={"t-alice": "alice", "t-ops": "ops"},
            rules={"Admin.*": ["ops", "spiffe://example/billing"]},
        )])
        server.register(Calculator())
        server.register(Admin())
        tls = {"certfile": f["server.pem"], "keyfile": f["server.key"], "cafile": f["ca.pem"],
               "client_cert": "optional"}
        urls = [*await server.start("tls://127.0.0.1:0", **tls),
                *await server.start("https://127.0.0.1:0", **tls)]
        for url in urls:
            print(f"-- {url}")
            trust = {"cafile": f["ca.pem"]}
            await attempt("nobody", url, **trust)
            await attempt("wrong token", url, metadata=bearer("guess"), **trust)
            await attempt("alice", url, metadata=bearer("t-alice"), **trust)
            await attempt("mTLS billing", url, certfile=f["client.pem"],
                          keyfile=f["client.key"], **trust)
            await attempt("ops", url, metadata=bearer("t-ops"), **trust)
        await server.close()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
