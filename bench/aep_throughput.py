"""AEP streaming throughput: records per second from one Lambda-sized sender process (pinned to one
CPU) to the inlet simulator (its own process, on the other CPU) answering each request after 50 ms.

    .venv/bin/python bench/aep_throughput.py [--records 100000] [--latency 0.05] [--previous REV]

Both raw paths are measured: the documented default (one record per request to
/collection/{inlet}, whose ceiling is the inlet's 1,000 requests/s; it gets a tenth of --records)
and the opt-in raw_batch (records in batches to /collection/batch/{inlet}, ceiling 10,000
messages/s; the simulator is built with raw_on_batch, an inlet that takes them).
Ratios printed: achieved / the path's documented ceiling, and achieved / the
bound of the pipeline (requests in flight x messages per request / latency). The "limits on" rows
run the simulator with the inlet's documented limits (10,000 messages/s, 1,000 requests/s,
counted per second) and show whether the pacer stays under them (429 answers = retries); the
"unpaced" rows lift the pacer to show what the sender does without it. "CPU capacity" is what
one CPU could send at the measured CPU cost per record (1 / CPU seconds per record): the sender
alone, whatever the simulator's own speed. ``--previous REV`` also runs each configuration with
the library as it was at git revision REV, in the same run (before/after).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from _common import Report, SimulatorProcess, export_revision, parser, table
from _drive import run_import_child, steady_rate
from _files import write_ndjson

CEILING = 10_000  # messages/s, the inlet's documented limit (batch path)
SINGLE_CEILING = 1_000  # requests/s, the inlet's documented limit: one record per request (default path)
LAMBDA_VCPU_1024MB = 1024 / 1769  # Lambda gives one vCPU at 1,769 MB; the AEP function has 1,024 MB
LIMITS = {"max_messages_per_second": 10_000, "max_requests_per_second": 1_000}
UNPACED = {"max_messages_per_second": 1e9, "max_requests_per_second": 1e9}
BATCH = {"raw_on_batch": True}  # an inlet that takes raw records on /collection/batch (opt-in raw_batch)

CONFIGS = [
    # (label, connector overrides, simulator options, single path)
    ("documented raw path (default): 1 record/req, 50 in flight, paced; limits on", {}, LIMITS, True),
    ("raw_batch (opt-in): c=8, 500 msg/req, paced; limits on", {}, {**LIMITS, **BATCH}, False),
    ("raw_batch 1 MB packing: c=8, 1000 msg/req, paced; limits on", {"max_messages_per_request": 1000},
     {**LIMITS, **BATCH}, False),
    ("raw_batch unpaced: c=2, 500 msg/req", {**UNPACED, "concurrency": 2}, BATCH, False),
    ("raw_batch unpaced: c=8, 500 msg/req", {**UNPACED}, BATCH, False),
    ("raw_batch unpaced: c=8, 1000 msg/req (1 MB)", {**UNPACED, "max_messages_per_request": 1000}, BATCH, False),
]


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=100_000, help="1 KB records per run (default 100,000)")
    p.add_argument("--latency", type=float, default=0.05, help="simulator latency per request, seconds")
    p.add_argument("--quick", action="store_true", help="only the two paced raw paths and one unpaced batch run")
    p.add_argument("--previous", metavar="REV", help="also measure the library of this git revision")
    args = p.parse_args(argv)
    report = Report("aep_throughput", args)
    configs = [CONFIGS[0], CONFIGS[1], CONFIGS[4]] if args.quick else CONFIGS
    rows, figures = [], []
    with tempfile.TemporaryDirectory(prefix="bench-aep-") as tmp:
        layers: list[tuple[str, Path | None]] = [("", None)]
        if args.previous:
            layers.insert(0, (f" [{args.previous}]", export_revision(args.previous, Path(tmp))))
        path = Path(tmp) / "profiles.ndjson"
        n_batch = write_ndjson(path, args.records * 1024)
        single_path = Path(tmp) / "profiles-single.ndjson"
        n_single = write_ndjson(single_path, args.records * 1024 // 10)
        for label, overrides, sim_options, single in configs:
            previous = None
            n, ceiling = (n_single, SINGLE_CEILING) if single else (n_batch, CEILING)
            # the previous library knows only the batch path
            for suffix, layer in (layers[-1:] if single else layers):
                with SimulatorProcess("aep", latency=args.latency, cpu=1, **sim_options) as sim:
                    doc = {**sim.settings, "time_margin_seconds": 5, "timeout_seconds": 30, **overrides}
                    sim_cpu0 = sim.stats()["cpu_seconds"]
                    r = run_import_child("aep", doc, str(single_path if single else path), layer=layer, cpu=0)
                    sim_cpu = sim.stats()["cpu_seconds"] - sim_cpu0
                c = r["counts"]
                assert c["accepted"] == n, (label, c)
                rate = n / r["wall"]
                # single path: 50 workers each hold a 50-record batch for ~2.5 s, so the checkpoint
                # timeline lags and overstates a "steady" rate; the whole-run rate is the figure
                steady = None if single else steady_rate(r["timeline"])
                if single:
                    bound = doc.get("single_concurrency", 50) / args.latency
                else:
                    per_request = min(doc.get("max_messages_per_request", 500), (1_000_000 - 15) // 1025)
                    bound = doc.get("concurrency", 8) * per_request / args.latency
                capacity = n / r["cpu"]
                fig = {"config": label + suffix, "records": n, "wall": r["wall"], "rate": rate, "steady_rate": steady,
                       "single": single, "ceiling": ceiling, "rate_over_ceiling": rate / ceiling,
                       "bound": bound, "rate_over_bound": rate / bound,
                       "requests": c["requests"], "retries_429": c["retries"], "connections": r["connections"],
                       "sender_cpu_share": r["cpu"] / r["wall"], "cpu_us_per_record": r["cpu"] / n * 1e6,
                       "cpu_capacity": capacity, "simulator_cpu_share": sim_cpu / r["wall"],
                       "peak_rss_mb": r["peak_rss_mb"], "library": r["library"]}
                figures.append(fig)
                versus = "-"
                if previous:
                    cpu_ratio = fig["cpu_us_per_record"] / previous["cpu_us_per_record"]
                    versus = f"{rate / previous['rate']:.2f}x / {cpu_ratio:.2f}x"
                rows.append([label + suffix, n, r["wall"], rate, steady if steady else "-", f"{rate / ceiling:.2f}x",
                             bound, f"{rate / bound:.2f}", c["requests"], c["retries"], r["connections"],
                             f"{fig['sender_cpu_share']:.0%}", fig["cpu_us_per_record"], capacity,
                             f"{fig['simulator_cpu_share']:.0%}"] + ([versus] if args.previous else []))
                previous = fig if args.previous and layer is not None else None
    print(table(rows, ["configuration", "records", "wall s", "rec/s", "steady rec/s", "/ceiling", "bound rec/s",
                       "/bound",
                       "requests", "429s", "conns", "sender CPU", "CPU us/rec", "CPU capacity rec/s", "sim CPU"]
                + (["rate / CPU vs previous"] if args.previous else []),
                title=f"AEP streaming: records of 1 KB, simulator latency {args.latency * 1000:.0f} ms, "
                      "sender pinned to one CPU, simulator on the other"))
    print("\nceiling = the inlet's documented 1,000 requests/s (one record per request) or 10,000 messages/s "
          "(batches); bound = requests in flight x messages per request / latency; steady = after the first 2 s; "
          "CPU capacity = records per CPU-second of the sender; 429s = requests answered 429 and sent again")
    report.figures["runs"] = figures
    current = [f for f in figures if "[" not in f["config"]]
    for fig, name in ((current[0], "documented raw path, default"), (current[1], "raw_batch, opt-in")):
        ceiling = fig["ceiling"]
        report.check(f"AEP paced rate / inlet ceiling ({name})", round(
            (fig["steady_rate"] or fig["rate"]) / ceiling, 3), 0.9, unit="x", higher_is_better=True)
        report.check(f"AEP 429 answers / requests at the inlet's limits ({name})",
                     round(fig["retries_429"] / fig["requests"] * 100, 1), 2.0, unit="%")
        report.check(f"AEP sender CPU capacity / ceiling, 1,024 MB Lambda (0.58 vCPU) ({name})",
                     round(fig["cpu_capacity"] * LAMBDA_VCPU_1024MB / ceiling, 2), 1.0, unit="x",
                     higher_is_better=True)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
