"""OpenTelemetry tracing (extra ``tracing``: opentelemetry-api and -sdk).

::

    ServerTracing(server)                                  # a SERVER span per call and stream
    client = Client(url, interceptors=[ClientTracing()])   # a CLIENT span per call

The client span's W3C ``traceparent`` (and ``tracestate``) travel in the call's metadata, so
the server span is its child. While a handler runs, its server span is the current OpenTelemetry
span (in the handler's task, its worker thread, or on the calling stack for inline handlers),
and the server puts the server span's ``traceparent`` into the call's metadata: onward calls
made by the handler, which inherit that metadata, join the same trace whether or not their
client traces too.

Wires without metadata cannot carry a trace: Go net/rpc (``gob://``, and Go's
``rpc.DialHTTP``) and Go JSON-RPC 1.0 (``jsonrpc://``) start a new trace at the server span.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..context import CURRENT, EMPTY_METADATA, Context
from ..errors import RpcError
from ..interceptors import ClientCall, OnDone
from .stats import split_method, wire_of

if TYPE_CHECKING:
    from ..server import Server

__all__ = [
    "ClientTracing",
    "ServerTracing",
    "check_sample",
    "parent_sampled",
    "require_otel",
    "traceparent_of",
]

_SCOPE = "wirecall"
_random = random.random


def require_otel() -> Any:
    """The ``opentelemetry.trace`` module, or a RuntimeError naming the extra to install."""
    try:
        importlib.import_module("opentelemetry.sdk.trace")
        return importlib.import_module("opentelemetry.trace")
    except ImportError:
        raise RuntimeError(
            "tracing needs OpenTelemetry: pip install 'wirecall[tracing]'") from None


class _Otel:
    """The OpenTelemetry pieces both sides use, imported once."""

    def __init__(self, tracer_provider: Any) -> None:
        self.trace = require_otel()
        self.context = importlib.import_module("opentelemetry.context")
        tc = importlib.import_module("opentelemetry.trace.propagation.tracecontext")
        self.propagator = tc.TraceContextTextMapPropagator()
        provider = tracer_provider or self.trace.get_tracer_provider()
        self.tracer = provider.get_tracer(_SCOPE)
        self.status_error = self.trace.Status(self.trace.StatusCode.ERROR)
        #: an empty OpenTelemetry context: the parent of a server span whose caller sent no
        #: ``traceparent`` (explicit, so the SDK and its sampler skip reading the current
        #: context, and no ambient span of the server becomes the parent)
        self.root = self.context.Context()
        #: ``set_span_in_context(span, parent)``: the context with ``span`` current, built on
        #: ``parent`` (given, so the current context is not read)
        self.in_context = self.trace.set_span_in_context
        #: (method, wire, peer) -> the span attributes (fixed for a peer's calls of a method;
        #: the SDK copies them into each span)
        self._attrs: dict[tuple[str, str, str], dict[str, Any]] = {}

    def attributes(self, method: str, ctx: Context | None) -> dict[str, Any]:
        """The server span's attributes for a call of ``method`` (cached: the same dict is
        handed to every span of that method, wire and peer; the SDK copies it)."""
        if ctx is None:
            return _attributes(method, "")
        key = (method, ctx.transport, ctx.peer)
        attrs = self._attrs.get(key)
        if attrs is None:
            if len(self._attrs) >= 4096:  # names and peers come from the network: bounded
                self._attrs.clear()
            attrs = _attributes(method, wire_of(ctx))
            if ctx.peer:
                attrs["net.peer.name"] = ctx.peer
            attrs = self._attrs[key] = attrs
        return attrs

    def end(self, span: Any, err: BaseException | None) -> None:
        if err is not None:
            code = err.status.name if isinstance(err, RpcError) else type(err).__name__
            span.set_attribute("rpc.wirecall.status", code)
            span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, code))
        else:
            span.set_attribute("rpc.wirecall.status", "OK")
        span.end()


def _attributes(method: str, wire: str) -> dict[str, Any]:
    svc, meth = split_method(method)
    attrs: dict[str, Any] = {"rpc.system": "wirecall", "rpc.service": svc, "rpc.method": meth}
    if wire:
        attrs["rpc.wirecall.wire"] = wire
    return attrs


class _TracedMetadata(Mapping[str, str]):
    """A call's metadata with the server span's ``traceparent`` (and ``tracestate``) on top,
    formatted only when read: most handlers make no onward call, and the W3C header costs a
    dict copy and the propagator's formatting (~10% of a span). Reading another key reads the
    caller's metadata directly; iterating (an onward call merging it) builds it once."""

    __slots__ = ("_base", "_full", "_inject", "_otel_ctx")

    def __init__(self, base: Mapping[str, str], inject: Callable[..., None],
                 otel_ctx: Any) -> None:
        self._base = base
        self._inject = inject
        self._otel_ctx = otel_ctx
        self._full: dict[str, str] | None = None

    def _built(self) -> dict[str, str]:
        full = self._full
        if full is None:
            full = dict(self._base)
            self._inject(full, context=self._otel_ctx)
            self._full = full
        return full

    def __getitem__(self, key: str) -> str:
        if key == "traceparent" or key == "tracestate" or self._full is not None:
            return self._built()[key]
        return self._base[key]

    def __contains__(self, key: object) -> bool:
        if key == "traceparent" or key == "tracestate" or self._full is not None:
            return key in self._built()
        return key in self._base

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())

    def __repr__(self) -> str:
        return repr(self._built())


def check_sample(sample: float) -> float:
    if not 0.0 <= sample <= 1.0:
        raise ValueError(f"tracing sample must be between 0 and 1, not {sample!r}")
    return float(sample)


