"""s3-vendor-import: run imports locally (embedded moto + simulators or your own vendor server).

    s3-vendor-import demo                      every vendor's sample files through the whole pipeline
    s3-vendor-import run --file F --key inbox/hopex/F --settings hopex.json [--out DIR]
    s3-vendor-import run --file F --key inbox/hopex/F --simulator
    s3-vendor-import burst --folder DIR --prefix inbox/hopex/burst/ --simulator --max-concurrent 3
                                               (many uploads at once: watch the vendor guard queue them)
    s3-vendor-import start --vendor hopex --input '{"bucket": "...", "key": "..."}' --file F
    s3-vendor-import provision-aep --settings aep-provision.json
    s3-vendor-import simulator --vendor hopex --write-settings hopex.json   (a vendor to try run --settings on)
    s3-vendor-import simulator --vendor hopex --targets prod,test --write-settings hopex.json
                                               (two targets, one simulator each: a multi-target document)

Operators (a deployed stack with --stack NAME, or the local runner's output with --local DIR):

    s3-vendor-import list [--vendor cirrus] [--limit 20] --stack NAME
    s3-vendor-import show JOB_ID --stack NAME
    s3-vendor-import rejects JOB_ID --out DIR --stack NAME
    s3-vendor-import resubmit JOB_ID --stack NAME      (--local DIR --simulator | --settings F locally)

Every command takes --json: one JSON document on stdout instead of text.

Exit code: 0 when every import ended SUCCEEDED, SUCCEEDED_WITH_REJECTS or VALIDATED (demo: when
every case ended as expected), 1 otherwise, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .report import HEADER, report, result_json, result_row, settings_for, table
from .runner import DEFAULT_TIME_SCALE, ImportResult, LocalPipeline
from .template_deploy import ROOT


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

    from .simulators import SIMULATORS, start_targets, targets_document

    vendors = args.vendors.split(",") if args.vendors else None
    sims = _available_simulators(vendors)
    out = Path(args.out)
    results: list[tuple[ImportResult, str, str]] = []
    misrouted: list[str] = []
    started = time.perf_counter()
    targets: dict[str, dict[str, Any]] = {}  # vendor -> target name -> its own simulator
    try:
        settings = {v: s.settings() for v, s in sims.items()}
        for vendor in sims:
            module = importlib.import_module(SIMULATORS[vendor].split(":")[0])
            if getattr(module, "TARGET_DEMO_CASES", None):
                targets[vendor] = start_targets(vendor, list(module.TARGET_DEMO_CASES))
                settings[vendor] = targets_document(vendor, {"default": sims[vendor], **targets[vendor]})
        print("deploying template.yaml into embedded moto...", file=sys.stderr)
        with LocalPipeline(settings=settings, out_dir=out, time_scale=args.time_scale) as pipe:
            _settled()
            for vendor in sims:
                module = importlib.import_module(SIMULATORS[vendor].split(":")[0])
                for case in getattr(module, "DEMO_CASES", []):
                    print(f"  {vendor}: {case.title} ...", file=sys.stderr, flush=True)
                    result = pipe.import_file(ROOT / case.file, case.key, case.metadata or None)
                    results.append((result, case.expect, case.title))
                for target, case in getattr(module, "TARGET_DEMO_CASES", {}).items():
                    print(f"  {vendor}: {case.title} ...", file=sys.stderr, flush=True)
                    before = {t: len(s.requests) for t, s in targets[vendor].items()}
                    result = pipe.import_file(ROOT / case.file, case.key, case.metadata or None)
                    results.append((result, case.expect, case.title))
                    # only this target's simulator heard of it
                    grew = sorted(t for t, s in targets[vendor].items() if len(s.requests) > before[t])
                    if grew != [target] or (result.record or {}).get("target") != target:
                        misrouted.append(case.title)
            messages = len(pipe.drain_messages())
    finally:
        for sim in [*sims.values(), *(s for started_ in targets.values() for s in started_.values())]:
            sim.stop()
    bad = [t for r, e, t in results if r.state != e] + [f"{t} (not imported into its target alone)"
                                                       for t in misrouted]
    if args.json:
        print(json.dumps({"imports": [{**result_json(r), "expected": e, "title": t} for r, e, t in results],
                          "sns_messages": messages, "out": str(out)}, indent=2, default=str))
        return 1 if bad else 0
    print()
    print(table([result_row(r, e) for r, e, _ in results], [*HEADER, "expected"]))
    print(f"\n{len(results)} imports, {messages} SNS messages, {time.perf_counter() - started:.1f}s in all; "
          f"status JSON and rejects copied under {out}/")
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


def cmd_run(args: argparse.Namespace) -> int:
    file = Path(args.file)
    if not file.is_file():
        raise SystemExit(f"--file {file} does not exist")
    vendor = _vendor_of_key(args.key)
    settings, sim = settings_for(args, vendor)
    scale = args.time_scale if args.time_scale is not None else (DEFAULT_TIME_SCALE if sim else 1.0)
    try:
        with LocalPipeline(settings={vendor: settings}, out_dir=args.out, time_scale=scale,
                           execution_timeout=args.timeout) as pipe:
            _settled()
            result = pipe.import_file(file, args.key, _parse_metadata(args.metadata))
    finally:
        if sim:
            sim.stop()
    return report(result, args.json)


def _burst_files(args: argparse.Namespace) -> list[Path]:
    files = [Path(f) for f in args.file or []]
    if args.folder:
        folder = Path(args.folder)
        if not folder.is_dir():
            raise SystemExit(f"--folder {folder} is not a folder")
        files += sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"--file {missing[0]} does not exist")
    if not files:
        raise SystemExit("give the files to upload: --folder DIR or --file F (repeatable)")
    if args.copies < 1:
        raise SystemExit(f"--copies {args.copies}: give 1 or more")
    if args.max_concurrent is not None and args.max_concurrent < 0:
        raise SystemExit(f"--max-concurrent {args.max_concurrent}: give 0 (no limit) or more")
    return files * args.copies


def _with_limit(settings: dict, target: str, limit: int | None) -> tuple[dict, int]:
    """The settings with ``max_concurrent_imports`` = ``limit`` for the burst's target (inside that
    target in a multi-target document: nothing but vendor and targets may sit at its top), and the
    target's limit in effect (0: no limit)."""
    from vendor_import.logic.guard import limit_of
    from vendor_import.settings import target_settings

    if limit is not None:
        if "targets" in settings:
            targets = dict(settings["targets"])
            targets[target] = {**(targets.get(target) or {}), "max_concurrent_imports": limit}
            settings = {**settings, "targets": targets}
        else:
            settings = {**settings, "max_concurrent_imports": limit}
    return settings, limit_of(target_settings(settings, settings.get("vendor") or "", target))


