#!/usr/bin/env bash
# Set up a fresh machine for wirecall: Debian packages the tests use (when root and missing),
# then a virtualenv in .venv with wirecall and its test extras installed (editable).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  golang-go                               # Go peers built from the tutorial (net/rpc, jsonrpc)
  nginx                                   # tutorial 2.2.3: least_conn in front of two servers
  protobuf-compiler protoc-gen-go protoc-gen-go-grpc   # grpc-go peers
  golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev golang-google-protobuf-dev
  golang-github-gomodule-redigo-dev       # the tutorial's Go Pub/Sub server on Redis
  redis-server                            # pubsub/: Redis Pub/Sub and Streams brokers
  etcd-server etcd-client                 # cluster/ and idgen/: etcd registry and leases
  zookeeper                               # cluster/ and idgen/: ZooKeeper registry
  postgresql                              # txn/ and idgen/: PostgreSQL stores
  chromium                                # observability/: the dashboard in a real browser
  flatbuffers-compiler                    # codec lab: flatc
  iproute2                                # network namespaces + tc netem for loss tests
  openssl                                 # test certificates
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages (run as root to install): ${missing[*]}" >&2
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
