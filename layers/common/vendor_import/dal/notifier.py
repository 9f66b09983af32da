"""The completion topic: one message per import, filterable on vendor, target, state, dry_run and error_type.

Published with ``MessageStructure="json"``: every protocol gets the status record as JSON (the
``default`` body: SQS, Lambda, HTTPS and email-json subscribers), except ``email``, which gets a
plain-text summary a person can read (state, file, vendor, message, counts, rejects, error, a link
to the execution in the Step Functions console).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from .. import limits
from ..scrub import neutralise

VENDOR_NAMES = {
    "hopex": "MEGA HOPEX",
    "campaign": "Adobe Campaign Standard",
    "aep": "Adobe Experience Platform",
    "simplemente": "simplement-e",
    "cirrus": "Cirrus Shield",
}

_CONSOLE_HOSTS = {"aws": "console.aws.amazon.com", "aws-cn": "console.amazonaws.cn",
                  "aws-us-gov": "console.amazonaws-us-gov.com"}


def subject_for(record: dict[str, Any]) -> str:
    # a console start without a key still gets its message
    name = (record["source"].get("key") or "(no key)").rsplit("/", 1)[-1]
    dry = " (dry run)" if record.get("dry_run") else ""
    target = record.get("target") or "default"
    where = record["vendor"] if target == "default" else f"{record['vendor']}/{target}"
    subject = f"[{where}] {record['state']}{dry}: {name}"
    # SNS subjects: ASCII printable, no newlines, at most 100 characters
    subject = "".join(c if 32 <= ord(c) < 127 else "?" for c in subject)
    return subject[:100]


def execution_console_url(execution_arn: str | None) -> str | None:
    """The execution's page in the Step Functions console (arn:<partition>:states:<region>:...)."""
    if not execution_arn or not execution_arn.startswith("arn:"):
        return None
    parts = execution_arn.split(":")
    if len(parts) < 8 or parts[2] != "states":
        return None
    partition, region = parts[1], parts[3]
    host = _CONSOLE_HOSTS.get(partition, "console.aws.amazon.com")
    return f"https://{region}.{host}/states/home?region={region}#/v2/executions/details/{execution_arn}"


def email_text(record: dict[str, Any]) -> str:
    """The status record as a plain-text e-mail."""
    source = record.get("source") or {}
    vendor = record.get("vendor") or "unknown"
    state = record.get("state") or "?"
    file_name = (source.get("key") or "(no key)").rsplit("/", 1)[-1]
    # every value on one line, control characters shown escaped: a file name or a vendor text
    # with line breaks or ANSI escapes cannot forge a "State: SUCCEEDED" line
    title = neutralise(f"{VENDOR_NAMES.get(vendor, vendor)} import {state}"
                       f"{' (dry run)' if record.get('dry_run') else ''}: {file_name}")
    lines = [title, "=" * min(len(title), 78), "", neutralise(record.get("message") or ""), ""]

    def field(label: str, value: Any) -> None:
        if value not in (None, "", {}, []):
            lines.append(f"{label + ':':<12}{neutralise(value)}")

    field("State", state)
    field("Vendor", f"{vendor} ({VENDOR_NAMES[vendor]})" if vendor in VENDOR_NAMES else vendor)
    field("Target", record.get("target"))
    field("File", source.get("uri") or source.get("key"))
    if source.get("version_id"):
        field("Version", source["version_id"])
    field("Vendor ref", record.get("vendor_ref"))
    counts = record.get("counts") or {}
    field("Counts", ", ".join(f"{k} {v}" for k, v in counts.items() if isinstance(v, (int, float))))
    rejects = record.get("rejects") or {}
    if rejects.get("csv_uri") or rejects.get("raw_uri"):
        field("Rejects", f"{rejects.get('rows', 0)} row(s)")
        field("  CSV", rejects.get("csv_uri"))
        field("  Vendor", rejects.get("raw_uri"))
    error = record.get("error") or {}
    if error:
        field("Error", f"{error.get('type')}: {error.get('message')}")
    timing = record.get("started_at") or ""
    if record.get("finished_at"):
        timing += f" -> {record['finished_at']}"
    if record.get("duration_seconds") is not None:
        timing += f" ({record['duration_seconds']} s, {record.get('polls', 0)} poll(s))"
    field("Time", timing)
    field("Job id", record.get("job_id"))
    field("Execution", execution_console_url(record.get("execution_arn")))
    field("Status", record.get("status_uri"))
    lines += ["", "-- ", "s3-vendor-import: the JSON status record is in the jobs table and at the Status URI above.",
              "To get it as JSON here, subscribe with the email-json protocol instead.", ""]
    return "\n".join(lines)


def _message(record: dict[str, Any]) -> str:
    return json.dumps({"default": json.dumps(record, indent=2, default=str), "email": email_text(record)})


def _error_attribute(record: dict[str, Any]) -> dict[str, dict[str, str]]:
    """``error_type`` (a name of errors.ERROR_TYPES) on FAILED / TIMED_OUT messages, for filter
    policies such as ``{"error_type": ["VendorAuthError"]}``; absent when the import did not fail
    (``{"error_type": [{"exists": true}]}`` matches every failure)."""
    error_type = (record.get("error") or {}).get("type")
    return {"error_type": {"DataType": "String", "StringValue": str(error_type)}} if error_type else {}


# what Publish sends besides the message: subject (100) and attributes, with room to spare
_ENVELOPE_BYTES = 4096


def message_for(record: dict[str, Any]) -> str:
    """The MessageStructure=json body: the JSON record by default, a text summary for e-mail.
    Always within SNS's 256 KiB: the longest texts (a vendor's reason) are cut with a marker;
    the S3 status JSON keeps them whole."""
    body = _message(record)
    if len(body.encode("utf-8")) + _ENVELOPE_BYTES <= limits.SNS_MAX_BYTES:
        return body
    keep = frozenset({"job_id", "status_uri", "execution_arn", "uri", "key", "bucket", "vendor", "state"})
    small = limits.shrink(record, limits.SNS_MAX_BYTES - _ENVELOPE_BYTES,
                          lambda r: len(_message(r).encode("utf-8")), keep=keep)
    return _message(small)


class Notifier:
    def __init__(self, sns_client, topic_arn: str,
                 on_published: Callable[[dict[str, Any]], None] | None = None):
        self.sns = sns_client
        self.topic_arn = topic_arn
        # called once per import, after its message is out (the handlers emit metrics from it)
        self.on_published = on_published

    def publish(self, record: dict[str, Any]) -> str:
        resp = self.sns.publish(
            TopicArn=self.topic_arn,
            Subject=subject_for(record),
            MessageStructure="json",
            Message=message_for(record),
            MessageAttributes={
                # SNS refuses an empty attribute value
                "vendor": {"DataType": "String", "StringValue": record.get("vendor") or "unknown"},
                # the vendor's named system (settings document targets), for filter policies
                # such as {"vendor": ["hopex"], "target": ["prod"]}
                "target": {"DataType": "String", "StringValue": str(record.get("target") or "default")},
                "state": {"DataType": "String", "StringValue": record.get("state") or "FAILED"},
                "dry_run": {"DataType": "String", "StringValue": str(bool(record.get("dry_run"))).lower()},
                **_error_attribute(record),
            },
        )
        if self.on_published is not None:
            try:
                self.on_published(record)
            except Exception:  # noqa: BLE001 - the message is out: never fail (and re-publish) for this
                logging.getLogger(__name__).warning("on_published hook failed for %s", record.get("job_id"))
        return resp["MessageId"]
