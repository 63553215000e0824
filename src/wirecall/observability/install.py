"""Switch observability on for a server from options (what ``wirecall serve`` flags map to).

::

    obs = Observability(server, admin="http://127.0.0.1:9090", metrics=True, tracing=True,
                        access_log="json")
    await obs.start()      # the admin listener, if asked for
    ...
    await obs.close()      # admin closed, spans and log lines flushed

Nothing is installed unless asked for: no option means no observer, so calls keep every fast
path (the native fast lane included).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import IO, TYPE_CHECKING, Any

from .accesslog import FORMATS, AccessLog
from .fused import Fused
from .stats import CallStats

if TYPE_CHECKING:
    from ..server import Server
    from .admin import Admin

__all__ = ["Observability", "tracer_provider_from_env"]

log = logging.getLogger("wirecall.observability")


def tracer_provider_from_env(stream: IO[str] | None = None) -> tuple[Any, str]:
    """The tracer provider ``--tracing`` uses and a word saying where spans go.

    A provider already set globally (by the served module) is kept. Otherwise an SDK provider
    (``OTEL_SERVICE_NAME``, default ``wirecall``) exporting with OTLP/HTTP when
    ``opentelemetry-exporter-otlp-proto-http`` is installed (``OTEL_EXPORTER_OTLP_*`` say
    where), else printing spans as JSON to stderr; it is made the global provider.
    """
    from .tracing import require_otel

    trace = require_otel()
    current = trace.get_tracer_provider()
    sdk = importlib.import_module("opentelemetry.sdk.trace")
    if isinstance(current, sdk.TracerProvider):
        return current, "the provider already configured"
    resources = importlib.import_module("opentelemetry.sdk.resources")
    export = importlib.import_module("opentelemetry.sdk.trace.export")
    name = os.environ.get("OTEL_SERVICE_NAME", "wirecall")
    provider = sdk.TracerProvider(resource=resources.Resource.create({"service.name": name}))
    try:
        otlp = importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
        exporter, where = otlp.OTLPSpanExporter(), "OTLP/HTTP"
    except ImportError:
        exporter = export.ConsoleSpanExporter(out=stream or sys.stderr)
        where = "stderr (install opentelemetry-exporter-otlp-proto-http for OTLP)"
    provider.add_span_processor(export.BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider, where


class Observability:
    """Metrics, tracing, access log and the admin listener of one server, from options.

    ``admin``: the admin listener's URL (``http://host:port``), serving the dashboard, its JSON
    and SSE endpoints, and ``/metrics`` when ``metrics`` is on. ``metrics`` needs ``admin``
    (there is nowhere else to read them). ``tracing``: True (a provider from the environment:
    :func:`tracer_provider_from_env`) or a tracer provider; ``tracing_sample`` the share of
    calls that start a trace (``ServerTracing(sample=...)``). ``access_log``: None (off),
    ``"text"`` or ``"json"``; lines go to ``access_log_stream`` (default stderr).
    """

    def __init__(
        self,
        server: Server,
        *,
        admin: str | None = None,
        metrics: bool = False,
        tracing: Any = False,
        tracing_sample: float = 1.0,
        access_log: str | None = None,
        access_log_stream: IO[str] | None = None,
    ) -> None:
        if metrics and not admin:
            raise ValueError("--metrics needs --admin URL (the listener serving /metrics)")
        if tracing_sample != 1.0 and not tracing:
            raise ValueError("--tracing-sample needs --tracing")
        if access_log is not None and access_log not in FORMATS:
            raise ValueError(f"--access-log takes one of {FORMATS}, not {access_log!r}")
        self.server = server
        self.admin_url = admin
        self.admin: Admin | None = None
        self.tracer_provider: Any = None
        self.tracing_to = ""
        self.access_log: AccessLog | None = None
        self.stats: CallStats | None = None
        if tracing:
            from .tracing import check_sample

            check_sample(tracing_sample)
        server_tracing = None
        if admin:
            from .admin import parse_admin_url

            parse_admin_url(admin)  # a bad URL fails now, before anything is installed
            self.stats = CallStats()
        if tracing:
            from .tracing import ServerTracing

            if tracing is True:
                self.tracer_provider, self.tracing_to = tracer_provider_from_env()
            else:
                self.tracer_provider, self.tracing_to = tracing, "the given provider"
            server_tracing = ServerTracing(tracer_provider=self.tracer_provider,
                                           sample=tracing_sample)
        if access_log is not None:
            self.access_log = AccessLog(fmt=access_log, stream=access_log_stream)
        #: the three as one observer (one fast-lane wrapper: observability/fused.py)
        self.observer: Fused | None = None
        if self.stats is not None or server_tracing is not None or self.access_log is not None:
            self.observer = Fused(self.stats, server_tracing, self.access_log)
            server.add_observer(self.observer)
        self._metrics = metrics

    async def start(self) -> str | None:
        """Start the admin listener (if any); its real URL."""
        if self.admin_url is None:
            return None
        from .admin import Admin

        self.admin = Admin(self.server, stats=self.stats, metrics=self._metrics)
        return await self.admin.start(self.admin_url)

    async def close(self) -> None:
        """Close the admin listener; flush the spans and access log lines not yet written."""
        if self.admin is not None:
            await self.admin.close()
        if self.tracer_provider is not None and hasattr(self.tracer_provider, "force_flush"):
            self.tracer_provider.force_flush()
        if self.access_log is not None:
            self.access_log.close()