def cmd_burst(args: argparse.Namespace) -> int:
    """Upload many files at once under --prefix: the vendor guard lets max_concurrent_imports of
    them run against the vendor and queues the rest (QUEUED), in upload order."""
    files = _burst_files(args)
    prefix = args.prefix if args.prefix.endswith("/") else args.prefix + "/"
    vendor = _vendor_of_key(prefix + "x")
    settings, sim = settings_for(args, vendor)
    from vendor_import.errors import VendorImportError
    from vendor_import.logic.routing import target_from_key
    from vendor_import.settings import DEFAULT_TARGET

    target = target_from_key(prefix + "x") or DEFAULT_TARGET
    try:
        settings, limit = _with_limit(settings, target, args.max_concurrent)
    except VendorImportError as exc:  # an unknown target: the message names the known ones
        if sim:
            sim.stop()
        raise SystemExit(str(exc)) from None
    scale = args.time_scale if args.time_scale is not None else (DEFAULT_TIME_SCALE if sim else 1.0)
    width = len(str(len(files)))
    uploads = [(f, f"{prefix}{i:0{width}d}-{f.name}") for i, f in enumerate(files)]
    try:
        with LocalPipeline(settings={vendor: settings}, out_dir=args.out, time_scale=scale,
                           execution_timeout=args.timeout) as pipe:
            results = pipe.import_many(uploads)
    finally:
        if sim:
            sim.stop()
    seen = sim.max_concurrent_jobs if sim is not None and hasattr(sim, "max_concurrent_jobs") else None
    if args.json:
        print(json.dumps({"imports": [result_json(r) for r in results], "max_concurrent_imports": limit,
                          "max_concurrent_jobs_seen": seen}, indent=2, default=str))
    else:
        print(table([result_row(r) for r in results], HEADER))
        print(f"\n{len(results)} uploads to {vendor} target {target}, max_concurrent_imports {limit}"
              + (f", most jobs the simulator ran at once: {seen}" if seen is not None else ""))
    return 0 if all(r.ok for r in results) else 1


