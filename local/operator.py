"""Operator commands: find, inspect and re-run imports, against a deployed stack or local output.

    s3-vendor-import list [--vendor cirrus] [--target prod] [--limit 20] --stack NAME | --local DIR
    s3-vendor-import show JOB_ID                         --stack NAME | --local DIR
    s3-vendor-import rejects JOB_ID --out DIR            --stack NAME | --local DIR
    s3-vendor-import resubmit JOB_ID                     --stack NAME | --local DIR (--simulator | --settings F)

Every command takes ``--json`` (one JSON document on stdout). ``list`` without ``--vendor`` lists
every vendor's imports; an unknown ``--vendor`` is a usage error (exit 2) naming the valid ones.
With ``--local``, ``show`` prints the local files (status.json, rejects) the runner copied, not the
S3 URIs of the runner's temporary bucket.

``--stack`` finds the import bucket and the jobs table from the stack's outputs (the usual AWS
credentials and region: AWS_PROFILE, AWS_REGION, ``--region``). ``--local`` reads the status JSON
files the local runner copied under DIR (``out/`` by default layout: DIR/.../<job_id>/status.json).

The backends take boto3 clients (or a folder), so tests and scripts can use them directly.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from .report import report, settings_for, table

# Vendors whose raw rejects file holds the refused records themselves, in the upload's format:
# copying it back into the inbox imports them again. HOPEX returns an opaque report and
# simplement-e messages, which are not records (docs/vendors/*.md, "Re-uploading the rejects file").
REUPLOADABLE = {"cirrus", "aep"}
# options that describe how the upload itself was written: a rejects file is written in the
# connector's own format (AEP: <name>.rejected.ndjson), so they no longer apply to it
NOT_FOR_REJECTS = {"aep": frozenset({"format", "delimiter"}), "cirrus": frozenset()}


class OperatorError(Exception):
    """Something an operator can fix: unknown job, no rejects, missing stack output (exit 1)."""


# -- backends -----------------------------------------------------------------------------------------------

def stack_outputs(session, stack: str) -> dict[str, str]:
    """A deployed stack's outputs (OutputKey -> OutputValue); OperatorError when it cannot be read."""
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    except Exception as exc:  # noqa: BLE001 - no credentials, no region, no such stack: say which
        raise OperatorError(f"cannot read stack {stack!r}: {exc}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


class AwsBackend:
    """The deployed stack: the jobs table (index by-vendor) and the import bucket."""

    def __init__(self, s3_client, dynamodb_resource, bucket: str, table_name: str):
        from vendor_import.dal.jobs_table import JobsTable

        self.s3 = s3_client
        self.bucket = bucket
        self.jobs = JobsTable(dynamodb_resource, table_name)

    @classmethod
    def from_stack(cls, stack: str, *, session=None, region: str | None = None) -> AwsBackend:
        import boto3

        session = session or boto3.Session(region_name=region)
        outputs = stack_outputs(session, stack)
        missing = [k for k in ("ImportBucketName", "JobsTableName") if k not in outputs]
        if missing:
            raise OperatorError(f"stack {stack!r} has no output {', '.join(missing)}: is it an s3-vendor-import stack?")
        return cls(session.client("s3"), session.resource("dynamodb"), outputs["ImportBucketName"],
                   outputs["JobsTableName"])

    def list(self, vendor: str | None, limit: int, target: str | None = None) -> list[dict[str, Any]]:
        """Newest first; vendor None: every vendor's (the by-vendor index is queried per vendor);
        target None: every target's."""
        if vendor:
            return self.jobs.recent(vendor, limit, target=target)
        from vendor_import.connectors import VENDORS

        records = [r for v in VENDORS for r in self.jobs.recent(v, limit, target=target)]
        return newest_first(records)[:limit]

    def get(self, job_id: str) -> dict[str, Any]:
        record = self.jobs.get(job_id)
        if not record:
            raise OperatorError(f"no import {job_id!r} in table {self.jobs.table.name}")
        return record

    def download(self, uri: str, dest: Path) -> Path:
        bucket, key = split_uri(uri)
        with open(dest, "wb") as f:
            shutil.copyfileobj(self.s3.get_object(Bucket=bucket, Key=key)["Body"], f)
        return dest

    def resubmit(self, job_id: str) -> str:
        """Copy the import's raw rejects into the inbox under a new key (with the upload's metadata,
        so options given as metadata apply again): S3 starts a new import."""
        record = self.get(job_id)
        raw_uri = reuploadable_rejects(record)
        key = resubmit_key(record, raw_uri)
        metadata = {}
        source = record.get("source") or {}
        if source.get("bucket") and source.get("key"):
            try:
                head = {"Bucket": source["bucket"], "Key": source["key"]}
                if source.get("version_id"):
                    head["VersionId"] = source["version_id"]
                metadata = self.s3.head_object(**head).get("Metadata") or {}
            except Exception:  # noqa: BLE001 - the upload expired or was deleted: key options still apply
                metadata = {}
        metadata = resubmit_metadata(record, key, metadata)
        bucket, raw_key = split_uri(raw_uri)
        content_type = self.s3.head_object(Bucket=bucket, Key=raw_key).get("ContentType") or "binary/octet-stream"
        self.s3.copy_object(Bucket=self.bucket, Key=key, CopySource={"Bucket": bucket, "Key": raw_key},
                            Metadata=metadata, MetadataDirective="REPLACE", ContentType=content_type)
        return key


class LocalBackend:
    """What the local runner copied out: DIR/.../<job_id>/status.json and the rejects beside it."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        if not self.out_dir.is_dir():
            raise OperatorError(f"--local {self.out_dir} is not a folder (the --out of run, start or demo)")

    def _all(self) -> dict[str, tuple[dict[str, Any], Path]]:
        found: dict[str, tuple[dict[str, Any], Path]] = {}
        for path in self.out_dir.rglob("status.json"):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and record.get("job_id"):
                previous = found.get(record["job_id"])
                if previous is None or str(record.get("updated_at")) >= str(previous[0].get("updated_at")):
                    found[record["job_id"]] = (record, path.parent)
        return found

    def list(self, vendor: str | None, limit: int, target: str | None = None) -> list[dict[str, Any]]:
        """Newest first; vendor None: every vendor's; target None: every target's."""
        records = [r for r, _ in self._all().values() if (vendor is None or r.get("vendor") == vendor)
                   and (target is None or record_target(r) == target)]
        return newest_first(records)[:limit]

    def _find(self, job_id: str) -> tuple[dict[str, Any], Path]:
        found = self._all().get(job_id)
        if not found:
            raise OperatorError(f"no import {job_id!r} under {self.out_dir} (no <job_id>/status.json)")
        return found

    def get(self, job_id: str) -> dict[str, Any]:
        return self._find(job_id)[0]

    def local_paths(self, job_id: str) -> dict[str, str]:
        """Where the runner copied this import's files: status.json and the rejects beside it
        (the record's S3 URIs name the runner's temporary bucket, gone once the run ended)."""
        record, folder = self._find(job_id)
        rejects = record.get("rejects") or {}
        paths = {"status": str(folder / "status.json")}
        for name, uri in (("rejects_csv", rejects.get("csv_uri")), ("rejects_raw", rejects.get("raw_uri"))):
            if uri:
                paths[name] = str(folder / uri.rsplit("/", 1)[-1])
        return paths

    def local_file(self, job_id: str, uri: str) -> Path:
        path = self._find(job_id)[1] / uri.rsplit("/", 1)[-1]
        if not path.is_file():
            raise OperatorError(f"{path} is missing: the runner copies the rejects next to status.json")
        return path


# -- what the commands do -------------------------------------------------------------------------------------

def record_target(record: dict[str, Any]) -> str:
    """The record's target (records written before targets existed: ``default``)."""
    return str(record.get("target") or "default")


def newest_first(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: str(r.get("updated_at") or ""), reverse=True)


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise OperatorError(f"not an S3 URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def reuploadable_rejects(record: dict[str, Any]) -> str:
    vendor = record.get("vendor")
    raw_uri = (record.get("rejects") or {}).get("raw_uri")
    if vendor not in REUPLOADABLE:
        raise OperatorError(f"{vendor} rejects are not records that can be imported again (only "
                            f"{', '.join(sorted(REUPLOADABLE))}): fix the source file and upload it instead")
    if not raw_uri:
        raise OperatorError(f"import {record.get('job_id')} has no rejects file: nothing to resubmit")
    return raw_uri


def _dropped(vendor: str, name: str) -> bool:
    return name.strip().lower().replace("-", "_") in NOT_FOR_REJECTS.get(vendor, frozenset())


def resubmit_key(record: dict[str, Any], raw_uri: str, now: float | None = None) -> str:
    """inbox/<vendor>/<the original folders and the name=value options that still apply>/<rejects
    name + UTC time>.<ext>. A format option (AEP format=csv/, delimiter=;/) is dropped: the
    rejects file has its own format."""
    source_key = (record.get("source") or {}).get("key") or ""
    vendor = record["vendor"]
    folder = f"inbox/{vendor}"
    if source_key.startswith(f"inbox/{vendor}/"):
        segments = source_key.split("/")[2:-1]
        kept = [seg for seg in segments if not ("=" in seg and _dropped(vendor, seg.partition("=")[0]))]
        folder = "/".join([folder, *kept])
    name = raw_uri.rsplit("/", 1)[-1]
    stem, dot, ext = name.rpartition(".")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    new_name = f"{stem}.resubmit-{stamp}.{ext}" if dot else f"{name}.resubmit-{stamp}"
    return f"{folder}/{new_name}"


def resubmit_metadata(record: dict[str, Any], key: str, metadata: dict[str, str]) -> dict[str, str]:
    """S3 metadata of the re-uploaded rejects file: the upload's own metadata without the options
    that no longer apply, plus the options the import had from elsewhere (a console start: the
    status record keeps them) that still apply and are not already a key segment of ``key``."""
    from vendor_import.logic.routing import options_from_key

    vendor = record["vendor"]
    out = {name: str(value) for name, value in metadata.items() if not _dropped(vendor, name)}
    in_key, _dry = options_from_key(key)
    given = {name.lower().replace("-", "_") for name in out}
    for name, value in (record.get("options") or {}).items():
        norm = str(name).lower().replace("-", "_")
        if _dropped(vendor, norm) or norm in in_key or norm in given or value is None:
            continue
        out[norm] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    from vendor_import.logic.routing import target_from_key

    target = record_target(record)
    if target != "default" and target_from_key(key) != target and "target" not in given:
        out["target"] = target  # chosen in the console: the rejects go to the same target
    return out


def execution_link(record: dict[str, Any]) -> str | None:
    from vendor_import.dal.notifier import execution_console_url

    return execution_console_url(record.get("execution_arn"))


def list_text(records: Iterable[dict[str, Any]]) -> str:
    rows = []
    for r in records:
        counts = r.get("counts") or {}
        rejects = r.get("rejects") or {}
        sent = counts.get("sent", counts.get("records", ""))
        refused = rejects["rows"] if rejects.get("rows") is not None else counts.get("rejected", "")
        name = ((r.get("source") or {}).get("key") or r.get("source_key") or "").rsplit("/", 1)[-1]
        rows.append([str(r.get("updated_at") or "")[:19].replace("T", " "), str(r.get("state") or ""),
                     record_target(r)[:20], name[:40], str(sent), str(refused), str(r.get("job_id"))])
    if not rows:
        return "no imports"
    return table(rows, ["updated (UTC)", "state", "target", "file", "records", "rejects", "job id"])


def show_text(record: dict[str, Any], local: dict[str, str] | None = None) -> str:
    """The record for a reader. ``local`` (LocalBackend.local_paths): print those files instead of
    the temporary bucket's S3 URIs, and no AWS console link (the execution ran in the runner)."""
    source = record.get("source") or {}
    rejects = record.get("rejects") or {}
    if local is not None:
        source = {"key": source.get("key") or record.get("source_key")}
        rejects = {**rejects, "csv_uri": local.get("rejects_csv"), "raw_uri": local.get("rejects_raw")}
        record = {**record, "status_uri": local["status"], "execution_arn": None}
    error = record.get("error") or {}
    counts = record.get("counts") or {}
    lines = [("job id", record.get("job_id")), ("vendor", record.get("vendor")), ("target", record_target(record)),
             ("state", record.get("state")),
             ("dry run", "yes" if record.get("dry_run") else None), ("message", record.get("message")),
             ("file", source.get("uri") or source.get("key") or record.get("source_key")),
             ("version", source.get("version_id")), ("vendor ref", record.get("vendor_ref")),
             ("counts", ", ".join(f"{k} {v}" for k, v in counts.items())),
             ("rejects", f"{rejects.get('rows', 0)} row(s)" if rejects.get("csv_uri") or rejects.get("raw_uri")
              else None),
             ("  csv", rejects.get("csv_uri")), ("  vendor file", rejects.get("raw_uri")),
             ("error", f"{error.get('type')}: {error.get('message')}" if error else None),
             ("started", record.get("started_at")), ("finished", record.get("finished_at")),
             ("duration", f"{record['duration_seconds']} s" if record.get("duration_seconds") is not None else None),
             ("polls", record.get("polls")), ("execution", record.get("execution_arn")),
             ("console", execution_link(record)), ("status", record.get("status_uri"))]
    from vendor_import.scrub import neutralise

    # one line per field whatever the texts hold (line breaks, ANSI escapes are shown escaped)
    return "\n".join(f"{label + ':':<16}{neutralise(value)}" for label, value in lines if value not in (None, ""))


def fetch_rejects(backend, job_id: str, out: Path) -> list[Path]:
    record = backend.get(job_id)
    rejects = record.get("rejects") or {}
    uris = [u for u in (rejects.get("csv_uri"), rejects.get("raw_uri")) if u]
    if not uris:
        return []
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for uri in uris:
        dest = out / uri.rsplit("/", 1)[-1]
        if isinstance(backend, LocalBackend):
            shutil.copyfile(backend.local_file(job_id, uri), dest)
        else:
            backend.download(uri, dest)
        paths.append(dest)
    return paths


# -- the CLI's subcommands --------------------------------------------------------------------------------------

def add_subcommands(sub) -> None:
    from vendor_import.connectors import VENDORS

    def target(p):
        where = p.add_mutually_exclusive_group(required=True)
        where.add_argument("--stack", help="a deployed stack: its outputs name the bucket and the jobs table")
        where.add_argument("--local", metavar="DIR", help="the local runner's output folder (e.g. out)")
        p.add_argument("--region", help="the stack's region (default: AWS_REGION / your profile's)")
        p.add_argument("--json", action="store_true", help="print JSON instead of text")

    p = sub.add_parser("list", help="recent imports, newest first (every vendor's, or --vendor's)")
    p.add_argument("--vendor", choices=VENDORS, help="only this vendor's imports (default: every vendor)")
    p.add_argument("--target", help="only the imports of this vendor target (settings targets; default: every "
                                    "target; records from before targets are target default)")
    p.add_argument("--limit", type=int, default=20)
    target(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="one import: status, counts, rejects, execution console link")
    p.add_argument("job_id")
    target(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("rejects", help="download an import's rejects files")
    p.add_argument("job_id")
    p.add_argument("--out", required=True, help="the folder to write them to")
    target(p)
    p.set_defaults(func=cmd_rejects)

    p = sub.add_parser("resubmit", help="import an import's re-uploadable rejects file again (cirrus, aep)")
    p.add_argument("job_id")
    target(p)
    p.add_argument("--simulator", action="store_true", help="with --local: import against the vendor simulator")
    p.add_argument("--settings", help="with --local: the vendor settings JSON file to import with")
    p.add_argument("--out", help="with --local: where the new import's status and rejects go (default: DIR)")
    p.add_argument("--time-scale", type=float, default=None)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.set_defaults(func=cmd_resubmit)

    p = sub.add_parser("sns-samples", help="write a sample SNS message per final state (local runs) to --out")
    p.add_argument("--out", default="docs/sns-samples")
    p.add_argument("--json", action="store_true", help="print the written paths as a JSON list")
    p.set_defaults(func=cmd_sns_samples)


def backend_for(args) -> AwsBackend | LocalBackend:
    if args.local:
        return LocalBackend(args.local)
    return AwsBackend.from_stack(args.stack, region=args.region)


def _run(args, body, stream: TextIO | None = None) -> int:
    stream = stream or sys.stdout
    try:
        return body(backend_for(args), stream)
    except OperatorError as exc:
        print(f"s3-vendor-import {args.command}: {exc}", file=sys.stderr)
        return 1


def _json(doc: Any, out: TextIO) -> None:
    print(json.dumps(doc, indent=2, default=str), file=out)


def cmd_list(args) -> int:
    def body(backend, out):
        records = backend.list(args.vendor, args.limit, args.target)
        if args.json:
            _json(records, out)
        else:
            print(list_text(records), file=out)
        return 0

    return _run(args, body)


def cmd_show(args) -> int:
    def body(backend, out):
        record = backend.get(args.job_id)
        local = backend.local_paths(args.job_id) if isinstance(backend, LocalBackend) else None
        if args.json:
            _json({**record, "local_files": local} if local else record, out)
        else:
            print(show_text(record, local), file=out)
        return 0

    return _run(args, body)


def cmd_rejects(args) -> int:
    def body(backend, out):
        paths = fetch_rejects(backend, args.job_id, Path(args.out))
        if args.json:
            _json([str(p) for p in paths], out)
            return 0
        if not paths:
            print(f"import {args.job_id} has no rejects", file=out)
        for p in paths:
            print(p, file=out)
        return 0

    return _run(args, body)


def cmd_resubmit(args) -> int:
    def body(backend, out):
        if isinstance(backend, AwsBackend):
            key = backend.resubmit(args.job_id)
            if args.json:
                _json({"job_id": args.job_id, "bucket": backend.bucket, "key": key}, out)
                return 0
            print(f"copied the rejects of {args.job_id} to s3://{backend.bucket}/{key}: a new import starts; "
                  f"follow it with `s3-vendor-import list --vendor {key.split('/')[1]} --stack {args.stack}`", file=out)
            return 0
        return resubmit_local(backend, args, out)

    return _run(args, body)


def resubmit_local(backend: LocalBackend, args, out: TextIO) -> int:
    """Run the rejects file through a local pipeline (simulator or --settings), as `run` does."""
    from .runner import DEFAULT_TIME_SCALE, LocalPipeline

    record = backend.get(args.job_id)
    raw_uri = reuploadable_rejects(record)
    path = backend.local_file(args.job_id, raw_uri)
    key = resubmit_key(record, raw_uri)
    vendor = record["vendor"]
    settings, sim = settings_for(args, vendor)
    scale = args.time_scale if args.time_scale is not None else (DEFAULT_TIME_SCALE if sim else 1.0)
    metadata = resubmit_metadata(record, key, {})  # the local runner keeps no uploads: options only
    print(f"importing {path} as {key}", file=sys.stderr if args.json else out)
    try:
        with LocalPipeline(settings={vendor: settings}, out_dir=args.out or args.local, time_scale=scale,
                           execution_timeout=args.timeout) as pipe:
            result = pipe.import_file(path, key, metadata or None)
    finally:
        if sim:
            sim.stop()
    return report(result, args.json)


# -- SNS message samples (docs/sns-samples), from real local runs -------------------------------------------------

SAMPLE_CASES = [  # (final state, sample file, key, settings overrides)
    ("SUCCEEDED", "events/files/hopex/clean.mgl", "inbox/hopex/clean.mgl", {}),
    ("SUCCEEDED_WITH_REJECTS", "events/files/hopex/with-rejects.mgl", "inbox/hopex/with-rejects.mgl", {}),
    ("FAILED", "events/files/hopex/fails.mgl", "inbox/hopex/fails.mgl", {}),
    ("TIMED_OUT", "events/files/hopex/clean.mgl", "inbox/hopex/slow/clean.mgl", {"deadline_seconds": 1}),
    ("VALIDATED", "events/files/hopex/clean.mgl", "inbox/hopex/dry-run/clean.mgl", {}),
]


def write_sns_samples(pipe, sim, out: Path) -> list[Path]:
    """Import one HOPEX sample per final state through ``pipe`` (its simulator ``sim``) and write
    what subscribers get: <STATE>.json, the SNS envelope an SQS subscriber receives (Message = the
    JSON status record), and <STATE>.email.txt, the body an e-mail subscriber receives."""
    from vendor_import.dal.notifier import email_text

    from .template_deploy import ACCOUNT, REGION, ROOT

    queue = pipe.sqs.create_queue(QueueName="local-sns-samples")["QueueUrl"]
    subscription = pipe.sns.subscribe(TopicArn=pipe.deployment.refs["CompletionTopic"], Protocol="sqs",
                                      Endpoint=f"arn:aws:sqs:{REGION}:{ACCOUNT}:local-sns-samples")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    good = sim.settings()
    try:
        for state, file, key, overrides in SAMPLE_CASES:
            pipe.set_settings("hopex", {**good, **overrides})
            result = pipe.import_file(ROOT / file, key)
            if result.state != state:
                raise OperatorError(f"{key} ended {result.state}, not {state}")
            envelope = None
            while envelope is None:
                for m in pipe.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
                    pipe.sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
                    body = json.loads(m["Body"])
                    if json.loads(body["Message"])["job_id"] == result.job_id:
                        envelope = body
            for name in ("Signature", "SigningCertURL", "UnsubscribeURL"):
                envelope.pop(name, None)  # per-subscription noise
            path = out / f"{state}.json"
            path.write_text(json.dumps(envelope, indent=2) + "\n")
            email = out / f"{state}.email.txt"
            email.write_text(email_text(json.loads(envelope["Message"])))
            written += [path, email]
    finally:
        pipe.set_settings("hopex", good)
        pipe.sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
    return written


def cmd_sns_samples(args) -> int:
    from .runner import LocalPipeline
    from .simulators.hopex import HopexSimulator

    with HopexSimulator() as sim, LocalPipeline(settings={"hopex": sim.settings()}) as pipe:
        paths = write_sns_samples(pipe, sim, Path(args.out))
    if args.json:
        _json([str(p) for p in paths], sys.stdout)
    else:
        for path in paths:
            print(path)
    return 0
