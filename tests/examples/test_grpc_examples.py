"""The gRPC and streaming examples run and print what they promise."""

from __future__ import annotations

import subprocess
import sys

from support.servers import ROOT


def _run(name: str) -> str:
    r = subprocess.run([sys.executable, str(ROOT / "examples" / name)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_greeter_pubsub_example() -> None:
    out = _run("grpc_greeter_pubsub.py")
    assert "服务端返回 (grpc): Hello, Alice" in out
    assert "服务端返回 (tcp): Hello, Bob" in out
    assert "grpcio client: Hello, grpcio" in out
    assert "Received message from topic topic1: 实时 推送" in out
    assert "example passed" in out


def test_streaming_modes_example() -> None:
    out = _run("streaming_modes.py")
    for scheme in ("tcp", "grpc"):
        assert f"{scheme}: Add=5 Range=[0, 1, 2, 3, 4] Sum=10 Square=[9, 16, 25]" in out


def test_greeter_module_cli() -> None:
    r = subprocess.run([sys.executable, "-m", "wirecall.tutorial.greeter"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "serve grpc://" in r.stdout


def test_wirecall_gen_cli(tmp_path: object) -> None:
    out = str(tmp_path)
    proto = ROOT / "src" / "wirecall" / "tutorial" / "protos" / "helloworld.proto"
    r = subprocess.run([sys.executable, "-m", "wirecall.cli", "gen", str(proto), "--out", out],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    code = (tmp_path / "helloworld_wirecall.py").read_text()  # type: ignore[operator]
    assert "class GreeterBase(ProtoService)" in code
    assert "class GreeterStub" in code
    check = subprocess.run(
        [sys.executable, "-c", "import helloworld_wirecall as m, helloworld_pb2 as pb; "
         "assert m.GreeterBase.__grpc_methods__['SayHello'][0] is pb.HelloRequest"],
        cwd=out, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
