"""Before/after in one run: the same benchmark from two source trees, alternately.

A change that touches a hot path is measured against the tree it started from, on the same
machine, in the same run. Make the "before" tree a git worktree, then::

    git worktree add /tmp/before <commit>
    python benchmarks/ab_trees.py --before /tmp/before --after . --runs 3 \
        -- bench_core.py --rounds 1 --seconds 1

Each run executes ``<tree>/benchmarks/<script> <args>`` with ``PYTHONPATH=<tree>/src``
(before, after, before, after, ...), parses every markdown table row it prints
(``| system | v1 | v2 | ... |``), and prints the median of each cell per tree and the
after/before ratio. Absolute figures drift; the ratio of medians taken in alternation is
what the house rule (>= 0.97x) is judged on.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

NUM = re.compile(r"^-?[\d,]+(?:\.\d+)?$")


def run(tree: Path, script: str, args: list[str]) -> dict[tuple[str, int], float]:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    r = subprocess.run([sys.executable, str(tree / "benchmarks" / script), *args],
                       capture_output=True, text=True, env=env, cwd=tree / "benchmarks",
                       timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"{tree}: {script} failed:\n{r.stderr[-3000:]}")
    cells: dict[tuple[str, int], float] = {}
    for line in r.stdout.splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(parts) < 2:
            continue
        for i, p in enumerate(parts[1:], 1):
            v = p.rstrip("x")
            if NUM.match(v):
                cells[(parts[0], i)] = float(v.replace(",", ""))
    return cells


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", type=Path, required=True, help="tree measured as 'before'")
    ap.add_argument("--after", type=Path, default=Path("."), help="tree measured as 'after'")
    ap.add_argument("--runs", type=int, default=3, help="runs per tree, alternated (default 3)")
    ap.add_argument("bench", nargs=argparse.REMAINDER,
                    help="-- <script in benchmarks/> [its arguments]")
    a = ap.parse_args()
    bench = [x for x in a.bench if x != "--"]
    if not bench:
        ap.error("name the benchmark script after --")
    script, args = bench[0], bench[1:]
    seen: dict[str, dict[tuple[str, int], list[float]]] = {"before": {}, "after": {}}
    for i in range(a.runs):
        for name, tree in (("before", a.before), ("after", a.after)):
            for k, v in run(tree.resolve(), script, args).items():
                seen[name].setdefault(k, []).append(v)
            print(f"run {i + 1}/{a.runs} {name} done", file=sys.stderr, flush=True)
    print(f"{script} {' '.join(args)}: medians of {a.runs} alternated runs per tree\n")
    print("| row | column | before | after | after/before |")
    print("|---|---|---|---|---|")
    for key in seen["after"]:
        if key not in seen["before"]:
            continue
        b = statistics.median(seen["before"][key])
        f = statistics.median(seen["after"][key])
        ratio = f"{f / b:.3f}x" if b else "—"
        print(f"| {key[0]} | {key[1]} | {b:,.2f} | {f:,.2f} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
