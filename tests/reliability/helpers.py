"""Helpers shared by the reliability tests: credentials, samples, outcome checks, figures."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"
VENDORS = ("hopex", "campaign", "aep", "simplemente", "cirrus")
LOGICAL = {"hopex": "Hopex", "campaign": "Campaign", "aep": "Aep", "simplemente": "Simplemente", "cirrus": "Cirrus"}

# Distinctive credentials, each with characters that URL encoding and base64 change, so a leak in
# any encoding is caught (see test_secrets.py).
SECRETS = {
    "hopex_password": "Hx-pa55+w/rd=Q7vZk2",
    "hopex_client_secret": "Hx-uas-cl!ent+s3cret/9PqR",
    "campaign_client_secret": "Cp-ims+s3cret/K8wLm=x",
    "aep_client_secret": "Ae-ims+s3cret/T4nVb=y",
    "simplemente_secret": "Se-app+s3cret/M2cXd=z",
    "cirrus_password": "Cs-pa55+w/rd=R9tHj&u",
}

# printed by pytest_terminal_summary (conftest.py): section title -> lines
FIGURES: dict[str, list[str]] = {}


def report(section: str, *lines: str) -> None:
    FIGURES.setdefault(section, []).extend(lines)


def default_settings(sims: dict[str, Any], vendor: str) -> dict[str, Any]:
    doc = sims[vendor].settings()
    if vendor == "simplemente":  # quicker "no message yet" verdicts: the loop polls at scaled waits
        doc = {**doc, "poll": {"first_wait_seconds": 1, "max_wait_seconds": 4, "factor": 1.5}}
    return doc

def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:50]


def drop_messages(pipe, queue_url: str) -> int:
    """Delete what waits in a queue (PurgeQueue is allowed once a minute only)."""
    dropped = 0
    while True:
        msgs = pipe.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            return dropped
        for m in msgs:
            pipe.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
            dropped += 1


def take_queue_messages(pipe) -> list[str]:
    """Take every waiting message off the upload queue; return the bodies."""
    bodies = []
    while True:
        msgs = pipe.sqs.receive_message(QueueUrl=pipe.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            return bodies
        for m in msgs:
            bodies.append(m["Body"])
            pipe.sqs.delete_message(QueueUrl=pipe.queue_url, ReceiptHandle=m["ReceiptHandle"])


def status_records(pipe) -> list[dict[str, Any]]:
    """Every finished status record in the jobs table."""
    from vendor_import.dal.jobs_table import _from_dynamo

    items, kwargs = [], {"ConsistentRead": True}
    while True:
        page = pipe.table.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return [_from_dynamo(i) for i in items if "finished_at" in i]


def status_documents(pipe) -> list[dict[str, Any]]:
    keys = [o["Key"] for page in pipe.s3.get_paginator("list_objects_v2").paginate(Bucket=pipe.bucket, Prefix="status/")
            for o in page.get("Contents", [])]
    return [json.loads(pipe.s3.get_object(Bucket=pipe.bucket, Key=k)["Body"].read()) for k in keys]


def outcomes_by_job(pipe, job_ids: Iterable[str]) -> dict[str, dict[str, list]]:
    """For each job id: its status records, status JSON documents and SNS messages."""
    from vendor_import.dal.jobs_table import _from_dynamo

    wanted = set(job_ids)
    out: dict[str, dict[str, list]] = {j: {"records": [], "documents": [], "messages": []} for j in wanted}
    if len(wanted) > 20:
        records = status_records(pipe)
    else:
        items = (pipe.table.get_item(Key={"job_id": j}, ConsistentRead=True).get("Item") for j in wanted)
        records = [_from_dynamo(i) for i in items if i and "finished_at" in i]
    for record in records:
        if record["job_id"] in wanted:
            out[record["job_id"]]["records"].append(record)
    for page in pipe.s3.get_paginator("list_objects_v2").paginate(Bucket=pipe.bucket, Prefix="status/"):
        for obj in page.get("Contents", []):
            job_id = obj["Key"].rsplit("/", 1)[-1].removesuffix(".json")
            if job_id in wanted:
                body = pipe.s3.get_object(Bucket=pipe.bucket, Key=obj["Key"])["Body"].read()
                out[job_id]["documents"].append(json.loads(body))
    for message in pipe.drain_messages():
        if message["body"].get("job_id") in wanted:
            out[message["body"]["job_id"]]["messages"].append(message)
    return out


def assert_one_outcome(found: dict[str, list], job_id: str) -> dict[str, Any]:
    """Exactly one status record, one status JSON and one SNS message, all saying the same."""
    records, documents, messages = found["records"], found["documents"], found["messages"]
    assert len(records) == 1, f"{job_id}: {len(records)} status records"
    assert len(documents) == 1, f"{job_id}: {len(documents)} status documents"
    assert len(messages) == 1, f"{job_id}: {len(messages)} SNS messages"
    record, document, message = records[0], documents[0], messages[0]
    assert record.get("notified_at"), f"{job_id}: the record was never marked notified"
    assert document == message["body"] == {k: v for k, v in record.items() if k != "notified_at"}, job_id
    assert message["attributes"]["state"] == record["state"], job_id
    return record


def executions_for(pipe, vendor: str, key: str | None = None, job_id: str | None = None) -> list[dict[str, Any]]:
    """Executions of a vendor's state machine (all statuses) for an S3 key and/or a job id."""
    found = []
    for page in pipe.sfn.get_paginator("list_executions").paginate(stateMachineArn=pipe.state_machine_arn(vendor)):
        for ex in page["executions"]:
            if job_id is not None and ex["name"] != job_id:
                continue
            if key is not None:
                desc = pipe.sfn.describe_execution(executionArn=ex["executionArn"])
                try:
                    if json.loads(desc.get("input") or "{}").get("key") != key:
                        continue
                except (ValueError, AttributeError):
                    continue
            found.append(ex)
    return found


