"""TLS for every stream wire: one place that builds the server and client ``SSLContext`` from
``certfile``/``keyfile``/``cafile`` options, reloads certificates without a restart, and reads
the peer certificate's identity for ``Context.identity``.

Schemes (see ``transport.base.SCHEMES``): ``tls://`` (the native protocol over TLS, ALPN
``wirecall``), ``https://`` and ``wss://`` (ALPN ``http/1.1``), ``gobs://`` (Go net/rpc with
gob over TLS: Go's ``tls.Dial`` + ``rpc.NewClient``), ``jsonrpcs://`` (Go's net/rpc/jsonrpc
over TLS: ``jsonrpc.NewClient(tls.Dial(...))``), ``grpcs://`` (ALPN ``h2``), and
``any://`` given a certificate: a TLS ClientHello first, then the inner protocol by ALPN or by
sniffing the decrypted bytes.

Server options: ``certfile``, ``keyfile`` (PEM), ``cafile`` (verify client certificates
against this CA: mTLS), ``client_cert`` (``"required"`` (default when ``cafile`` is given) or
``"optional"``), ``ssl`` (a ready ``SSLContext``; then nothing is reloaded),
``tls_reload`` (seconds between checks of the files' modification times; 0 turns polling off;
SIGHUP reloads at once in any case). Client options: ``cafile``, ``certfile``/``keyfile``
(a client certificate for mTLS), ``server_hostname``, ``ssl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import weakref
from collections.abc import Mapping, MutableMapping
from typing import Any, Final

__all__ = [
    "ALPN",
    "CLIENT_KEYS",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "SERVER_KEYS",
    "TLS_SCHEMES",
    "CertReloader",
    "client_context",
    "peer_identity",
    "pop_client_tls",
    "pop_server_tls",
    "reload_all",
    "server_context",
]

log = logging.getLogger("wirecall.tls")

#: the scheme that means "this wire over TLS" (and the ALPN name it offers)
TLS_SCHEMES: Final = {"tls": "tcp", "https": "http", "wss": "ws", "gobs": "gob", "grpcs": "grpc",
                      "jsonrpcs": "jsonrpc"}
ALPN: Final = {"tls": ["wirecall"], "https": ["http/1.1"], "wss": ["http/1.1"],
               "grpcs": ["h2"], "gobs": [], "jsonrpcs": [],
               # any://: every protocol it may find inside
               "any": ["h2", "http/1.1", "wirecall"]}
#: seconds a client has to finish the TLS handshake (option ``tls_handshake_timeout``)
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0
SERVER_KEYS: Final = frozenset({"ssl", "certfile", "keyfile", "cafile", "client_cert",
                                "tls_reload"})
CLIENT_KEYS: Final = frozenset({"ssl", "cafile", "certfile", "keyfile", "server_hostname"})


class CertReloader:
    """Keeps a server ``SSLContext`` current: ``load_cert_chain`` on the same context changes
    the certificate new handshakes use (connections already open keep theirs). ``check()``
    reloads when a file's mtime changed; ``reload()`` reloads unconditionally (SIGHUP)."""

    def __init__(self, ctx: ssl.SSLContext, certfile: str, keyfile: str | None,
                 cafile: str | None) -> None:
        self.ctx = ctx
        self.certfile, self.keyfile, self.cafile = certfile, keyfile, cafile
        self._stamp = self._mtimes()
        self.reloads = 0
        self._timer: asyncio.TimerHandle | None = None

    def _mtimes(self) -> tuple[float, ...]:
        out = []
        for f in (self.certfile, self.keyfile, self.cafile):
            try:
                out.append(os.stat(f).st_mtime_ns if f else 0)
            except OSError:
                out.append(-1)
        return tuple(out)

    def reload(self) -> bool:
        """Load the files again; a broken file is logged and the old certificate stays."""
        try:
            self.ctx.load_cert_chain(self.certfile, self.keyfile)
            if self.cafile:
                self.ctx.load_verify_locations(self.cafile)
        except (OSError, ssl.SSLError) as exc:
            log.error("TLS certificate reload failed (%s): keeping the old one", exc)
            return False
        self._stamp = self._mtimes()
        self.reloads += 1
        log.info("TLS certificate reloaded from %s", self.certfile)
        return True

    def check(self) -> bool:
        if self._mtimes() != self._stamp:
            return self.reload()
        return False

    def watch(self, interval: float) -> None:
        """Check the files every ``interval`` seconds on the running loop (timer callbacks,
        not a task: nothing is left pending when the loop closes), until the context (which
        holds this reloader) is gone with its listener; no loop running: no polling."""
        if interval <= 0 or self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        ref = weakref.ref(self)

        def tick() -> None:
            me = ref()
            if me is None or me._timer is None:
                return
            me.check()
            me._timer = loop.call_later(interval, tick)

        self._timer = loop.call_later(interval, tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


_RELOADERS: weakref.WeakSet[CertReloader] = weakref.WeakSet()
_sighup_loop: weakref.ReferenceType[asyncio.AbstractEventLoop] | None = None


def reload_all() -> int:
    """Reload every live server certificate (what SIGHUP does); returns how many loaded."""
    return sum(1 for r in list(_RELOADERS) if r.reload())


def _install_sighup() -> None:
    """SIGHUP reloads every certificate (once per event loop; the main thread only)."""
    global _sighup_loop
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError, AttributeError):
        loop = asyncio.get_running_loop()
        if _sighup_loop is not None and _sighup_loop() is loop:
            return
        loop.add_signal_handler(signal.SIGHUP, reload_all)
        _sighup_loop = weakref.ref(loop)


