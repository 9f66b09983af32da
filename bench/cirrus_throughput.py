"""Cirrus Shield batch throughput, and the CPU cost per record of the connector against lxml's own
iterparse speed on the same file (the floor: reading the XML at all).

    .venv/bin/python bench/cirrus_throughput.py [--records 2500] [--latency 0.1] [--cpu-mb 20] [--previous REV]

Part 1: records per second to the Cirrus simulator (its own process) answering each DataAction
call after 100 ms, against the bound concurrency x batch_size / latency (as shipped one batch at a
time; the exactly-once cursor marks every batch in flight); each call's time is split into the
latency, the sender's CPU and the rest (the simulator's own work, the transport). Part 2: CPU microseconds per
record without a network (a session that answers at once with a canned DataAction answer), split
into validate (the submit step's local checks) and sending (read, parse, serialize, form-encode,
read the answer), each against iterparse; each is the best of ``--cpu-repeat`` fresh processes
(iterparse too), each process warmed up on a small file first so the figure is per record, not the
first call's lazy imports (bench/cold_start.py counts those). ``--previous REV`` also measures the
library of that git revision, in the same run.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from _common import Report, SimulatorProcess, cpu_seconds, export_revision, parser, pin, table
from _drive import run_import_child
from _files import write_cirrus


def iterparse_cpu(path: Path) -> tuple[float, int]:
    """CPU seconds of lxml iterparse over the file, clearing as it goes (the floor), and the records."""
    from lxml import etree

    start, n = cpu_seconds(), 0
    for _event, elem in etree.iterparse(str(path), events=("end",), tag="Account"):
        n += 1
        parent = elem.getparent()
        elem.clear(keep_tail=True)
        while elem.getprevious() is not None:
            del parent[0]
    return cpu_seconds() - start, n


CONCURRENT = {"batch_size": 50, "concurrency": 4}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=2500, help="records of the HTTP runs (default 2,500)")
    p.add_argument("--latency", type=float, default=0.1, help="simulator latency per call, seconds")
    p.add_argument("--cpu-mb", type=float, default=20, help="file size of the CPU measurement, MB")
    p.add_argument("--checkpoint-ms", type=float, default=10,
                   help="emulated DynamoDB checkpoint write of the 'with checkpoint writes' row (ms)")
    p.add_argument("--previous", metavar="REV", help="also measure the library of this git revision")
    p.add_argument("--cpu-repeat", type=int, default=3, help="runs of each CPU measurement (the best counts)")
    args = p.parse_args(argv)
    report = Report("cirrus_throughput", args)
    pin(0)
    base = {"safety_margin_seconds": 5, "timeout_seconds": 30,
            "defaults": {"action": "upsert", "matching_field": "Name"}}
    with tempfile.TemporaryDirectory(prefix="bench-cirrus-") as tmp:
        layers: list[tuple[str, Path | None]] = [("", None)]
        if args.previous:
            layers.insert(0, (f" [{args.previous}]", export_revision(args.previous, Path(tmp))))
        # -- part 1: against the simulator ---------------------------------------------------------
        small = Path(tmp) / "accounts.xml"
        rows, runs = [], []
        configs = [("as shipped: batch_size 10", {}, 0.0),
                   (f"batch_size 10, checkpoint writes of {args.checkpoint_ms:.0f} ms", {}, args.checkpoint_ms / 1000),
                   ("batch_size 50", {"batch_size": 50}, 0.0),
                   ("batch_size 200", {"batch_size": 200}, 0.0),
                   ("concurrency 4, batch_size 50", {"batch_size": 50, "concurrency": 4}, 0.0),
                   (f"concurrency 4, batch_size 50, checkpoint writes of {args.checkpoint_ms:.0f} ms",
                    {"batch_size": 50, "concurrency": 4}, args.checkpoint_ms / 1000)]
        sizes = {small: write_cirrus(small, args.records * 262)}
        # concurrency 4 sends 4x as fast: an 8x file keeps the start-up (sign-in) and the last round a small share
        larger = Path(tmp) / "accounts-x8.xml"
        sizes[larger] = write_cirrus(larger, args.records * 8 * 262)
        with SimulatorProcess("cirrus", latency=args.latency, cpu=1) as sim:
            for label, overrides, checkpoint_s in configs:
                for suffix, layer in layers:
                    if "concurrency" in overrides and layer is not None:
                        continue  # the previous library has no concurrency
                    path = larger if "concurrency" in overrides else small
                    n = sizes[path]
                    doc = {**sim.settings, **base, "batch_size": 10, **overrides}
                    sim_cpu0 = sim.stats()["cpu_seconds"]
                    r = run_import_child("cirrus", doc, str(path), layer=layer, cpu=0,
                                         checkpoint_seconds=checkpoint_s)
                    sim_cpu = sim.stats()["cpu_seconds"] - sim_cpu0
                    assert r["counts"]["accepted"] == n, (label, r["counts"])
                    rate = n / r["wall"]
                    bound = doc.get("concurrency", 1) * doc["batch_size"] / args.latency
                    calls = r["counts"]["batches"]
                    ms_call = r["wall"] / calls * 1e3
                    cpu_call = r["cpu"] / calls * 1e3
                    fig = {"config": label + suffix, "records": n, "wall": r["wall"], "rate": rate, "bound": bound,
                           "rate_over_bound": rate / bound, "calls": calls, "ms_per_call": ms_call,
                           "sender_cpu_ms_per_call": cpu_call, "simulator_cpu_ms_per_call": sim_cpu / calls * 1e3,
                           "checkpoints": r["checkpoints"], "cpu_us_per_record": r["cpu"] / n * 1e6}
                    runs.append(fig)
                    rows.append([label + suffix, r["wall"], rate, bound, f"{rate / bound:.2f}", calls, ms_call,
                                 cpu_call, sim_cpu / calls * 1e3, ms_call - args.latency * 1e3 - cpu_call,
                                 r["checkpoints"], r["cpu"] / n * 1e6])
        print(table(rows, ["configuration", "wall s", "rec/s", "bound rec/s", "/bound", "calls", "ms/call",
                           "sender CPU ms/call", "sim CPU ms/call", "other ms/call", "checkpoints", "CPU us/rec"],
                    title=f"Cirrus Shield: {sizes[small]:,} records ({sizes[larger]:,} at concurrency 4), "
                          f"simulator latency {args.latency * 1000:.0f} ms per call "
                          "(bound = concurrency x batch_size / latency; other = ms/call - latency - sender CPU)"))
        report.figures["http"] = runs
        # -- part 2: CPU per record ----------------------------------------------------------------
        big = Path(tmp) / "accounts-cpu.xml"
        m = write_cirrus(big, int(args.cpu_mb * 1e6))
        floors = [iterparse_cpu(big) for _ in range(args.cpu_repeat)]
        floor_cpu, counted = min(floors)
        assert counted == m

        def best_run(settings_doc: dict, layer: Path | None, **kw) -> dict:
            """The run with the least CPU of --cpu-repeat fresh processes (noise only adds CPU), each
            warmed up on a small file first: per-record CPU, without the first call's lazy imports."""
            runs_ = [run_import_child("cirrus", settings_doc, str(big), layer=layer, cpu=0, canned_cirrus=True,
                                      warm_up=True, **kw) for _ in range(args.cpu_repeat)]
            for r_ in runs_:
                assert r_["counts"]["accepted"] == m, r_["counts"]
            return min(runs_, key=lambda r_: r_["cpu"] + r_["validate_cpu"])
        doc = {"vendor": "cirrus", "base_url": "https://cirrus.example.com", "username": "bench",
               "password": "bench-password", **base}
        size_mb = big.stat().st_size / 1e6
        rows = [["lxml iterparse (floor)", floor_cpu / m * 1e6, "1.00x", m / floor_cpu, "-"]]
        cpu_figs = {"records": m, "mb": size_mb, "floor_us_per_record": floor_cpu / m * 1e6}
        previous = None
        for suffix, layer in layers:
            r = best_run(doc, layer, validate=True)
            per = {"validate": r["validate_cpu"] / m * 1e6, "send": r["cpu"] / m * 1e6}
            if layer is None:  # the concurrent configuration (the previous library has no concurrency)
                r4 = best_run({**doc, **CONCURRENT}, None)
                per["send_c4"] = r4["cpu"] / m * 1e6
            for key, title in (("validate", "validate (submit step)"),
                               ("send", "send, as shipped: read, serialize, encode, answer"),
                               ("send_c4", "send, concurrency 4, batch_size 50")):
                if key not in per:
                    continue
                versus = f"{per[key] / previous[key]:.2f}x" if previous and key in previous else "-"
                rows.append([title + suffix, per[key], f"{per[key] / (floor_cpu / m * 1e6):.2f}x",
                             m / (per[key] * m / 1e6), versus])
                cpu_figs[f"{key}_us_per_record{suffix}"] = per[key]
            previous = per if layer is not None else None
        print()
        print(table(rows, ["path", "CPU us/record", "/ floor", "records/CPU-s", "vs previous"],
                    title=f"Cirrus CPU per record: {m:,} records, {size_mb:.0f} MB, no network"))
        report.figures["cpu"] = cpu_figs
    shipped = next(f for f in runs if f["config"] == "as shipped: batch_size 10")
    report.check("Cirrus sender CPU per call / call latency (as shipped)",
                 round(shipped["sender_cpu_ms_per_call"] / (args.latency * 1e3) * 100, 1), 10.0, unit="%")
    report.check("Cirrus rate / bound (batch_size / latency), as shipped", round(shipped["rate_over_bound"], 3), 0.8,
                 unit="x", higher_is_better=True, note="includes the simulator's own time per call")
    concurrent = next(f for f in runs if f["config"] == "concurrency 4, batch_size 50")
    report.check("Cirrus rate / bound (concurrency x batch_size / latency), concurrency 4",
                 round(concurrent["rate_over_bound"], 3), 0.8, unit="x", higher_is_better=True,
                 note="includes the simulator's own time per call")
    report.check("Cirrus send CPU per record / iterparse floor, concurrency 4, batch_size 50",
                 round(cpu_figs["send_c4_us_per_record"] / cpu_figs["floor_us_per_record"], 2), 3.0, unit="x")
    report.check("Cirrus send CPU per record / iterparse floor, as shipped (batch_size 10)",
                 round(cpu_figs["send_us_per_record"] / cpu_figs["floor_us_per_record"], 2), 3.0, unit="x")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