def wait_all(pipe, keys_outcomes: list[tuple[str, dict[str, Any] | None]]):
    """Wait for the imports of uploads already pumped (key, pump outcome): each result, as
    LocalPipeline.import_file returns it (the EventBridge rule emulated for abnormal ends)."""
    return [pipe._result_for(key, outcome) for key, outcome in keys_outcomes]


def import_many(pipe, uploads: list[tuple[str, bytes, dict[str, str] | None]]):
    """Upload every file, let the queue deliver them all, then wait for each import."""
    for key, body, metadata in uploads:
        pipe.upload(body, key, metadata)
    outcomes = pipe.pump_queue(max_rounds=1000)
    by_key: dict[str, dict[str, Any]] = {}
    for outcome in outcomes:
        by_key[outcome["key"]] = outcome
    return wait_all(pipe, [(key, by_key.get(key)) for key, _, _ in uploads])


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# -- sample uploads ----------------------------------------------------------------------------------------

class Sample:
    """One upload for a vendor: its key, its bytes, the record ids it holds (record vendors) and
    how many of them the simulator refuses (values holding INVALID)."""

    def __init__(self, vendor: str, key: str, body: bytes, ids: list[str] | None = None,
                 refused: set[str] | None = None, tag: str = ""):
        self.vendor, self.key, self.body = vendor, key, body
        self.ids = ids or []
        self.refused = refused or set()
        self.tag = tag


