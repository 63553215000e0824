"""``wirecall serve MODULE:ATTR [--listen URL]...``: serve an object, a class or a Server."""

from __future__ import annotations

import argparse

from .common import Subparsers, build_server, load_target

__all__ = ["add_parser", "serve"]


def add_parser(sub: Subparsers) -> None:
    s = sub.add_parser("serve", help="serve an object, a class or a Server")
    s.add_argument("target", help="MODULE:ATTR (e.g. wirecall.tutorial.calculator:Calculator)")
    s.add_argument("--listen", action="append", metavar="URL",
                   help="address to listen on (repeatable; port 0 picks a free port); "
                        "default tcp://127.0.0.1:1234")
    s.add_argument("--debug", action="store_true", help="send tracebacks of handler errors")
    s.add_argument("--health", action="store_true",
                   help="serve grpc.health.v1.Health (grpc_health_probe, load balancers)")
    s.add_argument("--reflection", action="store_true",
                   help="serve gRPC server reflection (grpcurl, grpc_cli)")
    s.set_defaults(handler=serve)


async def serve(args: argparse.Namespace) -> int:
    server = build_server(load_target(args.target), args.debug)
    # standard gRPC services, opt-in (docs/grpc.md); imported only when asked for (grpc extra)
    if args.health:
        from wirecall.observability.health import enable_health

        enable_health(server)
    if args.reflection:
        from wirecall.observability.reflection import enable_reflection

        enable_reflection(server)
    urls = await server.start(*(args.listen or ["tcp://127.0.0.1:1234"]))
    for u in urls:
        print(f"listening on {u}", flush=True)
    await server.serve_forever(handle_signals=True)
    print("stopped", flush=True)
    return 0
