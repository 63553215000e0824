"""The hostile-peer suite as a table: for each attack, what the server's RSS did and what the
well-behaved client saw (docs/limits.md, issue #18).

Runs ``tests/hostile`` (without the fuzz tests unless ``--fuzz``) against one or more source
trees (``PYTHONPATH=<tree>/src``; the tests are this tree's), with ``HOSTILE_REPORT`` set so
``tests/hostile/peers.py`` notes the server's RSS (at start, peak, at the end) and each
well-behaved client's calls, failures and p99. Prints one markdown table per tree::

    python benchmarks/hostile_report.py --tree /tmp/before --tree .

Timing-sensitive figures (p99) depend on the machine's load: say when it was shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


def run(tree: Path, fuzz: bool, select: str) -> tuple[dict[str, str], dict[str, list[Any]]]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.jsonl"
        junit = Path(tmp) / "junit.xml"
        env = dict(os.environ, PYTHONPATH=str(tree.resolve() / "src"),
                   HOSTILE_REPORT=str(report))
        k = select or ("" if fuzz else "not fuzz")
        cmd = [sys.executable, "-m", "pytest", "tests/hostile", "-q", "-p", "no:cacheprovider",
               "--timeout", "300", f"--junitxml={junit}"] + (["-k", k] if k else [])
        subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
        outcomes: dict[str, str] = {}
        for case in ET.parse(junit).getroot().iter("testcase"):
            name = case.get("name", "")
            failed = case.find("failure") is not None or case.find("error") is not None
            outcomes[name] = "FAIL" if failed else (
                "skip" if case.find("skipped") is not None else "pass")
        rows: dict[str, list[Any]] = defaultdict(list)
        if report.exists():
            for line in report.read_text().splitlines():
                obs = json.loads(line)
                rows[obs.pop("test").split("::")[-1]].append(obs)
        return outcomes, rows


def table(outcomes: dict[str, str], rows: dict[str, list[Any]]) -> str:
    out = ["| test | result | server RSS peak over start (MiB) | RSS at end over start (MiB) "
           "| well-behaved calls | failed | p99 (ms) |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for name in sorted(outcomes):
        obs = rows.get(name, [])
        srv = [o for o in obs if "peak_rss" in o]
        probes = [o for o in obs if "probe" in o]
        peak = max(((o["peak_rss"] - o["start_rss"]) / MiB for o in srv), default=None)
        end = max(((o["end_rss"] - o["start_rss"]) / MiB for o in srv if o["end_rss"]),
                  default=None)
        killed = any(o["killed_for_rss"] for o in srv)
        calls = sum(o["calls"] for o in probes)
        failed = sum(o["failures"] for o in probes)
        p99 = max((o["p99"] * 1000 for o in probes), default=None)

        def f(x: float | None) -> str:
            return "" if x is None else f"{x:,.0f}"

        out.append(f"| {name} | {outcomes[name]} | {f(peak)}{' (killed)' if killed else ''} | "
                   f"{'dead' if killed else f(end)} | {calls or ''} | "
                   f"{failed if probes else ''} | {f(p99)} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tree", type=Path, action="append", help="source tree (repeatable)")
    ap.add_argument("--fuzz", action="store_true", help="include the fuzz tests")
    ap.add_argument("-k", default="", help="pytest -k selection")
    a = ap.parse_args()
    for tree in a.tree or [ROOT]:
        outcomes, rows = run(tree, a.fuzz, a.k)
        print(f"\n### {tree}\n")
        print(table(outcomes, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