def parent_sampled(md: Mapping[str, str]) -> bool | None:
    """The sampled flag of the ``traceparent`` in ``md`` (None: no usable traceparent)."""
    tp = md.get("traceparent")
    if tp is None or len(tp) < 55:
        return None
    try:
        return bool(int(tp[53:55], 16) & 1)
    except ValueError:
        return None


class ServerTracing:
    """A server observer: a SERVER span per call and per stream, parented by the caller's
    ``traceparent`` when its wire carries metadata. ``tracer_provider``: default the global
    one (``opentelemetry.trace.set_tracer_provider``).

    ``sample``: the share of calls that start a trace here (head sampling, decided before
    any OpenTelemetry work: a call not sampled costs one ``random()``). A call whose caller
    sent a ``traceparent`` follows the caller's decision (its sampled flag) instead. The
    tracer provider's own sampler still applies to the spans made.
    """

    def __init__(self, server: Server | None = None, *, tracer_provider: Any = None,
                 sample: float = 1.0) -> None:
        self._otel = _Otel(tracer_provider)
        self.sample = check_sample(sample)
        if server is not None:
            server.add_observer(self)

    def _traced(self, md: Mapping[str, str]) -> bool:
        decided = parent_sampled(md) if md else None
        if decided is not None:
            return decided
        return self.sample >= 1.0 or _random() < self.sample

    def call_started(self, method: str, ctx: Context, on_done: OnDone) -> OnDone:
        return self._start(method, ctx, on_done)

    def stream_started(self, method: str, ctx: Context, on_done: OnDone) -> OnDone:
        return self._start(method, ctx, on_done)

    def _start(self, method: str, ctx: Context, on_done: OnDone) -> OnDone:
        otel = self._otel
        md = ctx.metadata
        if not self._traced(md):
            return on_done
        parent = otel.propagator.extract(md, otel.root) if "traceparent" in md else otel.root
        span = otel.tracer.start_span(method, context=parent, kind=otel.trace.SpanKind.SERVER,
                                      attributes=otel.attributes(method, ctx))
        current = otel.in_context(span, parent)
        # we run in a copy of the caller's contextvars: the handler inherits this, and the
        # copy is dropped when the call has started (nothing to detach)
        otel.context.attach(current)
        ctx.metadata = _TracedMetadata(md, otel.propagator.inject, current)

        def done(result: Any, err: BaseException | None) -> None:
            try:
                otel.end(span, err)
            finally:
                on_done(result, err)

        return done


    def fast_handler(self, method: str, handler: Callable[..., Any], *,
                     sample: float | None = None) -> Callable[..., Any]:
        """The native fast lane's inline handler in a SERVER span, parented by the call's
        ``traceparent`` when its metadata has one (a plain call has none: a new trace).
        ``sample``: the head-sampling share for calls without metadata instead of
        :attr:`sample` (1.0: the caller has already decided, as ``fused.Fused`` does)."""
        otel = self._otel
        start_span, kind = otel.tracer.start_span, otel.trace.SpanKind.SERVER
        attach, detach = otel.context.attach, otel.context.detach
        attributes, in_context, extract, root = (
            otel.attributes, otel.in_context, otel.propagator.extract, otel.root)
        sample = self.sample if sample is None else check_sample(sample)
        traced_here = self._traced
        get_ctx = CURRENT.get

        def traced(*args: Any) -> Any:
            ctx = get_ctx()
            md = ctx.metadata if ctx is not None else EMPTY_METADATA
            if md:
                if not traced_here(md):
                    return handler(*args)
            elif sample < 1.0 and _random() >= sample:
                return handler(*args)
            parent = extract(md, root) if "traceparent" in md else root
            span = start_span(method, parent, kind, attributes(method, ctx))
            token = attach(in_context(span, parent))
            try:
                result = handler(*args)
            except BaseException as exc:
                otel.end(span, exc)
                raise
            finally:
                detach(token)
            span.set_attribute("rpc.wirecall.status", "OK")
            span.end()
            return result

        return traced


class ClientTracing:
    """A client interceptor: a CLIENT span per call, its ``traceparent`` put in the call's
    metadata. The parent is the current OpenTelemetry span (a handler's server span when the
    call is made while serving one), whose sampling decision it follows; with no current
    span, ``sample`` is the share of calls that start a trace."""

    def __init__(self, *, tracer_provider: Any = None, sample: float = 1.0) -> None:
        self._otel = _Otel(tracer_provider)
        self.sample = check_sample(sample)
        self._attrs: dict[str, dict[str, Any]] = {}  # method -> span attributes (bounded)

    async def __call__(
        self, call: ClientCall, proceed: Callable[[ClientCall], Awaitable[Any]]
    ) -> Any:
        otel = self._otel
        current = otel.trace.get_current_span().get_span_context()
        if current.is_valid:
            if not current.trace_flags.sampled:
                return await proceed(call)
        elif self.sample < 1.0:
            decided = parent_sampled(call.metadata)
            if not (decided if decided is not None else _random() < self.sample):
                return await proceed(call)
        attrs = self._attrs.get(call.method)
        if attrs is None:
            if len(self._attrs) >= 4096:
                self._attrs.clear()
            attrs = self._attrs[call.method] = _attributes(call.method, "")
        span = otel.tracer.start_span(call.method, kind=otel.trace.SpanKind.CLIENT,
                                      attributes=attrs)
        carrier: dict[str, str] = {}
        otel.propagator.inject(carrier, context=otel.trace.set_span_in_context(span))
        call.metadata.update(carrier)
        try:
            result = await proceed(call)
        except BaseException as exc:
            otel.end(span, exc)
            raise
        otel.end(span, None)
        return result


def traceparent_of(metadata: Mapping[str, str]) -> str | None:
    """The W3C ``traceparent`` in a call's metadata, if any."""
    return metadata.get("traceparent")
