"""Drive a connector through one import the way the vendor function does (submit, then polls until
done), without AWS: the upload is a local file, checkpoints and rejects are counted, not stored.

``run_import`` runs in this process; ``run_import_child`` runs it in a fresh process pinned to one
CPU (the sender measured alone), optionally against another copy of the library (``layer``: the
previous version, for a before/after in one run). As a command (what the child runs):

    python bench/_drive.py VENDOR PATH SETTINGS_JSON [--validate] [--fake-post] [--canned-cirrus]
                           [--checkpoint-seconds S] [--cpu N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from _common import ROOT, child_env, cpu_seconds, peak_rss_mb, pin, run_child


def run_import(vendor: str, settings_doc: dict[str, Any], path: str, *, lambda_seconds: float = 900.0,
               fake_post: bool = False, validate: bool = False, checkpoint_seconds: float = 0.0,
               session: Any = None, shared_table: str = "") -> dict[str, Any]:
    """One import of ``path``; returns counts, polls, wall and CPU seconds (``validate_cpu`` apart),
    the checkpoint timeline ``[(seconds since start, records done)]`` and connections opened.

    ``lambda_seconds`` is the run time each poll gets (a poll stops sending before it ends).
    ``fake_post`` answers every Cirrus batch 'all accepted' in-process (no HTTP): the file
    handling alone. ``validate`` runs the connector's local checks first, as the submit step does.
    ``checkpoint_seconds`` makes each checkpoint take that long (a DynamoDB write in the Lambda).
    ``session``: a requests session to use (e.g. one answering without a network).
    ``shared_table``: ``<DynamoDB endpoint URL>|<table>``: the connector takes the target's shared
    rate budgets there (the vendor guard, logic/guard.share_rates), as every import of a target does.
    """
    from vendor_import.connectors import build_connector, load_settings
    from vendor_import.connectors.base import StepContext
    from vendor_import.source import FileSource

    settings = load_settings(vendor, settings_doc)
    conn = build_connector(vendor, settings, session=session)
    if shared_table:
        import boto3
        from vendor_import.logic.guard import share_rates

        endpoint, table = shared_table.split("|", 1)
        share_rates(vendor, "default", conn, settings, boto3.resource(
            "dynamodb", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
            aws_secret_access_key="bench").Table(table))
    if fake_post:
        from vendor_import.connectors import cirrus_xml as cx

        conn._token = lambda: "token"

        def all_accepted(job, xml, count, what):
            return [cx.RecordResult(True, "1") for _ in range(count)]

        conn._post_batch = all_accepted
    counters: dict[str, Any] = {"checkpoints": 0, "reject_parts": 0}
    timeline: list[tuple[float, int]] = []
    wall0 = time.perf_counter()

    def checkpoint(job):
        counters["checkpoints"] += 1
        if checkpoint_seconds:
            time.sleep(checkpoint_seconds)
        timeline.append((time.perf_counter() - wall0, int((job.get("counts") or {}).get("records", 0))))

    def emit_rejects(part_id, rows, raw=None, fmt=None):
        counters["reject_parts"] += 1

    deadline = [time.monotonic() + lambda_seconds]
    ctx = StepContext(source=FileSource(path), time_left=lambda: deadline[0] - time.monotonic(),
                      checkpoint=checkpoint, emit_rejects=emit_rejects, job_id="bench")
    validate_cpu = 0.0
    if validate:
        start = cpu_seconds()
        conn.validate(ctx)
        validate_cpu = cpu_seconds() - start
    wall0 = time.perf_counter()
    cpu0 = cpu_seconds()
    progress = conn.submit(ctx)
    polls = 0
    while not progress.done:
        deadline[0] = time.monotonic() + lambda_seconds  # each poll is a new Lambda run
        progress = conn.poll(progress.job, ctx)
        polls += 1
    connections = 0
    for adapter in {id(a): a for a in conn.session.adapters.values()}.values():  # http:// and https://
        for pool in list(adapter.poolmanager.pools._container.values()):
            connections += getattr(pool, "num_connections", 0)
    return {"wall": time.perf_counter() - wall0, "cpu": cpu_seconds() - cpu0, "validate_cpu": validate_cpu,
            "polls": polls, "state": progress.state.value if progress.state else None,
            "counts": dict(progress.counts), "connections": connections, "timeline": timeline, **counters}


def run_import_child(vendor: str, settings_doc: dict[str, Any], path: str, *, layer: Path | None = None,
                     cpu: int = 0, validate: bool = False, fake_post: bool = False, canned_cirrus: bool = False,
                     checkpoint_seconds: float = 0.0, warm_up: bool = False,
                     shared_table: str = "") -> dict[str, Any]:
    """``run_import`` in a fresh process pinned to ``cpu``, with library ``layer`` (default: this one);
    ``warm_up``: a small Cirrus file is imported first, not measured."""
    args = [str(ROOT / "bench" / "_drive.py"), vendor, path, json.dumps(settings_doc), "--cpu", str(cpu),
            "--checkpoint-seconds", str(checkpoint_seconds)]
    args += ["--validate"] if validate else []
    args += ["--fake-post"] if fake_post else []
    args += ["--canned-cirrus"] if canned_cirrus else []
    args += ["--warm-up"] if warm_up else []
    args += ["--shared-table", shared_table] if shared_table else []
    return run_child(args, timeout=1800, env=child_env(layer=layer))


def steady_rate(timeline: list[tuple[float, int]], skip: float = 2.0) -> float | None:
    """Records per second between ``skip`` seconds after the start and the last checkpoint
    (leaves out the start-up); None when the run is too short."""
    late = [(t, n) for t, n in timeline if t >= skip]
    if len(late) < 2 or late[-1][0] - late[0][0] < 1.0:
        return None
    return (late[-1][1] - late[0][1]) / (late[-1][0] - late[0][0])


# -- a Cirrus session answering at once --------------------------------------------------------------
def _Answer(content: bytes, content_type: str = "application/xml; charset=utf-8"):
    """A requests Response already read (what vendor_import.http accepts from a preloading transport)."""
    from requests.models import Response
    from requests.structures import CaseInsensitiveDict

    resp = Response()
    resp.status_code = 200
    resp.headers = CaseInsensitiveDict({"Content-Type": content_type, "Content-Length": str(len(content))})
    resp._content = content  # noqa: SLF001 - preloaded
    resp.encoding = "utf-8"
    return resp


def canned_cirrus_session():
    """A requests session answering the sign-in and every DataAction call at once, with the
    simulator's own answer layout (each record's fields echoed, Success, GUID, ErrorMessage)."""
    import requests

    from local.simulators.cirrus import CirrusSimulator

    sim = CirrusSimulator()
    fields = {"Name": "Account 000000001", "Address": "1 rue de la Paix, Paris", "Phone": "+33 1 23 45 67 89",
              "Email": "contact1@example.com", "Industry": "Retail", "LastAuditDate": "2017-06-12 15:40:47+02"}
    answers: dict[int, _Answer] = {}

    class Canned(requests.Session):
        def request(self, method, url, params=None, data=None, headers=None, **kwargs: Any):
            if "AuthToken" in url:
                return _Answer(b'"bench-token"', "application/json")
            count = data.count(b"%3C%2FAccount%3E")  # one per record: </Account>
            if count not in answers:
                reply = sim._xml_answer(200, [(True, str(2458939956261816452 + i), "", "Account", fields)
                                              for i in range(count)])
                answers[count] = _Answer(reply.body.encode("utf-8"))
            return answers[count]

    return Canned()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("vendor")
    p.add_argument("path")
    p.add_argument("settings")
    p.add_argument("--cpu", type=int, default=0)
    p.add_argument("--validate", action="store_true")
    p.add_argument("--fake-post", action="store_true")
    p.add_argument("--canned-cirrus", action="store_true")
    p.add_argument("--checkpoint-seconds", type=float, default=0.0)
    p.add_argument("--warm-up", action="store_true",
                   help="first import a small file of the same vendor (not measured): the figures are then "
                        "per record, without the first call's one-off lazy imports (bench/cold_start.py has those)")
    p.add_argument("--shared-table", default="", help="<DynamoDB endpoint>|<table>: the guard's shared rates")
    args = p.parse_args()
    pin(args.cpu)
    import boto3  # noqa: F401 - what the vendor function has loaded (memory baseline)
    import vendor_import.connectors
    from aws_lambda_powertools import Logger  # noqa: F401

    vendor_import.connectors.connector_class(args.vendor)  # imported before anything is measured
    rss_imports = _rss_mb()
    if args.warm_up:
        import tempfile

        from _files import write_cirrus

        with tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp:
            small = Path(tmp) / "warm-up.xml"
            write_cirrus(small, 20_000)  # about 75 records
            run_import(args.vendor, json.loads(args.settings), str(small), validate=args.validate,
                       fake_post=args.fake_post, session=canned_cirrus_session() if args.canned_cirrus else None)
    session = canned_cirrus_session() if args.canned_cirrus else None
    r = run_import(args.vendor, json.loads(args.settings), args.path, validate=args.validate,
                   fake_post=args.fake_post, checkpoint_seconds=args.checkpoint_seconds, session=session,
                   shared_table=args.shared_table)
    r.update(peak_rss_mb=peak_rss_mb(), rss_after_imports_mb=rss_imports,
             library=str(Path(vendor_import.connectors.__file__).parents[1]))
    print(json.dumps(r))
    return 0


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


if __name__ == "__main__":
    sys.exit(main())
