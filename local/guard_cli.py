"""`s3-vendor-import guard`: the vendor guard of a target, by hand (logic/guard.py).

    s3-vendor-import guard status --vendor hopex [--target default] --stack NAME
    s3-vendor-import guard pause  --vendor hopex [--target default] --stack NAME   (one PAUSED message)
    s3-vendor-import guard resume --vendor hopex [--target default] --stack NAME   (one RESUMED message)

status prints the slots in use, the queue (upload order) and the circuit breaker. pause holds every
import of the target (queued and running ones wait, no vendor call) until resume, or until a probe
after the cool-down succeeds.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from .operator import OperatorError, stack_outputs


def guard_for_stack(stack: str, region: str | None = None, session=None):
    """(Guard, Breaker) of a deployed stack: its jobs table and its completion topic."""
    import boto3
    from vendor_import.dal.guard_table import GuardTable
    from vendor_import.logic.guard import Breaker, Guard, describer, sns_announcer

    session = session or boto3.Session(region_name=region)
    outputs = stack_outputs(session, stack)
    if "JobsTableName" not in outputs or "CompletionTopicArn" not in outputs:
        raise OperatorError(f"stack {stack!r} has no JobsTableName / CompletionTopicArn output")
    guard = Guard(GuardTable(session.resource("dynamodb").Table(outputs["JobsTableName"])),
                  describer(session.client("stepfunctions")))
    return guard, Breaker(guard, sns_announcer(session.client("sns"), outputs["CompletionTopicArn"]))


def status_of(guard, vendor: str, target: str) -> dict[str, Any]:
    item = guard.snapshot(vendor, target)
    from vendor_import.logic.guard import _order

    queue = sorted(item["waiters"].items(), key=lambda kv: _order(kv[1]))
    breaker = item.get("breaker") or {}
    return {"vendor": vendor, "target": target, "running": sorted(item["holders"]),
            "queued": [job_id for job_id, _ in queue],
            "breaker": {"state": "PAUSED" if breaker.get("state") == "OPEN" else "RUNNING",
                        "consecutive_failures": int(breaker.get("failures") or 0),
                        "cooldown_seconds": breaker.get("cooldown"), "manual": bool(breaker.get("manual"))}}


def cmd_guard(args) -> int:
    try:
        guard, breaker = guard_for_stack(args.stack, args.region)
        if args.action in ("pause", "resume"):
            changed = breaker.set_state(args.vendor, args.target, "PAUSED" if args.action == "pause" else "RESUMED")
            if not changed:
                print(f"{args.vendor}/{args.target} was already {args.action}d", file=sys.stderr)
        doc = status_of(guard, args.vendor, args.target)
    except OperatorError as exc:
        print(f"s3-vendor-import guard: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"{doc['vendor']}/{doc['target']}: {doc['breaker']['state']}, {len(doc['running'])} running, "
              f"{len(doc['queued'])} queued")
        for job_id in doc["queued"]:
            print(f"  queued  {job_id}")
    return 0


def add_subcommand(sub) -> None:
    from vendor_import.connectors import VENDORS

    p = sub.add_parser("guard", help="a target's vendor guard: status, or pause / resume it by hand (a deployed "
                                     "stack)",
                       description="The vendor guard of one target of a deployed stack (usual AWS credentials; "
                                   "locally, `burst` shows the guard at work). status: slots held, imports "
                                   "QUEUED, the circuit breaker's state; pause: hold the target (running imports "
                                   "stop calling the vendor, new ones queue) until resume; resume: let it go on "
                                   "(one RESUMED message on the completion topic).")
    p.add_argument("action", choices=("status", "pause", "resume"),
                   help="status (read only), pause or resume the target")
    p.add_argument("--vendor", required=True, choices=VENDORS)
    p.add_argument("--target", default="default", help="the vendor's target (default: default)")
    p.add_argument("--stack", required=True, help="a deployed stack")
    p.add_argument("--region", help="the stack's region (default: AWS_REGION / your profile's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_guard)
