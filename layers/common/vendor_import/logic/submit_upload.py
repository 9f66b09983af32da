"""The submit function's logic: S3 upload events (via SQS) -> one execution per object version.

Bad uploads (unknown vendor, empty, over the vendor's size limit, bad options) end here with a
FAILED status record and an SNS message: no execution, no vendor call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..connectors import VENDORS
from ..errors import InputError
from ..model import FinalState
from .finalize import Finalizer, vendor_from_key
from .routing import build_request, decode_event_key, execution_name, vendor_of
from .vendor_step import precheck


@dataclass
class Outcome:
    key: str
    action: str  # started | duplicate | rejected | ignored
    job_id: str | None = None
    detail: str = ""
    target: str = "default"  # the vendor target an execution was started for (metrics dimension)


class UploadRouter:
    def __init__(self, *, sfn_client, s3_client, state_machines: dict[str, str], finalizer: Finalizer,
                 logger=None):
        self.sfn = sfn_client
        self.s3 = s3_client
        self.state_machines = state_machines
        self.finalizer = finalizer
        self.logger = logger

    def handle_message_body(self, body: str) -> list[Outcome]:
        """One SQS message body: an S3 event notification (or S3's test event)."""
        try:
            event = json.loads(body)
        except ValueError:
            raise InputError("queue message is not JSON: not an S3 event notification") from None
        if event.get("Event") == "s3:TestEvent":
            return [Outcome(key="", action="ignored", detail="s3:TestEvent")]
        return [self.handle_record(r) for r in event.get("Records", [])]

    def handle_record(self, record: dict[str, Any]) -> Outcome:
        s3 = record.get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name")
        obj = s3.get("object") or {}
        if not bucket or "key" not in obj:
            raise InputError("S3 event record without bucket or object key")
        key = decode_event_key(obj["key"])
        if key.endswith("/"):
            return Outcome(key=key, action="ignored", detail="folder placeholder")
        version = obj.get("versionId")
        etag = obj.get("eTag")
        size = obj.get("size")
        job_id = execution_name(bucket, key, version or etag or obj.get("sequencer"))
        request = None
        try:
            vendor = vendor_of(key)
            if vendor not in VENDORS or vendor not in self.state_machines:
                raise InputError(
                    f"unknown vendor {vendor!r} in {key!r}: upload under inbox/<vendor>/ with vendor "
                    f"one of {', '.join(VENDORS)}"
                )
            head = self._head(bucket, key, version)
            if size is None:
                size = head.get("ContentLength")
            request = build_request(bucket, key, metadata=head.get("Metadata") or {}, version_id=version,
                                    etag=etag, size=size)
            compressed = key.lower().endswith(".gz") or bool(head.get("ContentEncoding"))
            precheck(vendor, int(size if size is not None else 1), request.options, compressed=compressed)
        except InputError as exc:
            return self._reject(job_id, bucket, key, version, etag, size, exc,
                                request.target if request else None)
        try:
            inp = request.to_input()
            if record.get("eventTime"):  # the vendor guard serves its queue in upload order (logic/guard.py)
                inp["uploaded_at"] = record["eventTime"]
            self.sfn.start_execution(stateMachineArn=self.state_machines[vendor], name=job_id, input=json.dumps(inp))
        except self.sfn.exceptions.ExecutionAlreadyExists:
            return Outcome(key=key, action="duplicate", job_id=job_id,
                           detail="an execution for this object version already exists")
        return Outcome(key=key, action="started", job_id=job_id, target=request.target)

    def _head(self, bucket: str, key: str, version: str | None) -> dict[str, Any]:
        kwargs = {"Bucket": bucket, "Key": key}
        if version:
            kwargs["VersionId"] = version
        try:
            return self.s3.head_object(**kwargs)
        except self.s3.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                raise InputError(f"{key!r} was deleted before it could be imported") from None
            raise

    def _reject(self, job_id, bucket, key, version, etag, size, exc: InputError, target=None) -> Outcome:
        inp = {"bucket": bucket, "key": key, "version_id": version, "etag": etag, "size": size}
        if target:  # chosen by metadata: the key alone would not tell Finalize
            inp["target"] = target
        existing = self.finalizer.jobs.get(job_id)
        if existing and existing.get("notified_at"):
            return Outcome(key=key, action="duplicate", job_id=job_id, detail=exc.message)
        # an empty, dot or odd vendor segment ("inbox//x", "inbox/../x"): "unknown", never a key part
        vendor = vendor_from_key(key)
        self.finalizer.record(job_id=job_id, vendor=vendor, inp=inp,
                              job={"source_name": key.rsplit("/", 1)[-1]}, state=FinalState.FAILED,
                              message=exc.message, error_type=type(exc).__name__,
                              error_message=exc.message)
        return Outcome(key=key, action="rejected", job_id=job_id, detail=exc.message)
