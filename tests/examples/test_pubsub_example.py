"""examples/pubsub_redis.py: Pub/Sub on two wires and Streams at-least-once, on a real Redis."""

from __future__ import annotations

import subprocess
import sys

from support.redis import redis_binary
from support.servers import ROOT


def test_pubsub_redis_example() -> None:
    redis_binary()  # a clear failure naming the package if redis-server is missing
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "pubsub_redis.py")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "subscribed on grpc:// and tcp:// (confirmed live)" in out
    assert out.count("发布到主题 topic1 成功: True") == 3
    assert "grpc subscriber received: 你好 世界 | gRPC 流 | 推送" in out
    assert "tcp subscriber received: 你好 世界 | gRPC 流 | 推送" in out
    assert "worker-1 took job-0" in out
    assert "worker-2 got (claimed after claim_ms, at-least-once): job-0, job-1, job-2, " \
           "job-3, job-4" in out
    assert "replay from 0: job-0, job-1, job-2, job-3, job-4" in out
