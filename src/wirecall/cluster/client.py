"""The cluster client: one target, many endpoints, the same API as :class:`wirecall.Client`.

``wirecall.connect("etcd://127.0.0.1:2379/calc")`` (or ``static://``, ``dns://``, ``zk://``)
returns a :class:`ClusterClient`. Each endpoint gets its own ``wirecall.Client`` (so every wire
works: tcp, unix, gob, jsonrpc, http, ws, grpc, and the pools, deadlines and metadata are the
usual ones); on top of them a call is: policy lookup -> adaptive throttle -> balancer pick
among usable endpoints (breaker closed or probing, not ejected, zone first) -> attempt ->
outcome recorded (latency EWMA, breaker, outlier detection, retry budget) -> retry, hedge or
return. ``client.endpoints()`` and ``client.events`` show every decision.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from ..client import Call, Client, Stub, call_options, check_timeout, stub_methods
from ..context import CURRENT
from ..errors import ConnectError, DeadlineExceeded, RpcError, Unavailable
from ..interceptors import ClientCall, ClientInterceptor, chain
from ..status import Status
from ..transport.base import CLIENT_OPTIONS, URL, check_options
from .balancer import Balancer, hash_key, make_balancer
from .breaker import AdaptiveThrottle, BreakerState, CircuitBreaker
from .endpoint import EndpointState
from .entry import Entry
from .events import Events
from .outlier import OutlierDetector, OutlierPolicy
from .policy import (
    DEFAULT_POLICY,
    LatencyTracker,
    MethodPolicy,
    RetryBudget,
    check_names,
    matching,
    never_sent,
    policy_of,
    pushback_ms,
)
from .resolver import Resolver, StaticResolver, make_resolver, parse_target
from .streams import STREAM_BUFFER, ClusterStream

__all__ = ["HASH_KEY", "ClusterClient", "connect"]

T = TypeVar("T")
log = logging.getLogger("wirecall.cluster")
_now = time.monotonic
_exp = math.exp
_CLOSED = BreakerState.CLOSED
_UNSET: Any = object()

#: metadata key whose value is the call's consistent-hashing key
HASH_KEY = "wirecall-hash-key"
#: statuses that count against an endpoint's breaker and outlier score
FAILURE_STATUSES = frozenset({Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED, Status.INTERNAL,
                              Status.UNKNOWN, Status.DATA_LOSS})
#: statuses by which a backend refuses work (adaptive throttling's "not accepted")
REFUSED_STATUSES = frozenset({Status.UNAVAILABLE, Status.RESOURCE_EXHAUSTED})


class BreakerOpen(ConnectError):
    """No attempt was sent: the endpoint's breaker is open."""


