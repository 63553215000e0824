"""The ``wirecall`` command: serve, call, list, bench, gen, demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import inspect
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from . import Server, connect
from .errors import RpcError

__all__ = ["main"]


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def load_target(spec: str) -> Any:
    """Import ``module:attr`` (or ``path/to/file.py:attr``)."""
    mod_name, sep, attr = spec.partition(":")
    if not sep or not attr:
        raise SystemExit(f"wirecall: expected MODULE:ATTR, got {spec!r}")
    if mod_name.endswith(".py") or os.sep in mod_name:
        path = os.path.abspath(mod_name)
        s = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
        if s is None or s.loader is None:
            raise SystemExit(f"wirecall: cannot load {path}")
        module = importlib.util.module_from_spec(s)
        s.loader.exec_module(module)
    else:
        sys.path.insert(0, os.getcwd())
        module = importlib.import_module(mod_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SystemExit(f"wirecall: {mod_name} has no attribute {attr!r}") from None
    return obj


def build_server(target: Any, debug: bool = False) -> Server:
    if isinstance(target, Server):
        return target
    server = Server(debug=debug)
    if inspect.isclass(target):
        target = target()
    if callable(target) and not inspect.isfunction(target) and not hasattr(target, "__dict__"):
        target = target()
    server.register(target)
    return server


def _params(text: str | None) -> list[Any] | dict[str, Any]:
    if text is None or text == "":
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"wirecall: the params are not valid JSON: {exc}") from None
    if isinstance(value, (list, dict)):
        return value
    return [value]


def _metadata(items: Sequence[str]) -> dict[str, str]:
    md = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep:
            raise SystemExit(f"wirecall: --metadata wants key=value, got {item!r}")
        md[k] = v
    return md


def _json_out(value: Any) -> str:
    return msgspec.json.encode(value).decode()


# -- commands ------------------------------------------------------------------------------


async def cmd_serve(args: argparse.Namespace) -> int:
    server = build_server(load_target(args.target), args.debug)
    if args.health or args.reflection:  # standard gRPC services, opt-in (docs/grpc.md)
        from .grpc_health import enable_health, enable_reflection

        if args.health:
            enable_health(server)
        if args.reflection:
            enable_reflection(server)
    urls = await server.start(*(args.listen or ["tcp://127.0.0.1:1234"]))
    for u in urls:
        print(f"listening on {u}", flush=True)
    await server.serve_forever(handle_signals=True)
    print("stopped", flush=True)
    return 0


async def cmd_call(args: argparse.Namespace) -> int:
    try:
        client = await connect(args.url, timeout=args.connect_timeout)
    except RpcError as exc:
        print(f"error: {exc.status.name}: {exc.message}", file=sys.stderr)
        return 1
    try:
        result = await client.invoke(
            args.method, _params(args.params), timeout=args.timeout,
            metadata=_metadata(args.metadata),
        )
    except RpcError as exc:
        print(f"error: {exc.status.name}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await client.close()
    print(_json_out(result))
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    try:
        client = await connect(args.url, timeout=args.connect_timeout)
    except RpcError as exc:
        print(f"error: {exc.status.name}: {exc.message}", file=sys.stderr)
        return 1
    try:
        desc = await client.call("rpc.describe", timeout=args.timeout)
    except RpcError as exc:
        print(f"error: {exc.status.name}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await client.close()
    if args.json:
        print(_json_out(desc))
        return 0
    for svc, methods in desc.items():
        print(svc or "(functions)")
        for m in methods:
            ps = ", ".join(
                f"{p['name']}: {p['type']}" + ("" if p["required"] else " = ...")
                for p in m["params"]
            )
            mode = "" if m["mode"] == "unary" else f"  [{m['mode']}]"
            print(f"  {m['name']}({ps}) -> {m['result']}{mode}")
            if m.get("doc"):
                print(f"      {m['doc'].splitlines()[0]}")
    return 0


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


async def cmd_bench(args: argparse.Namespace) -> int:
    params = _params(args.params)
    client = await connect(args.url, timeout=args.connect_timeout, pool_size=args.connections)
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + args.duration
    done = 0

    async def worker() -> None:
        nonlocal errors, done
        call = client.invoke
        perf = time.perf_counter
        while perf() < stop_at:
            t0 = perf()
            try:
                await call(args.method, params, timeout=args.timeout)
            except RpcError:
                errors += 1
            latencies.append(perf() - t0)
            done += 1

    async def progress() -> None:
        use_rich = sys.stderr.isatty() and not args.json
        bar: Any = None
        if use_rich:
            with contextlib.suppress(ImportError):
                from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

                bar = Progress(TextColumn("{task.description}"), BarColumn(),
                               TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                               transient=True)
        start = time.perf_counter()
        if bar is not None:
            with bar:
                tid = bar.add_task(f"bench {args.method}", total=args.duration, rate="")
                while time.perf_counter() < stop_at:
                    await asyncio.sleep(max(0.0, min(0.2, stop_at - time.perf_counter())))
                    el = time.perf_counter() - start
                    bar.update(tid, completed=min(el, args.duration),
                               rate=f"{done / max(el, 1e-9):,.0f} calls/s")
            return
        last = 0
        while time.perf_counter() < stop_at:
            await asyncio.sleep(max(0.0, min(1.0, stop_at - time.perf_counter())))
            if not args.json:
                el = time.perf_counter() - start
                print(f"  {el:5.1f}s  {done - last:8d} calls in the last second", file=sys.stderr)
            last = done

    t0 = time.perf_counter()
    await asyncio.gather(progress(), *(worker() for _ in range(args.concurrency)))
    elapsed = time.perf_counter() - t0
    await client.close()
    latencies.sort()
    report = {
        "method": args.method,
        "concurrency": args.concurrency,
        "connections": args.connections,
        "duration_s": round(elapsed, 3),
        "calls": len(latencies),
        "errors": errors,
        "calls_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(_percentile(latencies, 0.50) * 1e3, 3),
        "p99_ms": round(_percentile(latencies, 0.99) * 1e3, 3),
        "p999_ms": round(_percentile(latencies, 0.999) * 1e3, 3),
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['calls']} calls in {report['duration_s']}s, {report['errors']} errors")
        print(f"throughput: {report['calls_per_s']:,.1f} calls/s")
        print(f"latency: p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms, "
              f"p999 {report['p999_ms']} ms")
    return 0 if errors == 0 else 1


def cmd_gen(args: argparse.Namespace) -> int:
    try:
        gen = importlib.import_module("wirecall.gen")
    except ImportError as exc:
        print(f"wirecall gen needs the grpc extra: pip install 'wirecall[grpc]' ({exc})",
              file=sys.stderr)
        return 1
    rc: int = gen.main([args.proto, "--out", args.out])
    return rc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wirecall", description="wirecall RPC command line")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="serve an object, a class or a Server")
    s.add_argument("target", help="MODULE:ATTR (e.g. wirecall.examples.calculator:Calculator)")
    s.add_argument("--listen", action="append", metavar="URL",
                   help="address to listen on (repeatable; port 0 picks a free port); "
                        "default tcp://127.0.0.1:1234")
    s.add_argument("--debug", action="store_true", help="send tracebacks of handler errors")
    s.add_argument("--health", action="store_true",
                   help="serve grpc.health.v1.Health (grpc_health_probe, load balancers)")
    s.add_argument("--reflection", action="store_true",
                   help="serve gRPC server reflection (grpcurl, grpc_cli)")

    def client_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--timeout", type=float, default=None, help="call timeout in seconds")
        sp.add_argument("--connect-timeout", type=float, default=5.0, help="dial timeout")

    c = sub.add_parser("call", help="call a method and print its JSON result")
    c.add_argument("url")
    c.add_argument("method", help="Service.Method")
    c.add_argument("params", nargs="?", help="JSON: an array (positional), an object (named, "
                   "or the fields of a single struct argument) or a single value")
    c.add_argument("--metadata", "-m", action="append", default=[], metavar="K=V")
    client_opts(c)

    ls = sub.add_parser("list", help="list services, methods and signatures")
    ls.add_argument("url")
    ls.add_argument("--json", action="store_true")
    client_opts(ls)

    b = sub.add_parser("bench", help="load-test one method")
    b.add_argument("url")
    b.add_argument("method")
    b.add_argument("params", nargs="?")
    b.add_argument("--concurrency", "-c", type=int, default=64)
    b.add_argument("--connections", type=int, default=1)
    b.add_argument("--duration", "-d", type=float, default=5.0)
    b.add_argument("--json", action="store_true", help="print one JSON report line")
    client_opts(b)

    g = sub.add_parser("gen", help="generate messages, service base and stub from a .proto")
    g.add_argument("proto")
    g.add_argument("--out", default=".")

    sub.add_parser("demo", help="serve the tutorial's Calculator and call it every way")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "gen":
        return cmd_gen(args)
    if args.command == "demo":
        from .examples import demo

        return demo.main()
    cmd = {"serve": cmd_serve, "call": cmd_call, "list": cmd_list, "bench": cmd_bench}
    try:
        rc: int = _run(cmd[args.command](args))
    except KeyboardInterrupt:
        return 130
    except RpcError as exc:  # dial failures and the like: the status and message, no traceback
        print(f"wirecall: {exc.status.name}: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:  # a port already in use, a socket path we cannot create...
        print(f"wirecall: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except (ValueError, RuntimeError) as exc:  # bad address, missing extra...
        print(f"wirecall: {exc}", file=sys.stderr)
        return 2
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
