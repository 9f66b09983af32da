"""Peak memory of the vendor step streaming a small and a large upload (AEP NDJSON, Cirrus XML).

    .venv/bin/python bench/memory.py [--small-mb 10] [--large-mb 1024] [--vendors aep,cirrus] [--previous REV]

Each import runs in a fresh child process that first imports what the vendor function imports
(boto3, powertools, the connector); its peak resident set (VmHWM) is read at the end. The child
runs the submit step's local checks (validate: a full pass over the file) and then every poll to
the end, as the state machine would. AEP streams to the inlet simulator (its own process, no
latency, pacing lifted: memory, not time, is measured here); Cirrus answers each batch 'all
accepted' in-process (no network; 1 KB records). Files are written to a temporary folder and
deleted. Goal: large peak <= 1.2 x small peak, and < 256 MB. ``--previous REV`` also measures the
library of that git revision.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from _common import Report, SimulatorProcess, export_revision, parser, table
from _drive import run_import_child
from _files import write_cirrus, write_ndjson

RECORD_BYTES = 1024
CIRRUS = {"vendor": "cirrus", "base_url": "https://cirrus.example.com", "username": "bench",
          "password": "bench-password", "batch_size": 200, "safety_margin_seconds": 5,
          "defaults": {"action": "upsert", "matching_field": "Name"}}


def one(vendor: str, mb: float, layer: Path | None, tmp: Path) -> dict:
    """One import of a fresh file of about ``mb`` MB in a child process; the file is deleted after."""
    with tempfile.TemporaryDirectory(prefix="bench-mem-", dir=tmp) as folder:
        if vendor == "aep":
            path = Path(folder) / "profiles.ndjson"
            n = write_ndjson(path, int(mb * 1024 * 1024), RECORD_BYTES)
            with SimulatorProcess("aep", latency=0.0, cpu=1) as sim:
                doc = {**sim.settings, "time_margin_seconds": 5, "max_messages_per_second": 1e9,
                       "max_requests_per_second": 1e9}
                r = run_import_child("aep", doc, str(path), layer=layer, cpu=0, validate=True)
        else:
            path = Path(folder) / "accounts.xml"
            n = write_cirrus(path, int(mb * 1024 * 1024), RECORD_BYTES)
            r = run_import_child("cirrus", CIRRUS, str(path), layer=layer, cpu=0, validate=True, fake_post=True)
        r["mb"] = path.stat().st_size / 1024 / 1024
    assert r["counts"]["accepted"] == n, (vendor, r["counts"], n)
    r["records"] = n
    return r


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--small-mb", type=float, default=10)
    p.add_argument("--large-mb", type=float, default=1024)
    p.add_argument("--vendors", default="aep,cirrus")
    p.add_argument("--previous", metavar="REV", help="also measure the library of this git revision")
    args = p.parse_args(argv)
    report = Report("memory", args)
    rows = []
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        layers: list[tuple[str, Path | None]] = [("", None)]
        if args.previous:
            layers.insert(0, (f" [{args.previous}]", export_revision(args.previous, Path(tmp))))
        for vendor in args.vendors.split(","):
            for suffix, layer in layers:
                per_size = {}
                for label, mb in (("small", args.small_mb), ("large", args.large_mb)):
                    r = one(vendor, mb, layer, Path(tmp))
                    per_size[label] = r
                    streaming = r["peak_rss_mb"] - r["rss_after_imports_mb"]
                    rows.append([vendor + suffix, f"{r['mb']:,.0f} MB", r["records"], r["rss_after_imports_mb"],
                                 r["peak_rss_mb"], streaming, r["wall"], r["records"] / r["wall"]])
                ratio = per_size["large"]["peak_rss_mb"] / per_size["small"]["peak_rss_mb"]
                per_size["ratio"] = ratio
                results[vendor + suffix] = {k: ({kk: vv for kk, vv in v.items() if kk != "timeline"}
                                                if isinstance(v, dict) else v) for k, v in per_size.items()}
                rows.append([vendor + suffix, "large / small", "", "", f"{ratio:.3f}x", "", "", ""])
    print(table(rows, ["vendor", "file", "records", "RSS after imports MB", "peak RSS MB", "streaming MB",
                       "send wall s", "rec/s sent"],
                title="Peak memory of one import (validate + every poll), child process, VmHWM"))
    report.figures.update(results)
    for vendor in args.vendors.split(","):
        res = results[vendor]
        report.check(f"{vendor}: peak RSS {res['large']['mb']:,.0f} MB / {res['small']['mb']:,.0f} MB file",
                     round(res["ratio"], 3), 1.2, unit="x")
        report.check(f"{vendor}: peak RSS, {res['large']['mb']:,.0f} MB file", round(res["large"]["peak_rss_mb"], 1),
                     256, unit=" MB")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
