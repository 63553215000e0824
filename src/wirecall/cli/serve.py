"""``wirecall serve MODULE:ATTR [--listen URL]...``: serve an object, a class or a Server."""

from __future__ import annotations

import argparse
import os
import sys

from ..workers import SHARE_MODES, WORKER_ENV, inherited_sockets
from .cluster import add_register_flags, register_from_args
from .common import (
    CommandError,
    Subparsers,
    add_auth_flags,
    add_command,
    add_tls_server_flags,
    auth_from_args,
    build_server,
    listen_options,
    load_target,
)

__all__ = ["add_parser", "serve"]


def add_parser(sub: Subparsers) -> None:
    s = add_command(sub, "serve", "serve an object, a class, a factory or a Server", (
        "wirecall serve wirecall.tutorial.calculator:Calculator",
        "wirecall serve wirecall.tutorial.calculator:Calculator --listen tcp://127.0.0.1:1234 "
        "--listen ws://127.0.0.1:8080/ws --listen grpc://127.0.0.1:50051",
        "wirecall serve myapp.py:make_server --listen any://0.0.0.0:9000   # calls the factory",
        "wirecall serve wirecall.tutorial.greeter:Greeter --listen grpc://127.0.0.1:50051 "
        "--health --reflection",
    ))
    s.add_argument("target", help="MODULE:ATTR or path/file.py:ATTR: a Server (served as is), "
                   "a class (instantiated), a plain function (a factory, called with no "
                   "arguments: returns a Server, an object or a list of objects) or an object")
    s.add_argument("--listen", action="append", metavar="URL",
                   help="address to listen on (repeatable; port 0 picks a free port); "
                        "default tcp://127.0.0.1:1234")
    s.add_argument("--workers", type=int, default=1, metavar="N",
                   help="N worker processes sharing every listener (SO_REUSEPORT), supervised: "
                        "restarted if they die, SIGTERM drains all, SIGHUP replaces them one by "
                        "one (docs/workers.md)")
    s.add_argument("--share", choices=SHARE_MODES, default="auto",
                   help="with --workers, how workers share a listener: auto (SO_REUSEPORT, an "
                        "inherited socket for unix://), reuseport, or inherit (the supervisor "
                        "binds once, workers accept from one queue)")
    s.add_argument("--debug", action="store_true",
                   help="send handler exceptions' text and traceback to callers (default: an "
                        "opaque INTERNAL reference, logged here)")
    s.add_argument("--health", action="store_true",
                   help="serve grpc.health.v1.Health (grpc_health_probe, load balancers)")
    s.add_argument("--reflection", action="store_true",
                   help="serve gRPC server reflection (grpcurl, grpc_cli)")
    add_tls_server_flags(s)
    add_auth_flags(s)
    add_observability_flags(s)
    add_register_flags(s)
    s.set_defaults(handler=serve)


def add_observability_flags(s: argparse.ArgumentParser) -> None:
    """``--admin``, ``--metrics``, ``--tracing``, ``--access-log`` (docs/observability.md)."""
    g = s.add_argument_group("observability (docs/observability.md)")
    g.add_argument("--admin", metavar="URL",
                   help="admin listener (e.g. http://127.0.0.1:9090): the live dashboard, "
                        "/api/snapshot, /api/events and, with --metrics, /metrics")
    g.add_argument("--metrics", action="store_true",
                   help="Prometheus metrics at /metrics on --admin (wirecall[metrics])")
    g.add_argument("--tracing", action="store_true",
                   help="an OpenTelemetry span per call (wirecall[tracing]); OTLP/HTTP if its "
                        "exporter is installed, else spans as JSON on stderr")
    g.add_argument("--tracing-sample", type=float, default=1.0, metavar="RATIO",
                   help="share of calls that start a trace (0..1, default 1: every call); a "
                        "caller's traceparent decides for its calls")
    g.add_argument("--access-log", nargs="?", const="text", choices=("text", "json"),
                   help="one line per call on stderr (default format: text)")


async def serve(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise CommandError(f"--workers must be at least 1, got {args.workers}")
    if args.workers > 1 and WORKER_ENV not in os.environ:
        return await _supervise(args)
    server = build_server(load_target(args.target), args.debug)
    # standard gRPC services, opt-in (docs/grpc.md); imported only when asked for (grpc extra)
    try:
        if args.health:
            from wirecall.observability.health import enable_health

            enable_health(server)
        if args.reflection:
            from wirecall.observability.reflection import enable_reflection

            enable_reflection(server)
    except ImportError as exc:
        flag = "--health" if args.health else "--reflection"
        raise CommandError(f"{flag} needs the grpc extra ({exc.name} is missing): "
                           "pip install 'wirecall[grpc]'") from None
    auth = auth_from_args(args)
    if auth is not None:
        auth.install(server)  # a call observer: the fast lane stays open (auth.py)
    obs = None
    if args.admin or args.metrics or args.tracing or args.access_log:
        from wirecall.observability.install import Observability

        obs = Observability(server, admin=args.admin, metrics=args.metrics,
                            tracing=args.tracing, tracing_sample=args.tracing_sample,
                            access_log=args.access_log)
    worker = WORKER_ENV in os.environ
    if worker:  # a retiring worker hands its clients over without failing a call
        server.handoff = WORKER_HANDOFF
    listens = args.listen or [DEFAULT_LISTEN]
    inherited = inherited_sockets(len(listens)) if worker else [None] * len(listens)
    urls: list[str] = []
    for listen, sock in zip(listens, inherited, strict=True):  # TLS flags apply per scheme
        share = {"sock": sock} if sock is not None else {"reuse_port": True} if worker else {}
        urls += await server.start(listen, **share, **listen_options(args, listen))
    for u in urls:
        print(f"listening on {u}", flush=True)
    registered = await register_from_args(server, args)
    if registered:
        print(f"registered in {registered}", flush=True)
    if obs is not None:
        admin_url = await obs.start()
        if admin_url:
            print(f"admin on {admin_url}", flush=True)
        if obs.tracing_to:
            print(f"tracing to {obs.tracing_to}", flush=True)
    try:
        await server.serve_forever(handle_signals=True)
    finally:
        if obs is not None:
            await obs.close()
    print("stopped", flush=True)
    return 0


DEFAULT_LISTEN = "tcp://127.0.0.1:1234"
#: ``Server.handoff`` of a worker (seconds): see docs/workers.md
WORKER_HANDOFF = 0.25


async def _supervise(args: argparse.Namespace) -> int:
    """``--workers N``: this process supervises N copies of the same command."""
    from wirecall.workers import serve_workers, share_listeners

    try:
        shared = share_listeners(args.listen or [DEFAULT_LISTEN], args.share)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    urls = shared.urls
    argv: list[str] = []
    raw = list(getattr(args, "raw_argv", None) or sys.argv[1:])
    i = 0
    while i < len(raw):  # the same command without --workers, --listen and --admin
        a = raw[i]
        if a in ("--workers", "--listen", "--admin"):
            i += 2
            continue
        if not a.startswith(("--workers=", "--listen=", "--admin=")):
            argv.append(a)
        i += 1
    for u in urls:
        argv += ["--listen", u]
    if args.admin:  # each worker's own admin on loopback; the supervisor serves args.admin
        argv += ["--admin", "http://127.0.0.1:0"]
    try:
        return await serve_workers(argv, urls, args.workers, shared.fds, args.admin or "")
    finally:
        shared.close()