def cmd_start(args: argparse.Namespace) -> int:
    try:
        execution_input = json.loads(args.input)
    except ValueError as exc:
        raise SystemExit(f"--input is not valid JSON: {exc}") from None
    settings, sim = settings_for(args, args.vendor)
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
    return report(result, args.json)


def cmd_simulator(args: argparse.Namespace) -> int:
    """Serve one vendor simulator on 127.0.0.1 until interrupted (or --seconds), so `run --settings`
    and `provision-aep` can be tried against a real HTTP endpoint from another terminal."""
    from .simulators import simulator_class, start_targets, targets_document

    if args.targets:  # one simulator per target, each on its own port: a multi-target document
        started = start_targets(args.vendor, [t.strip() for t in args.targets.split(",") if t.strip()])
        settings = targets_document(args.vendor, started)
        where = ", ".join(f"{name} on {s.base_url}" for name, s in started.items())
    else:
        started = {"default": simulator_class(args.vendor)().start(port=args.port)}
        settings, where = started["default"].settings(), started["default"].base_url
    doc = json.dumps(settings, indent=2)
    if args.json:  # one line a script can read: where it listens and the settings to use
        urls = {name: s.base_url for name, s in started.items()}
        doc = json.dumps({"vendor": args.vendor, "base_url": urls.get("default"), "settings": settings,
                          **({"targets": urls} if args.targets else {})})
    if args.write_settings:
        Path(args.write_settings).write_text(doc + "\n")
        print(f"settings for {args.vendor} written to {args.write_settings}", file=sys.stderr)
    else:
        print(doc)
    print(f"{args.vendor} simulator listening: {where} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    deadline = time.monotonic() + args.seconds if args.seconds else None
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for sim in started.values():
            sim.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s3-vendor-import", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    from vendor_import.connectors import VENDORS

    from .simulators import SIMULATORS


    demo = sub.add_parser("demo", help="run every vendor's sample files through the local pipeline")
    demo.add_argument("--vendors", help="comma-separated vendor ids (default: all)")
    demo.add_argument("--out", default="out/demo", help="where status JSON and rejects are copied")
    demo.add_argument("--time-scale", type=float, default=DEFAULT_TIME_SCALE,
                      help="multiplier of Wait states and retry intervals (default %(default)s)")
    demo.add_argument("--json", action="store_true", help="print every import's outcome as JSON")
    demo.set_defaults(func=cmd_demo)

    for name, func, helptext in (("run", cmd_run, "import one file through the local pipeline"),
                                 ("start", cmd_start, "start an execution the way the console does")):
        p = sub.add_parser(name, help=helptext)
        if name == "run":
            p.add_argument("--file", required=True, help="the file to import")
            p.add_argument("--key", required=True, help="the S3 key to upload it under: inbox/<vendor>/...")
            p.add_argument("--metadata", action="append", help="S3 user metadata name=value (repeatable)")
        else:
            p.add_argument("--vendor", required=True, choices=VENDORS, help="which state machine to start")
            p.add_argument("--input", required=True, help='the execution input JSON; bucket "LOCAL" = the local bucket')
            p.add_argument("--file", help="upload this file under the input's key first")
        p.add_argument("--settings", help="vendor settings JSON file (the same document as the AWS secret)")
        p.add_argument("--simulator", action="store_true", help="use the built-in vendor simulator instead")
        p.add_argument("--out", default=f"out/{name}", help="where status JSON and rejects are copied")
        p.add_argument("--time-scale", type=float, default=None,
                       help="Wait/Retry time multiplier (default 1.0 with --settings, 0.001 with --simulator)")
        p.add_argument("--timeout", type=float, default=3600.0, help="give up after this many wall seconds")
        p.add_argument("--json", action="store_true", help="print the outcome (status record, files) as JSON")
        p.set_defaults(func=func)

    burst = sub.add_parser("burst", help="upload many files at once (a folder or several --file): the vendor "
                                         "guard queues what is over the limit",
                           description="Upload many files at once under --prefix, as a burst of S3 events: the "
                                       "vendor guard lets max_concurrent_imports of them talk to the vendor and "
                                       "keeps the rest QUEUED, in upload order. Example: s3-vendor-import burst "
                                       "--file events/files/hopex/clean.mgl --copies 6 --prefix "
                                       "inbox/hopex/burst/ --simulator --max-concurrent 2")
    burst.add_argument("--folder", help="upload every file of this folder")
    burst.add_argument("--file", action="append", help="a file to upload (repeatable)")
    burst.add_argument("--copies", type=int, default=1, help="upload each file this many times (default 1)")
    burst.add_argument("--prefix", required=True, help="the S3 prefix to upload under: inbox/<vendor>/...")
    burst.add_argument("--max-concurrent", type=int, help="max_concurrent_imports of the prefix's target for "
                                                          "this run, 0 for no limit (default: the settings', "
                                                          "else the vendor's default: no limit)")
    burst.add_argument("--settings", help="vendor settings JSON file (the same document as the AWS secret)")
    burst.add_argument("--simulator", action="store_true", help="use the built-in vendor simulator instead")
    burst.add_argument("--out", default="out/burst", help="where status JSON and rejects are copied")
    burst.add_argument("--time-scale", type=float, default=None,
                       help="Wait/Retry time multiplier (default 1.0 with --settings, 0.001 with --simulator)")
    burst.add_argument("--timeout", type=float, default=3600.0, help="give up on an import after this many wall "
                                                                     "seconds")
    burst.add_argument("--json", action="store_true", help="print every outcome and the guard figures as JSON")
    burst.set_defaults(func=cmd_burst)

    simp = sub.add_parser("simulator", help="serve a vendor simulator on 127.0.0.1 and print its settings")
    simp.add_argument("--vendor", required=True, choices=sorted(SIMULATORS))
    simp.add_argument("--port", type=int, default=0, help="0 = any free port")
    simp.add_argument("--targets", help="comma-separated target names: one simulator per target (each on "
                                        "its own port, with credentials of its own) and a multi-target document")
    simp.add_argument("--write-settings", help="write the settings JSON to this file instead of stdout")
    simp.add_argument("--seconds", type=float, default=0, help="stop after this many seconds (0 = until Ctrl-C)")
    simp.add_argument("--json", action="store_true",
                      help='print {"vendor", "base_url", "settings"} on one line instead of the settings alone')
    simp.set_defaults(func=cmd_simulator)

    sub.add_parser("provision-aep", help="create (or find) the AEP streaming dataflow (see its --help)")

    from .operator import add_subcommands  # list, show, rejects, resubmit (a stack or local output)

    add_subcommands(sub)
    from .redrive import add_subcommand as add_redrive  # dead letters back to their handlers (a stack)

    add_redrive(sub)
    from .guard_cli import add_subcommand as add_guard  # a target's vendor guard by hand (a stack)

    add_guard(sub)
    return parser


_short_lived = False


def _one_command_process() -> None:
    """This process runs one command, then exits. The cyclic garbage collector need not scan what
    lives until the end (the modules, moto's deployed state) again and again, nor at exit: that was
    about a third of the CPU of a small `run` (bench/local_run.py; bench/RESULTS.md). Objects are
    still freed by reference counting; cycles made later are still collected."""
    global _short_lived
    _short_lived = True
    gc.freeze()
    gc.set_threshold(10_000, 20, 10)
    atexit.register(gc.freeze)


def _settled() -> None:
    """The pipeline is up: in a one-command process, its deployment is not scanned again."""
    if _short_lived:
        gc.freeze()


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the console script: a process of its own (tests pass argv and keep the defaults)
        _one_command_process()
    try:
        return _main(argv)
    except BrokenPipeError:
        # the reader went away (`list | head`): stop quietly. Python's documented recipe
        # (docs.python.org/3/library/signal.html, "Note on SIGPIPE"): point stdout at devnull so
        # the interpreter's final flush does not raise again, and exit 1.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _main(argv: list[str] | None) -> int:
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