def server_context(scheme: str, certfile: str | None = None, keyfile: str | None = None,
                   cafile: str | None = None, client_cert: str | None = None,
                   tls_reload: float = 2.0) -> tuple[ssl.SSLContext, CertReloader]:
    """A server context for ``scheme`` (ALPN by scheme), with its :class:`CertReloader`
    (watching the files every ``tls_reload`` seconds and on SIGHUP)."""
    if not certfile:
        raise ValueError(f"{scheme}:// needs certfile= (and keyfile=, unless the certificate "
                         "file holds the key) or ssl=SSLContext")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"{scheme}://: cannot load certfile {certfile!r} / keyfile "
                         f"{keyfile!r}: {exc}") from None
    mode = client_cert or ("required" if cafile else "none")
    if mode not in ("required", "optional", "none"):
        raise ValueError(f"client_cert must be 'required', 'optional' or 'none', not {mode!r}")
    if mode != "none":
        if not cafile:
            raise ValueError(f"client_cert={mode!r} needs cafile= (the CA clients' "
                             "certificates are verified against)")
        try:
            ctx.load_verify_locations(cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"{scheme}://: cannot load cafile {cafile!r}: {exc}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED if mode == "required" else ssl.CERT_OPTIONAL
    alpn = ALPN.get(scheme)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    reloader = CertReloader(ctx, certfile, keyfile, cafile if mode != "none" else None)
    ctx.wirecall_reloader = reloader  # type: ignore[attr-defined]  # lives as long as ctx
    _RELOADERS.add(reloader)
    _install_sighup()
    reloader.watch(float(tls_reload))
    return ctx, reloader


def pop_server_tls(scheme: str, opts: MutableMapping[str, Any]) -> ssl.SSLContext | None:
    """Take the TLS options out of ``opts``: the server context, or None when there are none
    (a plaintext scheme). A TLS scheme without a certificate is an error."""
    given = {k: opts.pop(k) for k in list(opts) if k in SERVER_KEYS}
    if not given:
        if scheme in TLS_SCHEMES:
            raise ValueError(f"{scheme}:// needs certfile= and keyfile= (or ssl=SSLContext)")
        return None
    ready = given.pop("ssl", None)
    if isinstance(ready, ssl.SSLContext):
        return ready
    return server_context(scheme, **given)[0]


def client_context(scheme: str, cafile: str | None = None, certfile: str | None = None,
                   keyfile: str | None = None) -> ssl.SSLContext:
    """Verify the server against ``cafile`` (the system's CAs without it); present
    ``certfile``/``keyfile`` for mTLS."""
    try:
        ctx = ssl.create_default_context(cafile=cafile)
        if certfile:
            ctx.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"{scheme}://: cannot load TLS files (cafile={cafile!r}, "
                         f"certfile={certfile!r}): {exc}") from None
    alpn = ALPN.get(scheme)
    if alpn and scheme != "any":
        ctx.set_alpn_protocols(alpn)
    return ctx


def pop_client_tls(scheme: str, host: str, opts: MutableMapping[str, Any]) -> dict[str, Any]:
    """``create_connection`` keyword arguments for ``scheme`` (``{}`` for plaintext): ``ssl``
    and ``server_hostname`` (the URL's host unless ``server_hostname=`` is given)."""
    given = {k: opts.pop(k) for k in list(opts) if k in CLIENT_KEYS}
    if scheme not in TLS_SCHEMES:
        return {}
    hostname = given.pop("server_hostname", None) or host
    ready = given.pop("ssl", None)
    ctx = ready if isinstance(ready, ssl.SSLContext) else client_context(scheme, **given)
    return {"ssl": ctx, "server_hostname": hostname}


def peer_identity(transport: Any) -> str:
    """The verified peer certificate's identity: its first URI or DNS subjectAltName
    (``spiffe://...``, ``client.example``), else its subject CN; ``""`` without TLS or
    without a client certificate."""
    sslobj = transport.get_extra_info("ssl_object") if transport is not None else None
    if sslobj is None:
        return ""
    cert: Mapping[str, Any] | None = sslobj.getpeercert()
    if not cert:
        return ""
    for kind in ("URI", "DNS"):
        for k, v in cert.get("subjectAltName", ()):
            if k == kind:
                return str(v)
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return str(v)
    return ""
