"""Build the tutorial's grpc-go programs (Greeter, PubSub) offline and run them.

GOPATH mode with Debian's packages: ``protoc`` + ``protoc-gen-go`` + ``protoc-gen-go-grpc``
generate the ``.pb.go`` files at test time into a GOPATH under ``tests/interop/_build/``
(``helloworld/proto/helloworld``, ``pubsub/proto/pubsub``, the import paths of the
tutorial); ``golang-google-grpc-dev`` and ``golang-github-golang-protobuf-1-5-dev`` supply
the libraries under ``/usr/share/gocode``. Binaries are cached by a hash of their sources.
Missing tools fail with the Debian package to install (never a skip).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from pathlib import Path

from interop import goharness

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PROTOS = {"helloworld": ROOT / "src" / "wirecall" / "tutorial" / "protos" / "helloworld.proto",
          "pubsub": ROOT / "src" / "wirecall" / "pubsub" / "pubsub.proto"}
BUILD = HERE.parent / "_build" / "grpcgo"
PROGRAMS = {
    "greeter_server": "helloworld", "greeter_client": "helloworld",
    "pubsub_server": "pubsub", "pubsub_publisher": "pubsub", "pubsub_subscriber": "pubsub",
}
_lock = threading.Lock()
_built: dict[str, Path] = {}


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} is needed for the grpc-go interop tests: "
                           f"apt-get install -y {package}")
    return path


def _check_libs() -> None:
    for rel, pkg in (("google.golang.org/grpc", "golang-google-grpc-dev"),
                     ("google.golang.org/protobuf", "golang-google-protobuf-dev"),
                     ("github.com/golang/protobuf", "golang-github-golang-protobuf-1-5-dev"),
                     ("github.com/gomodule/redigo", "golang-github-gomodule-redigo-dev")):
        if not (Path("/usr/share/gocode/src") / rel).is_dir():
            raise RuntimeError(f"Go package {rel} is missing: apt-get install -y {pkg}")


def _generate(gopath: Path) -> None:
    protoc = _need("protoc", "protobuf-compiler")
    _need("protoc-gen-go", "protoc-gen-go")
    _need("protoc-gen-go-grpc", "protoc-gen-go-grpc")
    for name, pkg in (("helloworld", "helloworld/proto/helloworld"),
                      ("pubsub", "pubsub/proto/pubsub")):
        dst = gopath / "src"
        dst.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [protoc, f"-I{PROTOS[name].parent}", f"--go_out={dst}", f"--go-grpc_out={dst}",
             f"--go_opt=M{name}.proto={pkg}", f"--go-grpc_opt=M{name}.proto={pkg}",
             f"{name}.proto"],
            check=True, capture_output=True, text=True, timeout=60,
        )


def build(prog: str) -> Path:
    """Build one program (cached by the hash of its source, the protos and the toolchain)."""
    with _lock:
        if prog in _built:
            return _built[prog]
        go = goharness.go_binary()
        _check_libs()
        src = HERE / prog / "main.go"
        h = hashlib.sha256(src.read_bytes())
        for p in sorted(PROTOS.values()):
            h.update(p.read_bytes())
        digest = h.hexdigest()[:16]
        exe = BUILD / "bin" / f"{prog}-{digest}"
        if not exe.exists():
            gopath = BUILD / f"gopath-{digest}"
            if not (gopath / "src" / "pubsub" / "proto").exists():
                _generate(gopath)
            pdir = gopath / "src" / PROGRAMS[prog] / "cmd" / prog
            pdir.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, pdir / "main.go")
            env = dict(os.environ, GO111MODULE="off", CGO_ENABLED="0", GOFLAGS="",
                       GOPATH=f"/usr/share/gocode:{gopath}",
                       GOCACHE=str(BUILD / "gocache"))
            exe.parent.mkdir(parents=True, exist_ok=True)
            tmp = exe.with_suffix(".tmp")
            res = subprocess.run([go, "build", "-o", str(tmp), "."], cwd=pdir, env=env,
                                 capture_output=True, text=True, timeout=600)
            if res.returncode != 0:
                raise RuntimeError(f"go build {prog} failed:\n{res.stderr}")
            tmp.replace(exe)
        _built[prog] = exe
        return exe


def start(prog: str, *args: str, timeout: float = 20) -> goharness.GoServer:
    """Start a Go server program; it prints {"listen": "host:port"} first."""
    exe = build(prog)
    proc = subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line: list[str] = []
    t = threading.Thread(target=lambda: line.append(proc.stdout.readline()  # type: ignore
                                                    ), daemon=True)
    t.start()
    t.join(timeout)
    if not line or not line[0]:
        proc.kill()
        raise RuntimeError(f"{prog} did not report its address: {proc.stderr.read()}")  # type: ignore
    import json

    return goharness.GoServer(proc, json.loads(line[0])["listen"])


def popen(prog: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(build(prog)), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
