"""Without their extras, the avro and flatbuffers codecs and the quic:// transport fail at
use with one line naming the pip command (checked in a fresh interpreter where the packages
are made unimportable)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
for mod in ("fastavro", "flatbuffers", "aioquic"):
    sys.modules[mod] = None  # import fails as if not installed
from wirecall import codec
from wirecall.transport.base import load_transport
for name in ("avro", "flatbuffers"):
    try:
        codec.get(name)
    except ValueError as exc:
        print(exc)
try:
    load_transport("quic")
except RuntimeError as exc:
    print(exc)
print(codec.get("msgpack").name)  # the rest still works
"""


def test_missing_extras_name_their_pip_command() -> None:
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                       timeout=60, check=True)
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "the avro codec needs 'fastavro': pip install 'wirecall[avro]'"
    assert lines[1] == ("the flatbuffers codec needs 'flatbuffers': "
                        "pip install 'wirecall[flatbuffers]'")
    assert "pip install 'wirecall[quic]'" in lines[2] and "aioquic" in lines[2]
    assert lines[3] == "msgpack"
