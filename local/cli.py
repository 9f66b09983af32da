"""s3-vendor-import: run imports locally (embedded moto + simulators or your own vendor server).

    s3-vendor-import demo                      every vendor's sample files through the whole pipeline
    s3-vendor-import run --file F --key inbox/hopex/F --settings hopex.json [--out DIR]
    s3-vendor-import run --file F --key inbox/hopex/F --simulator
    s3-vendor-import start --vendor hopex --input '{"bucket": "...", "key": "..."}' --file F
    s3-vendor-import provision-aep --settings aep-provision.json
    s3-vendor-import simulator --vendor hopex --write-settings hopex.json   (a vendor to try run --settings on)

Operators (a deployed stack with --stack NAME, or the local runner's output with --local DIR):

    s3-vendor-import list --vendor cirrus [--limit 20] --stack NAME
    s3-vendor-import show JOB_ID [--json] --stack NAME
    s3-vendor-import rejects JOB_ID --out DIR --stack NAME
    s3-vendor-import resubmit JOB_ID --stack NAME      (--local DIR --simulator | --settings F locally)

Exit code: 0 when every import ended SUCCEEDED, SUCCEEDED_WITH_REJECTS or VALIDATED (demo: when
every case ended as expected), 1 otherwise, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .runner import DEFAULT_TIME_SCALE, ImportResult, LocalPipeline
from .template_deploy import ROOT


def _table(rows: list[list[str]], header: list[str]) -> str:
    from vendor_import.scrub import neutralise

    # a file name with line breaks or ANSI escapes must not forge rows or colours
    rows = [[neutralise(c) for c in r] for r in rows]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _row(result: ImportResult, expect: str | None = None) -> list[str]:
    rec = result.record or {}
    counts = rec.get("counts") or {}
    rejects = rec.get("rejects") or {}
    records = counts.get("records", counts.get("sent", counts.get("accepted", "")))
    n_rej = counts.get("rejected", rejects.get("rows", ""))
    where = str(result.status_path.parent) if result.status_path else (rec.get("status_uri") or "-")
    row = [result.key.rsplit("/", 1)[-1][:40], result.vendor, result.state, str(records), str(n_rej),
           where, f"{result.seconds:.2f}s"]
    if expect is not None:
        row.append("ok" if result.state == expect else f"EXPECTED {expect}")
    return row


HEADER = ["file", "vendor", "final state", "records", "rejects", "status and rejects in", "duration"]


def _available_simulators(vendors: list[str] | None) -> dict[str, Any]:
    from .simulators import SIMULATORS, simulator_class

    sims = {}
    for vendor in SIMULATORS:
        if vendors and vendor not in vendors:
            continue
        try:
            sims[vendor] = simulator_class(vendor)().start()
        except (ImportError, AttributeError) as exc:
            print(f"note: no simulator for {vendor} yet ({exc})", file=sys.stderr)
    return sims


def cmd_demo(args: argparse.Namespace) -> int:
    import importlib

    from .simulators import SIMULATORS

    vendors = args.vendors.split(",") if args.vendors else None
    sims = _available_simulators(vendors)
    out = Path(args.out)
    results: list[tuple[ImportResult, str, str]] = []
    started = time.perf_counter()
    try:
        print("deploying template.yaml into embedded moto...", file=sys.stderr)
        with LocalPipeline(settings={v: s.settings() for v, s in sims.items()}, out_dir=out,
                           time_scale=args.time_scale) as pipe:
            for vendor in sims:
                module = importlib.import_module(SIMULATORS[vendor].split(":")[0])
                for case in getattr(module, "DEMO_CASES", []):
                    print(f"  {vendor}: {case.title} ...", file=sys.stderr, flush=True)
                    result = pipe.import_file(ROOT / case.file, case.key, case.metadata or None)
                    results.append((result, case.expect, case.title))
            messages = len(pipe.drain_messages())
    finally:
        for sim in sims.values():
            sim.stop()
    print()
    print(_table([_row(r, e) for r, e, _ in results], [*HEADER, "expected"]))
    print(f"\n{len(results)} imports, {messages} SNS messages, {time.perf_counter() - started:.1f}s in all; "
          f"status JSON and rejects copied under {out}/")
    bad = [t for r, e, t in results if r.state != e]
    if bad:
        print(f"{len(bad)} case(s) did not end as expected: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


def _parse_metadata(pairs: list[str]) -> dict[str, str]:
    meta = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SystemExit(f"--metadata takes name=value, got {pair!r}")
        name, _, value = pair.partition("=")
        meta[name] = value
    return meta


def _vendor_of_key(key: str) -> str:
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != "inbox":
        raise SystemExit(f"--key must look like inbox/<vendor>/<file>, got {key!r}")
    from vendor_import.connectors import VENDORS

    if parts[1] not in VENDORS:  # the pipeline has no state machine (nor settings) for it
        raise SystemExit(f"--key names vendor {parts[1]!r}: use inbox/<vendor>/ with one of {', '.join(VENDORS)}")
    return parts[1]


def _settings_for(args: argparse.Namespace, vendor: str) -> tuple[dict[str, Any], Any]:
    if args.simulator:
        from .simulators import simulator_class

        sim = simulator_class(vendor)().start()
        return sim.settings(), sim
    if not args.settings:
        raise SystemExit("give --settings FILE (your vendor settings JSON) or --simulator")
    path = Path(args.settings)
    if not path.is_file():
        raise SystemExit(f"settings file {path} does not exist")
    try:
        return json.loads(path.read_text()), None
    except ValueError as exc:
        raise SystemExit(f"settings file {path} is not valid JSON: {exc}") from None


def _report(result: ImportResult) -> int:
    print(_table([_row(result)], HEADER))
    rec = result.record or {}
    print(f"\nstate: {result.state}\nmessage: {rec.get('message', '')}")
    if rec.get("error"):
        print(f"error: {rec['error'].get('type')}: {rec['error'].get('message')}")
    if result.status_path:
        print(f"status: {result.status_path}")
    for p in result.rejects_paths:
        print(f"rejects: {p}")
    return 0 if result.ok else 1


def cmd_run(args: argparse.Namespace) -> int:
    file = Path(args.file)
    if not file.is_file():
        raise SystemExit(f"--file {file} does not exist")
    vendor = _vendor_of_key(args.key)
    settings, sim = _settings_for(args, vendor)
    scale = args.time_scale if args.time_scale is not None else (DEFAULT_TIME_SCALE if sim else 1.0)
    try:
        with LocalPipeline(settings={vendor: settings}, out_dir=args.out, time_scale=scale,
                           execution_timeout=args.timeout) as pipe:
            result = pipe.import_file(file, args.key, _parse_metadata(args.metadata))
    finally:
        if sim:
            sim.stop()
    return _report(result)


def cmd_start(args: argparse.Namespace) -> int:
    try:
        execution_input = json.loads(args.input)
    except ValueError as exc:
        raise SystemExit(f"--input is not valid JSON: {exc}") from None
    settings, sim = _settings_for(args, args.vendor)
    scale = args.time_scale if args.time_scale is not None else (DEFAULT_TIME_SCALE if sim else 1.0)
    try:
        with LocalPipeline(settings={args.vendor: settings}, out_dir=args.out, time_scale=scale,
                           execution_timeout=args.timeout) as pipe:
            if args.file and isinstance(execution_input, dict) and "key" in execution_input:
                pipe.s3.put_object(Bucket=pipe.bucket, Key=execution_input["key"], Body=Path(args.file).read_bytes())
            if isinstance(execution_input, dict) and execution_input.get("bucket") == "LOCAL":
                execution_input["bucket"] = pipe.bucket
            result = pipe.start_console(args.vendor, execution_input)
    finally:
        if sim:
            sim.stop()
    return _report(result)


def cmd_simulator(args: argparse.Namespace) -> int:
    """Serve one vendor simulator on 127.0.0.1 until interrupted (or --seconds), so `run --settings`
    and `provision-aep` can be tried against a real HTTP endpoint from another terminal."""
    from .simulators import simulator_class

    sim = simulator_class(args.vendor)().start(port=args.port)
    doc = json.dumps(sim.settings(), indent=2)
    if args.write_settings:
        Path(args.write_settings).write_text(doc + "\n")
        print(f"settings for {args.vendor} written to {args.write_settings}", file=sys.stderr)
    else:
        print(doc)
    print(f"{args.vendor} simulator listening on {sim.base_url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    deadline = time.monotonic() + args.seconds if args.seconds else None
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s3-vendor-import", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run every vendor's sample files through the local pipeline")
    demo.add_argument("--vendors", help="comma-separated vendor ids (default: all)")
    demo.add_argument("--out", default="out/demo", help="where status JSON and rejects are copied")
    demo.add_argument("--time-scale", type=float, default=DEFAULT_TIME_SCALE,
                      help="multiplier of Wait states and retry intervals (default %(default)s)")
    demo.set_defaults(func=cmd_demo)

    for name, func, helptext in (("run", cmd_run, "import one file through the local pipeline"),
                                 ("start", cmd_start, "start an execution the way the console does")):
        p = sub.add_parser(name, help=helptext)
        if name == "run":
            p.add_argument("--file", required=True, help="the file to import")
            p.add_argument("--key", required=True, help="the S3 key to upload it under: inbox/<vendor>/...")
            p.add_argument("--metadata", action="append", help="S3 user metadata name=value (repeatable)")
        else:
            p.add_argument("--vendor", required=True, help="which state machine to start")
            p.add_argument("--input", required=True, help='the execution input JSON; bucket "LOCAL" = the local bucket')
            p.add_argument("--file", help="upload this file under the input's key first")
        p.add_argument("--settings", help="vendor settings JSON file (the same document as the AWS secret)")
        p.add_argument("--simulator", action="store_true", help="use the built-in vendor simulator instead")
        p.add_argument("--out", default=f"out/{name}", help="where status JSON and rejects are copied")
        p.add_argument("--time-scale", type=float, default=None,
                       help="Wait/Retry time multiplier (default 1.0 with --settings, 0.001 with --simulator)")
        p.add_argument("--timeout", type=float, default=3600.0, help="give up after this many wall seconds")
        p.set_defaults(func=func)

    simp = sub.add_parser("simulator", help="serve a vendor simulator on 127.0.0.1 and print its settings")
    simp.add_argument("--vendor", required=True)
    simp.add_argument("--port", type=int, default=0, help="0 = any free port")
    simp.add_argument("--write-settings", help="write the settings JSON to this file instead of stdout")
    simp.add_argument("--seconds", type=float, default=0, help="stop after this many seconds (0 = until Ctrl-C)")
    simp.set_defaults(func=cmd_simulator)

    sub.add_parser("provision-aep", help="create (or find) the AEP streaming dataflow (see its --help)")

    from .operator import add_subcommands  # list, show, rejects, resubmit (a stack or local output)

    add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["provision-aep"]:  # its own argument parser (and --help)
        from vendor_import.connectors.aep_provision import main as provision_main

        return int(provision_main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SystemExit as exc:
        if isinstance(exc.code, str):  # a usage problem found after parsing: exit 2 like argparse
            print(f"s3-vendor-import {args.command}: error: {exc.code}", file=sys.stderr)
            raise SystemExit(2) from None
        raise


if __name__ == "__main__":
    sys.exit(main())
