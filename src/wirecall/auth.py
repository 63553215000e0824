"""Authentication and per-method authorisation, as a server interceptor (every wire, unary
calls and streams alike).

Who is calling (the *principal*) comes from, in order:

1. a bearer token in the ``authorization`` metadata (``Bearer <token>``): checked against a
   static set, a mapping token -> principal, or a callable (sync or async) returning the
   principal or ``None``;
2. the verified TLS client certificate's identity (``Context.identity``: its URI/DNS SAN or
   CN) when ``mtls=True`` (the default) and the listener asked for client certificates
   (``cafile=``), optionally limited to ``identities``.

No credentials, or a wrong token: ``UNAUTHENTICATED``. A known principal that ``rules`` do
not allow on the method: ``PERMISSION_DENIED``. ``rules`` map a method pattern
(``fnmatch``: ``"Admin.*"``, ``"Calc.Add"``, ``"*"``) to the principals allowed (``"*"``:
any authenticated caller); the first pattern that matches decides (exact names are tried
before patterns); a method no rule matches is open to any authenticated caller unless
``default="deny"``. ``public`` patterns need no credentials (health checks).

Two ways to install it, the same checks either way:

* ``auth.install(server)`` (what ``wirecall serve --auth-tokens`` does): a **call observer**
  that refuses a call before it starts, so an inline handler stays inline and the native fast
  lane stays open (a token is checked in microseconds: a hash and a dict lookup). Used when the
  token check is synchronous (static tokens, or a plain function); an ``async`` token check
  makes ``install`` add the interceptor instead. As an observer, the check runs before the
  method is looked up: a caller without credentials gets ``UNAUTHENTICATED`` for an unknown
  method too (it learns nothing about which methods exist).
* ``Server(interceptors=[auth])`` / ``server.add_interceptor(auth)``: every call then runs in
  a task (what any interceptor costs: docs/security.md measures both).

Go's wires (gob, Go JSON-RPC) carry no metadata (only mTLS authenticates there) and no status
code: the error text starts with ``unauthenticated:`` or ``permission denied:`` so a Go client
can tell them apart (wirecall's own gob/JSON-RPC clients map them back to the status).

    server = wirecall.Server(interceptors=[Auth(tokens={"s3cret": "billing"},
                                                rules={"Admin.*": ["ops"], "*": ["*"]})])
"""

from __future__ import annotations

import fnmatch
import hashlib
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .context import Context, current_context
from .errors import Internal, PermissionDenied, Unauthenticated
from .interceptors import OnDone, ServerCall

if TYPE_CHECKING:
    from .server import Server

__all__ = [
    "AUTH_KEY",
    "PERMISSION_DENIED_PREFIX",
    "UNAUTHENTICATED_PREFIX",
    "Auth",
    "bearer",
]

#: the metadata key a bearer token travels in (lower-case, as every wire normalises keys)
AUTH_KEY = "authorization"
UNAUTHENTICATED_PREFIX = "unauthenticated: "
PERMISSION_DENIED_PREFIX = "permission denied: "

TokenCheck = Callable[[str], "str | Awaitable[str | None] | None"]
_sha256 = hashlib.sha256
#: per-method decisions cached (method names come from the network: bounded)
_MAX_CACHED = 4096


def _digest(token: str) -> bytes:
    return _sha256(token.encode()).digest()


def bearer(token: str) -> dict[str, str]:
    """The metadata a client sends: ``wirecall.connect(url, metadata=bearer("s3cret"))``."""
    return {AUTH_KEY: f"Bearer {token}"}


