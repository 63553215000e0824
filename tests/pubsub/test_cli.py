"""``wirecall pubsub publish|subscribe`` as a shell runs them (subprocesses), against a
wirecall PubSub server on Redis and against Redis directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from support.redis import RedisServer
from support.servers import ROOT, free_port


def cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "wirecall.cli", "pubsub", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def lines(proc: subprocess.Popen[str], timeout: float = 20) -> list[dict[str, object]]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return [json.loads(x) for x in out.splitlines()]


@pytest.fixture
def pubsub_server(redis_server: RedisServer) -> Iterator[str]:
    url = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "wirecall.tutorial.pubsub", "serve", url,
                             redis_server.url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on"), proc.stderr.read() if proc.stderr else line
    yield url
    proc.kill()
    proc.wait(5)


def test_subscribe_and_publish_through_a_server(pubsub_server: str) -> None:
    sub = cli("subscribe", pubsub_server, "a", "b", "--count", "3")
    assert sub.stdout is not None
    assert [json.loads(sub.stdout.readline()) for _ in range(2)] == [
        {"subscribed": "a"}, {"subscribed": "b"}]  # printed once live: publishing is safe
    assert lines(cli("publish", pubsub_server, "a", "你好", "世界")) == [
        {"topic": "a", "success": True}] * 2
    assert lines(cli("publish", pubsub_server, "b", "x")) == [{"topic": "b", "success": True}]
    assert lines(sub) == [{"topic": "a", "message": "你好"}, {"topic": "a", "message": "世界"},
                          {"topic": "b", "message": "x"}]


def test_straight_to_redis_and_streams_replay(redis_server: RedisServer) -> None:
    sub = cli("subscribe", redis_server.url, "n.*", "--pattern", "--count", "1")
    assert sub.stdout is not None
    assert json.loads(sub.stdout.readline()) == {"subscribed": "n.*"}
    assert lines(cli("publish", redis_server.url, "n.1", "hi")) == [
        {"topic": "n.1", "success": True, "receivers": 1}]
    assert lines(sub) == [{"topic": "n.*", "message": "hi"}]
    streams = redis_server.url.replace("redis://", "redis+streams://")
    lines(cli("publish", streams, "log", "one", "two"))
    assert lines(cli("subscribe", streams, "log", "--from", "0", "--count", "2")) == [
        {"subscribed": "log"}, {"topic": "log", "message": "one"},
        {"topic": "log", "message": "two"}]


def test_bad_options_are_one_line_errors(redis_server: RedisServer) -> None:
    streams = redis_server.url.replace("redis://", "redis+streams://")
    p = cli("subscribe", streams, "log", "--from", "yesterday", "--count", "1")
    _, err = p.communicate(timeout=20)
    assert p.returncode != 0
    assert err.strip().count("\n") == 0 and "start" in err, err
    p = cli("subscribe", streams, "log", "--from", "0", "--group", "g")
    _, err = p.communicate(timeout=20)
    assert p.returncode == 2 and "--from" in err, err
