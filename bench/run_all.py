"""Run every benchmark and print a summary of the goals (`make bench`).

    .venv/bin/python bench/run_all.py [--quick] [--only aep_throughput,memory] [--strict] [--json-dir DIR]

Each benchmark runs as its own process (``bench/<name>.py --json ...``) and prints its tables;
the summary lists every goal with the measured figure. Default (what `make bench` runs): 1 GB
memory runs for both vendors, 5.5 minutes on 2 CPUs in the last full run (bench/RESULTS.md).
``--quick``: a smoke run (100 MB memory runs, fewer configurations, no layer download).
Exit code: 1 when a benchmark failed to run (or, with ``--strict``, when a goal was missed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import PYTHON, ROOT, child_env, table

BENCHMARKS = [
    # (name, default arguments, --quick arguments)
    ("polling_cost", [], []),
    ("cold_start", [], ["--repeat", "3", "--no-layer-size"]),
    ("aep_throughput", [], ["--quick", "--records", "60000"]),
    ("cirrus_throughput", [], ["--records", "1500", "--cpu-mb", "10"]),
    ("memory", ["--small-mb", "10", "--large-mb", "1024"], ["--small-mb", "10", "--large-mb", "100"]),
    ("gzip_memory", ["--small-mb", "10", "--large-mb", "400"], ["--small-mb", "10", "--large-mb", "50"]),
    ("local_run", [], ["--imports", "3", "--no-demo", "--cli-runs", "2"]),
    ("vendor_guard", [], ["--uploads", "12", "--outage-uploads", "9", "--aep-records", "2000"]),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller runs of every benchmark (a smoke run)")
    p.add_argument("--only", help="comma-separated benchmark names")
    p.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    p.add_argument("--json-dir", help="keep each benchmark's JSON figures in this folder")
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else [b[0] for b in BENCHMARKS]
    unknown = set(names) - {b[0] for b in BENCHMARKS}
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; the names: "
                f"{', '.join(b[0] for b in BENCHMARKS)}")
    started = time.perf_counter()
    out_dir = Path(args.json_dir) if args.json_dir else Path(tempfile.mkdtemp(prefix="bench-json-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    summary, failed, timings = [], [], []
    for name, default, quick in BENCHMARKS:
        if name not in names:
            continue
        extra = quick if args.quick else default
        json_path = out_dir / f"{name}.json"
        cmd = [PYTHON, str(ROOT / "bench" / f"{name}.py"), *extra, "--json", str(json_path)]
        print(f"\n=== {name}: {' '.join(['bench/' + name + '.py', *extra])}", flush=True)
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=child_env(), cwd=str(ROOT))
        timings.append([name, time.perf_counter() - t])
        if proc.returncode != 0 or not json_path.exists():
            failed.append(name)
            summary.append([name, "the benchmark failed to run", "-", "-", "ERROR", ""])
            continue
        for c in json.loads(json_path.read_text())["checks"]:
            value = f"{c['value']:,}{c['unit']}" if isinstance(c["value"], int) else f"{c['value']}{c['unit']}"
            target = f"{c['op']} {c['limit']}{c['unit']}"
            summary.append([name, c["goal"], value, target, "ok" if c["ok"] else "MISSED", c.get("note", "")])
    print()
    print(table(summary, ["benchmark", "goal", "measured", "target", "", "note"], title="Summary of the goals"))
    print()
    print(table(timings, ["benchmark", "seconds"]))
    print(f"\nall benchmarks: {time.perf_counter() - started:.0f} s; JSON figures in {out_dir}")
    missed = [row for row in summary if row[4] == "MISSED"]
    if failed:
        return 1
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