class Auth:
    """The interceptor: ``Server(interceptors=[Auth(...)])`` or ``server.add_interceptor``."""

    def __init__(
        self,
        *,
        tokens: Iterable[str] | Mapping[str, str] | TokenCheck | None = None,
        mtls: bool = True,
        identities: Iterable[str] | None = None,
        rules: Mapping[str, Iterable[str]] | None = None,
        public: Iterable[str] = (),
        default: str = "allow",
    ) -> None:
        if default not in ("allow", "deny"):
            raise ValueError(f"Auth default must be 'allow' or 'deny', not {default!r}")
        self._check: TokenCheck | None = None
        self._tokens: dict[str, str] = {}
        #: the static tokens by SHA-256 digest: a lookup compares digests, never the secret
        #: itself, so its timing tells nothing about a token (and costs one hash, not a loop)
        self._digests: dict[bytes, str] = {}
        if callable(tokens):
            self._check = tokens
        elif isinstance(tokens, Mapping):
            self._tokens = {str(k): str(v) for k, v in tokens.items()}
        elif tokens is not None:
            if isinstance(tokens, str):
                raise TypeError("Auth tokens: give a set of tokens, not one string")
            self._tokens = {str(t): "bearer" for t in tokens}
        if any(not t for t in self._tokens):
            raise ValueError("Auth tokens: an empty token would let anyone in")
        self._digests = {_digest(t): p for t, p in self._tokens.items()}
        #: the usual header of each static token (``Bearer <token>``) -> principal: one dict
        #: lookup per call (str hashes are keyed per process, so a miss's timing says
        #: nothing about a token); other spellings go through the parse and the digest
        self._headers = {f"Bearer {t}": p for t, p in self._tokens.items()}
        #: True when the token check must be awaited (``install`` then adds the interceptor)
        self.is_async = self._check is not None and (
            inspect.iscoroutinefunction(self._check)
            or inspect.iscoroutinefunction(type(self._check).__call__))
        #: method -> (public, principals allowed or None): the rules decided once per method
        self._decided: dict[str, tuple[bool, frozenset[str] | None]] = {}
        #: read by the server: a guard wraps fast-lane handlers inside the other observers
        #: (so the access log and metrics see refused calls)
        self.guard = True
        self.mtls = mtls
        self.identities = frozenset(identities) if identities is not None else None
        self._exact: dict[str, frozenset[str]] = {}
        self._patterns: list[tuple[str, frozenset[str]]] = []
        for pattern, who in (rules or {}).items():
            if isinstance(who, str):
                raise TypeError(f"Auth rule {pattern!r}: give a list of principals, not {who!r}")
            allowed = frozenset(who)
            if any(c in pattern for c in "*?["):
                self._patterns.append((pattern, allowed))
            else:
                self._exact[pattern] = allowed
        self.public = tuple(public)
        self.default = default

    # -- installed as a call observer (the cheap path) ---------------------------------

    def install(self, server: Server) -> None:
        """Check every call of ``server``: as a call observer (inline handlers and the
        native fast lane stay as they are) unless the token check is ``async``, then as an
        interceptor."""
        if self.is_async:
            server.add_interceptor(self)
        else:
            server.add_observer(self)

    def _decide(self, method: str) -> tuple[bool, frozenset[str] | None]:
        d = self._decided.get(method)
        if d is None:
            if len(self._decided) >= _MAX_CACHED:
                self._decided.clear()
            public = any(fnmatch.fnmatchcase(method, p) for p in self.public)
            d = self._decided[method] = (public, self.allowed(method))
        return d

    def check(self, method: str, ctx: Context) -> None:
        """Raise :class:`Unauthenticated` or :class:`PermissionDenied` unless the caller
        of ``ctx`` may call ``method`` (synchronously: the observer's check)."""
        public, who = self._decide(method)
        if public:
            return
        self._allow(who, self._principal(ctx.metadata, ctx.identity), method)

    def call_started(self, method: str, ctx: Context, on_done: OnDone) -> OnDone:
        self.check(method, ctx)  # raising refuses the call (Server reports it to on_done)
        return on_done

    def stream_started(self, method: str, ctx: Context, on_done: OnDone) -> OnDone:
        self.check(method, ctx)
        return on_done

    def fast_handler(self, method: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        """The native fast lane's inline handler, checked first (keeps the lane open)."""
        if self._decide(method)[0]:
            return handler  # public: nothing to check
        check = self.check

        def guarded(*args: Any) -> Any:
            ctx = current_context()
            if ctx is None:  # (never on the lane: the transport sets the Context)
                raise Internal(message="no call context")
            check(method, ctx)
            return handler(*args)

        return guarded

    def _principal(self, metadata: Mapping[str, str], identity: str) -> str:
        """:meth:`authenticate`, synchronously (the token check must not be async)."""
        header = metadata.get(AUTH_KEY)
        if header is None:
            return self._certificate_principal(identity)
        principal: Any = self._headers.get(header)
        if principal is not None:
            return principal  # type: ignore[no-any-return]
        token = self._bearer(header)
        if self._check is None:
            principal = self._digests.get(_digest(token))
        else:
            principal = self._check(token)
            if inspect.isawaitable(principal):
                close = getattr(principal, "close", None)
                if close is not None:
                    close()
                raise Internal(message="the Auth token check returned an awaitable: install "
                               "an async check with server.add_interceptor(auth)")
        if principal is None:
            raise Unauthenticated(message=UNAUTHENTICATED_PREFIX + "invalid bearer token")
        return str(principal)

    @staticmethod
    def _bearer(header: str) -> str:
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated(message=UNAUTHENTICATED_PREFIX
                                  + "the authorization metadata must be 'Bearer <token>'")
        return token

    def _certificate_principal(self, identity: str) -> str:
        if self.mtls and identity:
            if self.identities is not None and identity not in self.identities:
                raise Unauthenticated(message=UNAUTHENTICATED_PREFIX
                                      + f"client certificate {identity!r} is not accepted")
            return identity
        raise Unauthenticated(message=UNAUTHENTICATED_PREFIX + "credentials required: send "
                              "'authorization: Bearer <token>' metadata"
                              + (" or a client certificate" if self.mtls else ""))

    # -- installed as an interceptor -------------------------------------------------------

    async def __call__(self, call: ServerCall, proceed: Callable[[Any], Awaitable[Any]]) -> Any:
        method = call.method
        if self._decide(method)[0]:
            return await proceed(call)
        principal = await self.authenticate(call.context.metadata, call.context.identity)
        self.authorize(principal, method)
        return await proceed(call)

    async def authenticate(self, metadata: Mapping[str, str], identity: str) -> str:
        """The caller's principal, or :class:`Unauthenticated`."""
        header = metadata.get(AUTH_KEY)
        if header is None:
            return self._certificate_principal(identity)
        token = self._bearer(header)
        if self._check is None:
            principal = self._digests.get(_digest(token))
        else:
            out = self._check(token)
            if inspect.isawaitable(out):
                out = await out
            principal = None if out is None else str(out)
        if principal is None:
            raise Unauthenticated(message=UNAUTHENTICATED_PREFIX + "invalid bearer token")
        return principal

    def allowed(self, method: str) -> frozenset[str] | None:
        """The principals ``rules`` allow on ``method`` (None: no rule matches)."""
        if method in self._exact:
            return self._exact[method]
        for pattern, who in self._patterns:
            if fnmatch.fnmatchcase(method, pattern):
                return who
        return None

    def authorize(self, principal: str, method: str) -> None:
        """:class:`PermissionDenied` unless ``principal`` may call ``method``."""
        self._allow(self._decide(method)[1], principal, method)

    def _allow(self, who: frozenset[str] | None, principal: str, method: str) -> None:
        """:class:`PermissionDenied` unless ``who`` (the method's rule) admits ``principal``."""
        if who is None:
            if self.default == "allow":
                return
        elif "*" in who or principal in who:
            return
        raise PermissionDenied(message=PERMISSION_DENIED_PREFIX
                               + f"{principal!r} may not call {method}")