def make_sample(vendor: str, tag: str, *, records: int = 6, invalid: int = 0, variant: str = "ok") -> Sample:
    """A small file for ``vendor`` named after ``tag`` (unique per test): ``variant`` picks the
    vendor outcome where the simulator can be steered (ok, rejects, fail)."""
    tag = slug(tag)
    if vendor == "hopex":
        lines = [f'.Create ."Application" "{tag} app {n}"' for n in range(records)]
        if variant == "rejects":
            lines.append(f'.Create ."INVALID-Widget" "{tag} widget"')
        if variant == "fail":
            lines.append("- FAIL-JOB")
        body = ("\n".join([f"- {tag}", *lines, ".Validate"]) + "\n").encode()
        return Sample(vendor, f"inbox/hopex/{tag}.mgl", body, tag=tag)
    if vendor == "campaign":
        prefix = {"ok": "ok", "fail": "fail96", "rejects": "ok"}[variant]
        mapping = f"{prefix}{re.sub(r'[^A-Za-z0-9]', '', tag)}"[:60] + str(records)
        return Sample(vendor, f"inbox/campaign/{tag}.json", json.dumps({"mapping_id": mapping}).encode(),
                      tag=mapping)
    if vendor == "simplemente":
        rows = ['"Code";"Libelle";"Prix"']
        rows += [f'"{tag}-{n}";"Article {n}{" INVALID" if n < invalid else ""}";{n}.5' for n in range(records)]
        if variant == "fail":
            rows.append(f'"{tag}-x";"FAIL-FLOW";0')
        body = ("\r\n".join(rows) + "\r\n").encode()
        return Sample(vendor, f"inbox/simplemente/flux=articles/{tag}.csv", body, tag=tag)
    ids = [f"{tag}-{n:04d}" for n in range(records)]
    refused = set(ids[:invalid])
    if vendor == "aep":
        body = "".join(json.dumps({"id": i, "email": f"{i}@example.com",
                                   "firstName": "INVALID" if i in refused else "Ada"}) + "\n" for i in ids)
        return Sample(vendor, f"inbox/aep/{tag}.ndjson", body.encode(), ids, refused, tag=tag)
    if vendor == "cirrus":
        parts = ["<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "<Data>"]
        for i in ids:
            parent = "INVALID parent" if i in refused else "Acme Holding"
            parts.append(f"  <Account><Name>{i}</Name><Phone>+33 1 00 00 00 00</Phone>"
                         f"<ParentAccount>{parent}</ParentAccount></Account>")
        parts.append("</Data>")
        return Sample(vendor, f"inbox/cirrus/{tag}.xml", ("\n".join(parts) + "\n").encode(), ids, refused, tag=tag)
    raise ValueError(vendor)


def submissions(sims: dict[str, Any], sample: Sample) -> int:
    """How many times the vendor was asked to import this sample (counted at the simulator). For
    the record vendors: the most times any one of its records was received."""
    sim = sims[sample.vendor]
    if sample.vendor == "hopex":
        with sim._lock:
            return sum(1 for job in sim.jobs.values() if job.filename == sample.key.rsplit("/", 1)[-1])
    if sample.vendor == "campaign":
        return len(sim.ingest_posts(sample.tag))
    if sample.vendor == "simplemente":
        from urllib.parse import unquote

        with sim._lock:
            return sum(1 for imp in sim.imports.values() if f"/{sample.tag}.csv" in unquote(imp.url))
    counts = received(sims, sample)
    return max(counts.values(), default=0)


def received(sims: dict[str, Any], sample: Sample) -> dict[str, int]:
    """Record vendors: how many times the simulator received each record id of the sample."""
    from collections import Counter

    sim = sims[sample.vendor]
    wanted = set(sample.ids)
    if sample.vendor == "aep":
        with sim._inlet_lock:
            seen = [r.get("id") for r in (*sim.accepted, *sim.refused) if isinstance(r, dict)]
    else:
        with sim._lock:
            seen = [r["fields"].get("Name") for r in sim.received]
    return dict(Counter(i for i in seen if i in wanted))


def accepted_at_vendor(sims: dict[str, Any], sample: Sample) -> dict[str, int]:
    """Record vendors: how many times the simulator accepted each record id of the sample."""
    from collections import Counter

    sim = sims[sample.vendor]
    wanted = set(sample.ids)
    if sample.vendor == "aep":
        with sim._inlet_lock:
            seen = [r.get("id") for r in sim.accepted if isinstance(r, dict)]
    else:
        with sim._lock:
            seen = [r["fields"].get("Name") for r in sim.received
                    if not any("INVALID" in v for v in r["fields"].values())]
    return dict(Counter(i for i in seen if i in wanted))
