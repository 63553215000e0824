"""``wirecall gen FILE.proto --out DIR``: protobuf messages plus a typed service base class and a
typed client stub, from a ``.proto`` file (protoc via grpcio-tools).

For ``helloworld.proto`` it writes ``helloworld_pb2.py`` (+ ``.pyi``) and
``helloworld_wirecall.py`` holding, per service:

* ``GreeterBase``: subclass it and override the methods (``async def SayHello(self, request,
  context) -> HelloReply``; server streams return/yield an ``AsyncIterator``, client streams
  take an ``AsyncIterator`` of requests). Unimplemented methods answer UNIMPLEMENTED.
  ``server.register(MyGreeter())`` serves it on every listener: gRPC with protobuf, and
  wirecall's TCP protocol with the protobuf codec.
* ``GreeterStub(client)``: typed async methods over a ``wirecall.Client`` or a gRPC connection.

:func:`load_proto` does the same into a cache directory at run time and imports the result.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .context import Context
from .errors import Unimplemented

if TYPE_CHECKING:
    from .server import Server

__all__ = ["ProtoService", "alias_full_names", "gen_main", "generate", "load_proto", "main",
           "service_base", "standard_messages", "stream_call", "unary_call"]

#: the ``.proto`` files of the standard gRPC services wirecall serves (health, reflection)
PROTOS = Path(__file__).parent / "protos"


class ProtoService:
    """Base of generated service classes: carries the gRPC names and message classes.

    ``__grpc_service__`` is the full name (``helloworld.Greeter``), ``__wirecall_service__``
    the registered name (``Greeter``), ``__grpc_methods__`` maps each method to
    ``(request class, reply class, mode)``. A subclass method written without annotations
    gets the base method's (so the transport still knows the modes and types).
    """

    __grpc_service__: str = ""
    __wirecall_service__: str = ""
    __grpc_methods__: dict[str, tuple[Any, Any, str]] = {}  # noqa: RUF012
    __grpc_file__: Any = None  # the FileDescriptor (reflection)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        import inspect
        import typing

        from .codec import protobuf  # noqa: F401  (registers codec id 3 for tcp://)

        for name in cls.__grpc_methods__:
            impl = cls.__dict__.get(name)
            if impl is None or not inspect.isfunction(impl):
                continue
            proto = next(
                (b.__dict__[name] for b in cls.__mro__[1:]
                 if name in b.__dict__ and getattr(b.__dict__[name], "__annotations__", None)),
                None,
            )
            if proto is None:
                continue
            # Missing annotations come from the generated base (by position); the context
            # parameter is always the Context, whatever the override wrote (``context: Any``).
            hints = typing.get_type_hints(proto)
            bp = list(inspect.signature(proto).parameters)
            ip = list(inspect.signature(impl).parameters)
            ann = dict(impl.__annotations__)
            for b, i in zip(bp, ip, strict=False):
                if b in hints and (i not in ann or hints[b] is Context):
                    ann[i] = hints[b]
            if "return" in hints and "return" not in ann:
                ann["return"] = hints["return"]
            impl.__annotations__ = ann


def unimplemented(method: str) -> Unimplemented:
    return Unimplemented(message=f"method {method} is not implemented")


async def unary_call(
    client: Any, method: str, request: Any, result_type: Any,
    timeout: float | None, metadata: Mapping[str, str] | None,
) -> Any:
    """One unary call through a ``wirecall.Client`` or a ``ClientConnection``."""
    if hasattr(client, "invoke"):
        kw: dict[str, Any] = {"metadata": metadata, "result_type": result_type}
        if timeout is not None:
            kw["timeout"] = timeout
        return await client.invoke(method, [request], **kw)
    return await client.call(method, [request], timeout, metadata, result_type)


def stream_call(
    client: Any, method: str, request: Any, result_type: Any,
    timeout: float | None, metadata: Mapping[str, str] | None,
) -> Any:
    """Open a streaming call (``request``: one message, an (async) iterable, or None)."""
    params = [request] if request is not None and not isinstance(request, AsyncIterable) \
        and not hasattr(request, "__next__") else request
    if hasattr(client, "open_stream"):
        return client.open_stream(method, params, timeout, metadata, result_type)
    return client.stream(method, params, timeout=timeout, metadata=metadata,
                         result_type=result_type)


# -- standard gRPC services, built at run time ------------------------------------------------


def standard_messages(official: str, proto: str) -> Any:
    """The message module of a standard gRPC service: grpcio's own (``official``, from
    ``grpcio-health-checking``, ``grpcio-reflection``) when installed, else ours (``proto``, a
    file in :data:`PROTOS`). Both define the same protobuf names, so one process can hold only
    one of them in the default descriptor pool: taking grpcio's when it is there lets
    applications import it alongside wirecall."""
    try:
        return importlib.import_module(official)
    except Exception:  # not installed, or built for another protobuf runtime
        return load_proto(PROTOS / proto)[0]


def service_base(pb: Any, full: str, methods: dict[str, tuple[str, str, str]]) -> Any:
    """A :class:`ProtoService` base for service ``full`` whose messages come from ``pb``;
    ``methods``: name -> (request message, reply message, mode)."""
    return type(f"{full.rpartition('.')[2]}Base", (ProtoService,), {
        "__grpc_service__": full,
        "__wirecall_service__": full.rpartition(".")[2],
        "__grpc_file__": pb.DESCRIPTOR,
        "__grpc_methods__": {
            m: (getattr(pb, req), getattr(pb, res), mode) for m, (req, res, mode) in methods.items()
        },
    })


def alias_full_names(server: Server, impl: ProtoService) -> None:
    """Make ``pkg.Service.Method`` resolve too (the registry keys by ``Service.Method``)."""
    full = type(impl).__grpc_service__
    short = type(impl).__wirecall_service__
    for m in type(impl).__grpc_methods__:
        spec = server.registry.methods.get(f"{short}.{m}")
        if spec is not None and getattr(spec.func, "__self__", None) is impl:
            server.registry.methods.setdefault(f"{full}.{m}", spec)


# -- code generation --------------------------------------------------------------------------

_MODES = {
    (False, False): "unary",
    (False, True): "server_stream",
    (True, False): "client_stream",
    (True, True): "bidi_stream",
}


def _protoc(proto: Path, out: Path, includes: list[Path]) -> bytes:
    try:
        import grpc_tools
        from grpc_tools import protoc
    except ModuleNotFoundError:
        raise RuntimeError(
            "wirecall gen needs grpcio-tools: pip install 'wirecall[grpc]'"
        ) from None
    std = Path(grpc_tools.__file__).parent / "_proto"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as td:
        desc = Path(td) / "desc.pb"
        args = ["protoc", f"-I{proto.parent}", *[f"-I{i}" for i in includes], f"-I{std}",
                f"--python_out={out}", f"--pyi_out={out}", f"--descriptor_set_out={desc}",
                "--include_imports", str(proto)]
        rc = protoc.main(args)
        if rc != 0:
            raise RuntimeError(f"protoc failed on {proto} (exit {rc}); see the messages above")
        return desc.read_bytes()


def _py_type(type_name: str, local_pkg: str, msg_modules: dict[str, str]) -> str:
    full = type_name.lstrip(".")
    mod = msg_modules.get(full)
    short = full[len(local_pkg) + 1:] if local_pkg and full.startswith(local_pkg + ".") else full
    if mod is None:
        return "_pb." + short.replace(".", ".")
    return f"{mod}.{full.rpartition('.')[2]}"


def _render(fd: Any, pb_module: str, deps: dict[str, str], msg_modules: dict[str, str]) -> str:
    pkg = fd.package
    lines = [
        f'"""Generated by ``wirecall gen`` from {fd.name}. Do not edit."""',
        "",
        "from __future__ import annotations",
        "",
        "from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping",
        "from typing import Any",
        "",
        "from wirecall.context import Context",
        "from wirecall.gen import ProtoService, stream_call, unary_call, unimplemented",
        "from wirecall.streaming import ClientStream",
        "",
        "try:",
        f"    from . import {pb_module} as _pb",
    ]
    for mod, alias in deps.items():
        lines.append(f"    from . import {mod} as {alias}")
    lines += ["except ImportError:", f"    import {pb_module} as _pb  # type: ignore[no-redef]"]
    for mod, alias in deps.items():
        lines.append(f"    import {mod} as {alias}  # type: ignore[no-redef]")
    lines += ["", "__all__: list[str] = []", ""]
    for svc in fd.service:
        full = f"{pkg}.{svc.name}" if pkg else svc.name
        base = [
            "",
            f"class {svc.name}Base(ProtoService):",
            f'    """Service ``{full}``: subclass and override the methods."""',
            "",
            f'    __grpc_service__ = "{full}"',
            f'    __wirecall_service__ = "{svc.name}"',
            "    __grpc_file__ = _pb.DESCRIPTOR",
        ]
        table = []
        stub = [
            "",
            f"class {svc.name}Stub:",
            f'    """Typed client for ``{full}`` over a wirecall Client or gRPC connection."""',
            "",
            "    def __init__(self, client: Any) -> None:",
            "        self._client = client",
        ]
        for m in svc.method:
            req = _py_type(m.input_type, pkg, msg_modules)
            res = _py_type(m.output_type, pkg, msg_modules)
            mode = _MODES[(m.client_streaming, m.server_streaming)]
            table.append(f'        "{m.name}": ({req}, {res}, "{mode}"),')
            arg = f"request: {req}" if not m.client_streaming else \
                f"requests: AsyncIterator[{req}]"
            ret = f"AsyncIterator[{res}]" if m.server_streaming else res
            base += [
                "",
                f"    async def {m.name}(self, {arg}, context: Context) -> {ret}:",
                f'        raise unimplemented("{full}.{m.name}")',
            ]
            kw = "*, timeout: float | None = None, metadata: Mapping[str, str] | None = None"
            if mode == "unary":
                stub += [
                    "",
                    f"    async def {m.name}(self, request: {req}, {kw}) -> {res}:",
                    f"        return await unary_call(self._client, \"{full}.{m.name}\", "
                    f"request, {res}, timeout, metadata)  # type: ignore[no-any-return]",
                ]
            else:
                if m.client_streaming:
                    sig = (f"requests: AsyncIterable[{req}] | Iterable[{req}] | None = None, "
                           f"{kw}")
                    val = "requests"
                else:
                    sig = f"request: {req}, {kw}"
                    val = "request"
                stub += [
                    "",
                    f"    def {m.name}(self, {sig}) -> ClientStream[{res}]:",
                    f"        return stream_call(self._client, \"{full}.{m.name}\", {val}, "
                    f"{res}, timeout, metadata)  # type: ignore[no-any-return]",
                ]
        base.insert(8, "    __grpc_methods__ = {  # noqa: RUF012")
        base[9:9] = [*table, "    }"]
        lines += [*base, "", *stub, "", f'__all__ += ["{svc.name}Base", "{svc.name}Stub"]', ""]
    return "\n".join(lines) + "\n"


def generate(proto: str | os.PathLike[str], out: str | os.PathLike[str],
             includes: list[str] | None = None) -> list[Path]:
    """Compile ``proto`` into ``out``; return the files written."""
    from google.protobuf import descriptor_pb2

    proto_p = Path(proto).resolve()
    out_p = Path(out)
    raw = _protoc(proto_p, out_p, [Path(i) for i in includes or []])
    fds = descriptor_pb2.FileDescriptorSet.FromString(raw)
    target = fds.file[-1]
    msg_modules: dict[str, str] = {}
    deps: dict[str, str] = {}
    for fd in fds.file[:-1]:
        mod = fd.name[:-len(".proto")].replace("/", ".").replace("-", "_") + "_pb2"
        alias = "_dep_" + mod.replace(".", "_")
        prefix = fd.package + "." if fd.package else ""
        used = False
        for mt in fd.message_type:
            msg_modules[prefix + mt.name] = alias
            used = True
        if used:
            deps[mod] = alias
    pb_module = Path(target.name).stem + "_pb2"
    stem = Path(target.name).stem
    written = [out_p / f"{pb_module}.py", out_p / f"{pb_module}.pyi"]
    if target.service:
        dst = out_p / f"{stem}_wirecall.py"
        dst.write_text(_render(target, pb_module, deps, msg_modules), encoding="utf-8")
        written.append(dst)
    return written


_CACHE = Path(os.environ.get("WIRECALL_PROTO_CACHE", "") or
              Path(tempfile.gettempdir()) / f"wirecall-proto-{os.getuid()}")


def load_proto(proto: str | os.PathLike[str]) -> tuple[ModuleType, ModuleType | None]:
    """Generate (once, cached by content) and import ``proto``; returns (pb2, wirecall module).

    The cache directory (``$WIRECALL_PROTO_CACHE`` or a per-user temp dir) goes on sys.path,
    as protoc's Python output imports its dependencies by top-level name.
    """
    p = Path(proto).resolve()
    digest = hashlib.sha256(p.read_bytes() + str(p).encode()).hexdigest()[:16]
    out = _CACHE / digest
    stem = p.stem
    if not (out / f"{stem}_pb2.py").exists():
        _CACHE.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=_CACHE))
        generate(p, tmp)
        try:
            os.replace(tmp, out)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    pb = importlib.import_module(f"{stem}_pb2")
    wc = None
    if (out / f"{stem}_wirecall.py").exists():
        wc = importlib.import_module(f"{stem}_wirecall")
    return pb, wc


def gen_main(argv: list[str] | None = None) -> int:
    """Entry point for ``wirecall gen FILE.proto [FILE.proto ...] --out DIR [-I DIR]``."""
    import argparse

    ap = argparse.ArgumentParser(prog="wirecall gen", description=__doc__.split("\n")[0])
    ap.add_argument("protos", nargs="+", help=".proto files")
    ap.add_argument("--out", "-o", default=".", help="output directory (default: .)")
    ap.add_argument("-I", "--include", action="append", default=[], help="import path")
    ns = ap.parse_args(argv)
    for p in ns.protos:
        try:
            for f in generate(p, ns.out, ns.include):
                print(f)
        except RuntimeError as exc:
            print(f"wirecall gen: {exc}", file=sys.stderr)
            return 1
    return 0


main = gen_main  # what ``wirecall gen`` (cli.py) calls


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(gen_main())