class ClusterClient:
    """A client for a cluster target (see :mod:`wirecall.cluster.resolver` for targets)."""

    def __init__(
        self,
        target: str,
        *,
        balancer: str | Balancer | None = None,
        zone: str | None = None,
        policies: Mapping[str, MethodPolicy] | None = None,
        breaker: Mapping[str, Any] | None = None,
        throttle: AdaptiveThrottle | bool | None = True,
        outlier: OutlierPolicy | None = OutlierPolicy(),
        retry_budget: RetryBudget | None = None,
        resolver: Resolver | None = None,
        ewma_tau: float = 2.0,
        allow_empty: bool = False,
        stream_buffer: int = STREAM_BUFFER,
        pool_size: int = 1,
        connect_timeout: float | None = 10.0,
        call_timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        interceptors: Sequence[ClientInterceptor] = (),
        **transport_options: Any,
    ) -> None:
        self.target = target
        self.spec = parse_target(target)
        self.events = Events()
        self.resolver = resolver or make_resolver(self.spec, self._registry_error)
        self.balancer = make_balancer(balancer or self.spec.balancer or "p2c")
        self.zone = zone if zone is not None else self.spec.zone
        self.policies: dict[str, MethodPolicy] = {}
        for name, pol in (policies or {}).items():
            self.set_policy(name, pol)
        self._breaker_opts = dict(breaker or {})
        CircuitBreaker(**self._breaker_opts)  # validate now: unknown options are errors
        self.throttle = (AdaptiveThrottle() if throttle is True else throttle) or None
        self.outlier = OutlierDetector(outlier, self.events) if outlier else None
        self.budget = retry_budget or RetryBudget()
        self.ewma_tau = ewma_tau
        self.allow_empty = allow_empty
        if stream_buffer < 0:
            raise ValueError(f"stream_buffer must be >= 0, got {stream_buffer}")
        self.stream_buffer = stream_buffer
        self.call_timeout = call_timeout
        self.metadata = dict(metadata or {})
        self.interceptors = list(interceptors)
        self._check_options(transport_options)
        self._client_opts = dict(transport_options, pool_size=pool_size,
                                 connect_timeout=connect_timeout)
        self._by_id: dict[str, EndpointState] = {}
        self.live: list[EndpointState] = []
        self._balancers: dict[str, Balancer] = {}
        self._latency: dict[str, LatencyTracker] = {}
        self._ready = asyncio.Event()
        self._dialled = asyncio.Event()
        self._watch_task: asyncio.Task[None] | None = None
        self._sweep_task: asyncio.Task[None] | None = None
        self._closed = False
        self._registry_down = False
        self._retiring: set[asyncio.Future[None]] = set()

    def _check_options(self, options: Mapping[str, Any]) -> None:
        """Unknown transport options are errors now, not when an endpoint is dialled: checked
        against the wires a static list names or ``?wire=``; otherwise (entries not known yet)
        an option no client wire accepts."""
        opts = {k: v for k, v in options.items() if k != "max_in_flight"}
        if isinstance(self.resolver, StaticResolver):
            schemes = {scheme for e in self.resolver.entries for scheme in e.addrs}
        elif self.spec.wire is not None:
            schemes = {self.spec.wire}
        else:
            known = frozenset().union(*CLIENT_OPTIONS.values())
            unknown = sorted(set(opts) - known)
            if unknown:
                raise ValueError(f"{self.target}: no client wire accepts option(s) "
                                 + ", ".join(repr(u) for u in unknown))
            return
        for scheme in sorted(schemes):
            check_options(scheme, "client", opts)

    # -- discovery ------------------------------------------------------------------------

    def _registry_error(self, exc: BaseException) -> None:
        if not self._registry_down:
            log.warning("%s: registry unreachable (%s); the last %d endpoint(s) keep serving",
                        self.target, exc, len(self.live))
        self._registry_down = True
        self.events.emit("endpoints_kept", "", f"registry unreachable: {exc}")

    async def connect(self, timeout: float | None = 10.0) -> ClusterClient:
        """Start discovery; return once the first endpoint set is known (and non-empty)."""
        if self._watch_task is None:
            self._watch_task = asyncio.ensure_future(self._watch())
            self._sweep_task = asyncio.ensure_future(self._sweep())
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
                await self._dialled.wait()  # one endpoint dialled (or failed to)
        except TimeoutError:
            raise ConnectError(message=f"{self.target}: no endpoint found within {timeout}s"
                               ) from None
        return self

    async def _watch(self) -> None:
        try:
            async for entries in self.resolver.updates():
                self._registry_down = False
                self.apply(entries)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: endpoint discovery stopped", self.target)

    def _addr(self, entry: Entry) -> str | None:
        wire = self.spec.wire
        if wire is None and "tcp" in entry.addrs:
            wire = "tcp"
        return entry.addr(wire)

    def apply(self, entries: Sequence[Entry]) -> None:
        """Make ``entries`` the endpoint set (added ones dialled lazily, removed ones drained)."""
        usable = [e for e in entries if self._addr(e) is not None]
        if not usable and self.live and not self.allow_empty:
            self.events.emit("endpoints_kept", "", "an update would remove every endpoint")
            log.warning("%s: ignoring an update with no endpoints; the last %d keep serving",
                        self.target, len(self.live))
            return
        new_ids = {e.id for e in usable}
        for ep in list(self.live):
            if ep.id not in new_ids or ep.entry != next(e for e in usable if e.id == ep.id):
                self._remove(ep)
        for e in usable:
            if e.id not in self._by_id:
                self._add(e)
        self.live = [self._by_id[e.id] for e in usable]
        for b in [self.balancer, *self._balancers.values()]:
            b.update(self.live)
        if self.live:
            self._ready.set()

    def _add(self, entry: Entry) -> None:
        url = self._addr(entry)
        assert url is not None
        known = [ep.ewma for ep in self.live if ep.ewma > 0]
        def on_change(old: str, new: str) -> None:
            self.events.emit("breaker", url, f"{old}->{new}")

        ep = EndpointState(
            entry=entry, url=url, client=Client(url, **self._client_opts),
            breaker=CircuitBreaker(**self._breaker_opts, on_change=on_change),
            tau=self.ewma_tau,
            ewma=sum(known) / len(known) if known else 0.0,
        )
        self._by_id[entry.id] = ep
        self.events.emit("endpoint_added", url, entry.zone)
        # dial now, so the first call's latency sample is not the connection set-up (P2C
        # would avoid the endpoint until that peak decays)
        task = asyncio.ensure_future(self._warm(ep, self._dialled))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    @staticmethod
    async def _warm(ep: EndpointState, on_ready: asyncio.Event | None = None) -> None:
        try:
            await ep.client.connect()
        except (RpcError, OSError) as exc:
            log.info("dialling %s failed: %s", ep.url, exc)
        ep.ready = True  # failed or not: from now on the breaker and outlier logic decide
        if on_ready is not None:
            on_ready.set()

    def _remove(self, ep: EndpointState) -> None:
        ep.removed = True
        self._by_id.pop(ep.id, None)
        self.events.emit("endpoint_removed", ep.url, "")
        task = asyncio.ensure_future(self._retire(ep))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, ep: EndpointState, grace: float = 30.0) -> None:
        deadline = time.monotonic() + grace
        try:
            while ep.pending and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await ep.client.close()

    async def _sweep(self, interval: float = 0.25) -> None:
        while True:
            await asyncio.sleep(interval)
            if self.outlier is not None:
                self.outlier.sweep(self.live, time.monotonic())

    @property
    def url(self) -> URL:
        """An endpoint's address (its ``scheme`` is the wire the calls go on), as
        ``Client.url`` (the CLI reads it to decide on gRPC reflection)."""
        live = self.live
        return live[0].client.url if live else URL(self.spec.wire or "tcp")

    def endpoints(self) -> list[dict[str, Any]]:
        """Each endpoint's state: url, state (ok / ejected / breaker-open / ...), zone, weight,
        pending, latency EWMA, breaker, calls, failures, ejections."""
        now = time.monotonic()
        return [ep.snapshot(now) for ep in self.live]

    # -- policies -------------------------------------------------------------------------

    def set_policy(self, method: str, pol: MethodPolicy) -> None:
        """Policy for ``"Svc.Method"``, ``"Svc.*"`` or ``"*"``."""
        check_names([method])
        if not isinstance(pol, MethodPolicy):
            raise TypeError(f"policy for {method!r} must be a MethodPolicy")
        if pol.balancer is not None:
            self._balancers[pol.balancer] = make_balancer(pol.balancer)
            self._balancers[pol.balancer].update(self.live)
        self.policies[method] = pol

    def policy_for(self, method: str) -> MethodPolicy:
        if not self.policies:
            return DEFAULT_POLICY
        return matching(self.policies, method) or DEFAULT_POLICY

    # -- picking --------------------------------------------------------------------------

    def _candidates(self, exclude: Sequence[EndpointState]) -> list[EndpointState]:
        now = _now()
        live = self.live
        if not exclude and not self.zone:  # the common case: everyone healthy and dialled
            healthy = [ep for ep in live if ep.ready and ep.breaker.state is _CLOSED
                       and ep.ejected_until <= now and not ep.removed]
            if len(healthy) == len(live):
                return healthy
        eps = [ep for ep in live if ep.usable(now) and ep not in exclude]
        if not all(ep.ready for ep in eps):
            eps = [ep for ep in eps if ep.ready] or eps  # still dialling: only if no other
        if self.zone and eps:
            local = [ep for ep in eps if ep.zone == self.zone]
            if local:
                eps = local
        if not eps:  # panic mode: ignore ejections (not breakers) rather than fail
            eps = [ep for ep in self.live if ep not in exclude and ep.breaker.available()]
        return eps

    def pick(self, pol: MethodPolicy = DEFAULT_POLICY, key: int | None = None,
             exclude: Sequence[EndpointState] = ()) -> EndpointState:
        live = self.live
        if len(live) == 1 and not exclude:
            ep = live[0]
            if ep.breaker.available():
                return ep
        eps = self._candidates(exclude)
        if not eps:
            if not live:
                raise Unavailable(message=f"{self.target}: no endpoints")
            raise BreakerOpen(message=f"{self.target}: no usable endpoint ("
                              + ", ".join(f"{ep.url} {ep.state()}" for ep in live) + ")")
        bal = self._balancers.get(pol.balancer, self.balancer) if pol.balancer else self.balancer
        return bal.pick(eps, key)

    # -- one attempt ----------------------------------------------------------------------

    def _record(self, ep: EndpointState, gen: int, exc: RpcError | None, rtt: float) -> None:
        now = time.monotonic()
        ep.stats.calls += 1
        failed = exc is not None and exc.status in FAILURE_STATUSES
        ep.observe(rtt if not failed else max(rtt, ep.ewma) * 2, now)
        ep.breaker.record(gen, not failed)
        if failed:
            ep.stats.failures += 1
        if self.outlier is not None and (failed or ep.consecutive_failures):
            self.outlier.on_result(ep, not failed, self.live, now)
        if self.throttle is not None:
            self.throttle.record(exc is None or exc.status not in REFUSED_STATUSES)

    async def _attempt(self, ep: EndpointState, method: str, params: Any, positional: bool,
                       timeout: float | None, md: Mapping[str, str] | None,
                       result_type: Any) -> Any:
        gen = ep.breaker.allow()
        if gen is None:
            raise BreakerOpen(message=f"{ep.url}: circuit breaker open")
        ep.pending += 1
        t0 = time.monotonic()
        ep.started_sum += t0
        try:
            if positional:
                result = await ep.client.call(method, *params, timeout=timeout, metadata=md,
                                              result_type=result_type)
            else:
                result = await ep.client.invoke(method, params, timeout=timeout, metadata=md,
                                                result_type=result_type)
        except RpcError as exc:
            ep.pending -= 1
            ep.started_sum -= t0
            self._record(ep, gen, exc, time.monotonic() - t0)
            raise
        except BaseException:  # a hedge that lost, or the caller gave up: no verdict
            ep.pending -= 1
            ep.started_sum -= t0
            raise
        ep.pending -= 1
        ep.started_sum -= t0
        self._record(ep, gen, None, time.monotonic() - t0)
        return result

    # -- calls ----------------------------------------------------------------------------

    async def call(self, method: str, /, *args: Any, timeout: float | None = _UNSET,
                   metadata: Mapping[str, str] | None = None, result_type: Any = Any,
                   **kwargs: Any) -> Any:
        """Call ``method`` on one endpoint of the cluster (the usual calling convention)."""
        if kwargs:
            if args:
                raise TypeError("pass positional or keyword arguments, not both")
            return await self.invoke(method, kwargs, timeout=timeout, metadata=metadata,
                                     result_type=result_type)
        if (not self.interceptors and not self.metadata and CURRENT.get() is None
                and not (self.policies and matching(self.policies, method))
                and (metadata is None or HASH_KEY not in metadata)):
            # the hot path, inline: default policy, no hash key, a healthy endpoint with a
            # connection that starts calls without a task (what Client.call does)
            live = self.live
            timed = len(live) != 1  # latency and call ages feed P2C: one endpoint needs none
            ep = self._fast_endpoint() if timed else live[0]
            if ep is None:
                return await self._run(method, args, True, timeout, metadata, result_type)
            client = ep.client
            conn = client.pool.get_nowait()
            br = ep.breaker
            if (conn is not None and conn.fast_start and br.state is _CLOSED and not ep.removed
                    and conn.pending < client.max_in_flight):
                if timeout is _UNSET:
                    timeout = self.call_timeout
                if timeout is not None:
                    timeout = check_timeout(timeout)
                th = self.throttle
                # the start time feeds latency (several endpoints) and the deadline of a
                # re-route; one endpoint without a timeout needs neither
                t0 = _now() if timed or timeout is not None else 0.0
                if th is not None and th.refusing and not th.allow():
                    self.events.emit("throttled", "", method)
                    raise Unavailable(message=f"{method}: rejected locally by adaptive "
                                      "throttling (the backends are refusing calls)")
                gen = br.generation
                ep.pending += 1
                if timed:
                    ep.started_sum += t0
                cid, fut = conn.start(method, args, timeout, metadata, result_type)
                try:
                    result = await fut
                except asyncio.CancelledError:
                    conn.abandon(cid)
                    ep.pending -= 1
                    if timed:
                        ep.started_sum -= t0
                    if client._slot_waiters:
                        client._wake_slot_waiter()
                    raise
                except RpcError as exc:
                    ep.pending -= 1
                    if timed:
                        ep.started_sum -= t0
                    if client._slot_waiters:
                        client._wake_slot_waiter()
                    return await self._fast_failed(ep, gen, exc, t0, method, args, timeout,
                                                   metadata, result_type)
                if client._slot_waiters:  # calls queued past max_in_flight (Client.call)
                    client._wake_slot_waiter()
                ep.pending -= 1
                ep.stats.calls += 1
                if timed:
                    end = _now()
                    ep.started_sum -= t0
                    rtt = end - t0  # PeakEWMA (EndpointState.observe, inlined)
                    if rtt > ep.ewma:
                        ep.ewma = rtt
                    else:
                        w = _exp((ep.ewma_at - end) / ep.tau)
                        ep.ewma = ep.ewma * w + rtt * (1 - w)
                    ep.ewma_at = end
                if br.streak or br.failure_ratio is not None or gen != br.generation:
                    br.record(gen, True, _now())
                ep.consecutive_failures = 0
                if th is not None:
                    th.requests += 1  # an accepted call (AdaptiveThrottle.record, inlined)
                budget = self.budget
                if budget.tokens < budget.max_tokens:
                    budget.on_success()
                return result
            # picked, but not for the inline path (another wire, breaker probing, no
            # connection yet, every slot taken): the full path takes this endpoint (a second
            # pick would skip one in round robin)
            return await self._run(method, args, True, timeout, metadata, result_type, ep)
        return await self._run(method, args, True, timeout, metadata, result_type)

    async def _fast_failed(self, ep: EndpointState, gen: int, exc: RpcError, t0: float,
                           method: str, args: Any, timeout: float | None,
                           md: Mapping[str, str] | None, result_type: Any) -> Any:
        self._record(ep, gen, exc, _now() - t0 if t0 else 0.0)
        if never_sent(exc) and len(self.live) > 1:
            self.events.emit("reroute", ep.url, f"{method}: {exc.status.name}")
            return await self._with_retries(
                DEFAULT_POLICY, None, method, args, True,
                None if timeout is None else t0 + timeout, md, result_type, [ep])
        raise exc

    def _fast_endpoint(self) -> EndpointState | None:
        if not self.live:
            return None
        try:
            return self.pick()
        except RpcError:
            return None

    async def invoke(self, method: str, params: list[Any] | dict[str, Any], *,
                     timeout: float | None = _UNSET, metadata: Mapping[str, str] | None = None,
                     result_type: Any = Any) -> Any:
        return await self._run(method, params, False, timeout, metadata, result_type)

    async def _run(self, method: str, params: Any, positional: bool, timeout: Any,
                   metadata: Mapping[str, str] | None, result_type: Any,
                   first: EndpointState | None = None) -> Any:
        timeout, md = call_options(
            method, self.call_timeout if timeout is _UNSET else timeout, metadata, self.metadata)
        if self.interceptors:
            cc = ClientCall(method, list(params) if positional else params,
                            dict(md or {}), timeout, result_type)

            async def send(c: ClientCall) -> Any:
                return await self._dispatch(c.method, c.params, False, c.timeout,
                                            c.metadata, c.result_type)
            return await chain(self.interceptors, send)(cc)
        return await self._dispatch(method, params, positional, timeout, md, result_type,
                                    first)

    async def _dispatch(self, method: str, params: Any, positional: bool,
                        timeout: float | None, md: Mapping[str, str] | None,
                        result_type: Any, first: EndpointState | None = None) -> Any:
        if not self.live:
            await self.connect()
        pol = self.policy_for(method)
        key: int | None = None
        if pol.hash_key is not None:
            key = hash_key(pol.hash_key(params))
        elif md and HASH_KEY in md:
            key = hash_key(md[HASH_KEY])
        if self.throttle is not None and not self.throttle.allow():
            self.events.emit("throttled", "", method)
            raise Unavailable(message=f"{method}: rejected locally by adaptive throttling "
                              "(the backends are refusing calls)")
        deadline = None if timeout is None else time.monotonic() + timeout
        if pol.hedge is not None:
            return await self._hedged(pol, key, method, params, positional, deadline, md,
                                      result_type)
        return await self._with_retries(pol, key, method, params, positional, deadline, md,
                                        result_type, first=first)

    @staticmethod
    def _remaining(method: str, deadline: float | None) -> float | None:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(message=f"{method}: deadline exceeded")
        return left

    async def _with_retries(self, pol: MethodPolicy, key: int | None, method: str, params: Any,
                            positional: bool, deadline: float | None,
                            md: Mapping[str, str] | None, result_type: Any,
                            tried: list[EndpointState] | None = None,
                            first: EndpointState | None = None) -> Any:
        tried = tried or []
        attempt = 0  # attempts that may have reached a server
        reroutes = len(tried)
        while True:
            if first is not None:  # picked by the caller
                ep, first = first, None
            else:
                try:
                    ep = self.pick(pol, key, tried)
                except RpcError:
                    if not tried:
                        raise
                    ep = self.pick(pol, key)  # every endpoint tried: any usable one again
            try:
                result = await self._attempt(ep, method, params, positional,
                                             self._remaining(method, deadline), md, result_type)
            except RpcError as exc:
                tried.append(ep)
                if never_sent(exc) and reroutes < len(self.live):
                    reroutes += 1
                    self.events.emit("reroute", ep.url, f"{method}: {exc.status.name}")
                    continue
                attempt += 1
                if exc.status in (pol.retry.statuses if pol.retry else FAILURE_STATUSES):
                    self.budget.on_failure()
                delay = self._retry_delay(pol, exc, attempt, method, ep)
                if delay is None:
                    raise
                if deadline is not None and time.monotonic() + delay >= deadline:
                    raise
                await asyncio.sleep(delay)
                continue
            self.budget.on_success()
            return result

    def _retry_delay(self, pol: MethodPolicy, exc: RpcError, attempt: int, method: str,
                     ep: EndpointState) -> float | None:
        """Seconds to wait before the next attempt, or None: give up with ``exc``."""
        retry = pol.retry
        if retry is None or not pol.idempotent or exc.status not in retry.statuses:
            return None
        if attempt >= retry.max_attempts:
            return None
        push = pushback_ms(exc)
        if push is not None:
            self.events.emit("pushback", ep.url, f"{push:.0f}ms")
            if push < 0:
                return None
        if not self.budget.can_retry():
            self.events.emit("retry_throttled", ep.url, method)
            return None
        self.events.emit("retry", ep.url, f"{method} attempt {attempt + 1}: {exc.status.name}")
        ep.stats.retries_from += 1
        return push / 1000 if push is not None else retry.backoff(attempt)

    def _tracker(self, method: str) -> LatencyTracker:
        t = self._latency.get(method)
        if t is None:
            t = self._latency[method] = LatencyTracker()
        return t

    async def _hedged(self, pol: MethodPolicy, key: int | None, method: str, params: Any,
                      positional: bool, deadline: float | None, md: Mapping[str, str] | None,
                      result_type: Any) -> Any:
        hedge = pol.hedge
        assert hedge is not None
        tracker = self._tracker(method)
        delay = hedge.delay if hedge.delay is not None else (tracker.p95()
                                                             or hedge.fallback_delay)
        tasks: dict[asyncio.Task[Any], EndpointState] = {}
        tried: list[EndpointState] = []
        last_error: RpcError | None = None
        t0 = time.monotonic()

        def launch() -> None:
            ep = self.pick(pol, key, tried)
            tried.append(ep)
            tasks[asyncio.ensure_future(self._attempt(
                ep, method, params, positional, self._remaining(method, deadline), md,
                result_type))] = ep

        launch()
        can_hedge = True
        try:
            while tasks:
                more = can_hedge and len(tried) < hedge.max_attempts
                wait_for = delay if more else None
                if deadline is not None:
                    left = deadline - time.monotonic()
                    wait_for = left if wait_for is None else min(wait_for, left)
                    if left <= 0:
                        raise DeadlineExceeded(message=f"{method}: deadline exceeded")
                done, _ = await asyncio.wait(tasks, timeout=wait_for,
                                             return_when=asyncio.FIRST_COMPLETED)
                failed_now = False
                for t in done:
                    tasks.pop(t)
                    exc = t.exception()
                    if exc is None:
                        self.budget.on_success()
                        tracker.add(time.monotonic() - t0)
                        return t.result()
                    if not isinstance(exc, RpcError):
                        raise exc
                    last_error = exc
                    if exc.status in hedge.statuses:
                        self.budget.on_failure()
                    if not (never_sent(exc) or exc.status in hedge.statuses):
                        raise exc  # fatal status: the answer
                    push = pushback_ms(exc)
                    if push is not None and push < 0:
                        raise exc
                    failed_now = True
                if more and (failed_now or not done):
                    if not self.budget.can_retry():
                        self.events.emit("retry_throttled", "", method)
                        can_hedge = False
                    else:
                        self.events.emit("hedge", "", f"{method} attempt {len(tried) + 1}")
                        try:
                            launch()
                        except RpcError as exc:  # no other endpoint to hedge on
                            last_error = last_error or exc
                            can_hedge = False
            assert last_error is not None
            raise last_error
        finally:
            for t in tasks:
                t.cancel()

    def go(self, method: str, /, *args: Any, timeout: float | None = _UNSET,
           metadata: Mapping[str, str] | None = None, result_type: Any = Any,
           **kwargs: Any) -> Call:
        coro = self.call(method, *args, timeout=timeout, metadata=metadata,
                         result_type=result_type, **kwargs)
        return Call(method, kwargs or args, asyncio.ensure_future(coro))

    def stub(self, api: type[T], name: str | None = None) -> T:
        """A typed proxy as :meth:`wirecall.Client.stub`; methods decorated with
        :func:`wirecall.cluster.policy` get their policy."""
        service = name or getattr(api, "__wirecall_service__", None) or api.__name__
        for attr in stub_methods(api):
            pol = policy_of(getattr(api, attr))
            if pol is not None and f"{service}.{attr}" not in self.policies:
                self.set_policy(f"{service}.{attr}", pol)
        return typing.cast(T, Stub(self, api, service))

    def stream(self, method: str, /, params: Any = None, *, timeout: float | None = _UNSET,
               metadata: Mapping[str, str] | None = None, result_type: Any = Any
               ) -> ClusterStream:
        """A streaming call on one endpoint at a time, retried on another while it is not
        committed when the method's policy allows (:mod:`wirecall.cluster.streams`)."""
        tmo, md = call_options(
            method, self.call_timeout if timeout is _UNSET else timeout, metadata, self.metadata)
        return ClusterStream(self, method, params, tmo, md, result_type, self.stream_buffer)

    async def ping(self) -> float:
        if not self.live:
            await self.connect()
        return float(await self.pick().client.ping())

    async def close(self) -> None:
        self._closed = True
        for t in (self._watch_task, self._sweep_task):
            if t is not None:
                t.cancel()
        await self.resolver.close()
        clients = [ep.client for ep in self.live]
        self.live = []
        self._by_id.clear()
        for c in clients:
            await c.close()
        for task in list(self._retiring):  # warm-ups and retiring endpoints
            task.cancel()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    aclose = close

    async def __aenter__(self) -> ClusterClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<ClusterClient {self.target} {len(self.live)} endpoint(s)>"


async def connect(target: str, *, timeout: float | None = 10.0, **options: Any
                  ) -> ClusterClient:
    """A connected :class:`ClusterClient` (the first endpoint set known within ``timeout``);
    ``wirecall.connect`` calls this for ``static://``, ``dns://``, ``etcd://``, ``zk://``."""
    options.setdefault("connect_timeout", timeout)
    client = ClusterClient(target, **options)
    try:
        await client.connect(timeout)
    except BaseException:
        await client.close()
        raise
    return client

