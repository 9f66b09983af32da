"""Shared helpers of the benchmark commands: paths, tables, child processes, memory, CPU pinning.

Benchmarks are commands, not timed tests: the machine is shared and noisy, so each command
measures a RATIO inside one run (against a baseline, a bound or a ceiling) and prints it.
Every command takes ``--json PATH`` to write its figures and goal checks for ``run_all.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# BENCH_LAYER=<dir> measures another copy of the library (e.g. the previous version, exported with
# `git archive HEAD layers/common | tar -x -C /tmp/prev`) with the same commands, for a before/after
LAYER = Path(os.environ.get("BENCH_LAYER") or ROOT / "layers" / "common").resolve()
PYTHON = sys.executable

for _p in (str(LAYER), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)


def child_env(layer: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment of a child Python: the library (``layer``, default this one) and the
    repository on its path."""
    env = dict(os.environ)
    layer = Path(layer or LAYER).resolve()
    env["BENCH_LAYER"] = str(layer)
    env["PYTHONPATH"] = os.pathsep.join([str(layer), str(ROOT)])
    env.update(extra)
    return env


def export_revision(rev: str, dest: Path) -> Path:
    """The library (layers/common) as it was at git revision ``rev``, exported under ``dest``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "layers/common"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / "layers" / "common"


# -- output ----------------------------------------------------------------------------------------
def table(rows: Sequence[Sequence[Any]], header: Sequence[str], title: str = "") -> str:
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()

    out = [title] if title else []
    out += [line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]]
    return "\n".join(out)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 0.01:
            return f"{value:.2f}"
        return f"{value:.2g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _numeric(text: str) -> bool:
    t = text.replace(",", "").replace(".", "").replace("x", "").replace("%", "").replace("-", "")
    return t.replace("e", "").isdigit()


class Report:
    """Figures and goal checks of one command (printed as tables, written as JSON for run_all)."""

    def __init__(self, name: str, args: argparse.Namespace):
        self.name = name
        self.args = args
        self.figures: dict[str, Any] = {}
        self.checks: list[dict[str, Any]] = []
        self.started = time.perf_counter()

    def check(self, goal: str, value: float, limit: float, *, unit: str = "", higher_is_better: bool = False,
              note: str = "") -> bool:
        ok = value >= limit if higher_is_better else value <= limit
        self.checks.append({"goal": goal, "value": value, "limit": limit, "unit": unit,
                            "op": ">=" if higher_is_better else "<=", "ok": ok, "note": note})
        return ok

    def print_checks(self) -> None:
        if not self.checks:
            return
        rows = [[c["goal"], f"{_fmt(c['value'])}{c['unit']}", f"{c['op']} {_fmt(c['limit'])}{c['unit']}",
                 "ok" if c["ok"] else "MISSED"] for c in self.checks]
        print()
        print(table(rows, ["goal", "measured", "target", ""], title="Goals"))

    def finish(self) -> int:
        self.print_checks()
        seconds = time.perf_counter() - self.started
        print(f"\n({self.name}: {seconds:.1f} s)")
        if getattr(self.args, "json", None):
            Path(self.args.json).write_text(json.dumps(
                {"name": self.name, "seconds": seconds, "figures": self.figures, "checks": self.checks},
                indent=2, default=str))
        return 0


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", help="also write the figures and goal checks to this file")
    return p


# -- processes -------------------------------------------------------------------------------------
def pin(cpu: int) -> bool:
    """Pin this process to one CPU (a Lambda-sized 1 vCPU); False when not possible."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})
        return True
    except (AttributeError, OSError):
        return False


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time (user + system) of this process, all threads (high resolution)."""
    return time.process_time()


class SimulatorProcess:
    """A vendor simulator in its own process (``bench/_sim_server.py``), pinned to another CPU
    than the sender, so the sender's CPU is measured alone."""

    def __init__(self, vendor: str, *, latency: float = 0.0, cpu: int = 1, **options: Any):
        self.vendor = vendor
        cmd = [PYTHON, str(ROOT / "bench" / "_sim_server.py"), vendor, "--latency", str(latency),
               "--cpu", str(cpu), "--options", json.dumps(options)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env(),
                                     text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"the {vendor} simulator process did not start")
        self.settings: dict[str, Any] = json.loads(line)

    def stats(self) -> dict[str, Any]:
        """Counters of the simulator (requests, messages, its CPU seconds)."""
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run_child(args: list[str], *, timeout: float = 900, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python <args>`` and parse the JSON object its last stdout line holds."""
    proc = subprocess.run([PYTHON, *args], capture_output=True, text=True, timeout=timeout, env=env or child_env())
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@contextmanager
def stopwatch():
    box = {"wall": 0.0, "cpu": 0.0}
    w, c = time.perf_counter(), cpu_seconds()
    try:
        yield box
    finally:
        box["wall"] = time.perf_counter() - w
        box["cpu"] = cpu_seconds() - c
