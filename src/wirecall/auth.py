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

Go's wires (gob, Go JSON-RPC) carry no metadata (only mTLS authenticates there) and no status
code: the error text starts with ``unauthenticated:`` or ``permission denied:`` so a Go client
can tell them apart (wirecall's own gob/JSON-RPC clients map them back to the status).

    server = wirecall.Server(interceptors=[Auth(tokens={"s3cret": "billing"},
                                                rules={"Admin.*": ["ops"], "*": ["*"]})])
"""

from __future__ import annotations

import fnmatch
import hmac
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from .errors import PermissionDenied, Unauthenticated
from .interceptors import ServerCall

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

    async def __call__(self, call: ServerCall, proceed: Callable[[Any], Awaitable[Any]]) -> Any:
        method = call.method
        if self.public and any(fnmatch.fnmatchcase(method, p) for p in self.public):
            return await proceed(call)
        principal = await self.authenticate(call.context.metadata, call.context.identity)
        self.authorize(principal, method)
        return await proceed(call)

    async def authenticate(self, metadata: Mapping[str, str], identity: str) -> str:
        """The caller's principal, or :class:`Unauthenticated`."""
        header = metadata.get(AUTH_KEY)
        if header is not None:
            scheme, _, token = header.strip().partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise Unauthenticated(message=UNAUTHENTICATED_PREFIX
                                      + "the authorization metadata must be 'Bearer <token>'")
            principal = await self._token_principal(token)
            if principal is None:
                raise Unauthenticated(message=UNAUTHENTICATED_PREFIX + "invalid bearer token")
            return principal
        if self.mtls and identity:
            if self.identities is not None and identity not in self.identities:
                raise Unauthenticated(message=UNAUTHENTICATED_PREFIX
                                      + f"client certificate {identity!r} is not accepted")
            return identity
        raise Unauthenticated(message=UNAUTHENTICATED_PREFIX + "credentials required: send "
                              "'authorization: Bearer <token>' metadata"
                              + (" or a client certificate" if self.mtls else ""))

    async def _token_principal(self, token: str) -> str | None:
        if self._check is not None:
            out = self._check(token)
            if inspect.isawaitable(out):
                out = await out
            return None if out is None else str(out)
        found = None
        for known, principal in self._tokens.items():  # constant time per token
            if hmac.compare_digest(known.encode(), token.encode()):
                found = principal
        return found

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
        who = self.allowed(method)
        if who is None:
            if self.default == "allow":
                return
        elif "*" in who or principal in who:
            return
        raise PermissionDenied(message=PERMISSION_DENIED_PREFIX
                               + f"{principal!r} may not call {method}")
