"""Bring dead letters back to what handles them, each kind to its own handler.

    s3-vendor-import redrive --stack NAME [--region R]

Two kinds of dead letter, in two queues (template.yaml):

* **uploads** (``UploadDeadLetterQueueUrl``): S3 event notifications the submit function could not
  route after the upload queue's maxReceiveCount. They go back to the upload queue
  (``UploadQueueUrl``), where the SQS event source hands them to the submit function again.
* **execution-ended events** (``FinalizeDeadLetterQueueUrl``): Step Functions "Execution Status
  Change" events that Finalize failed on after Lambda's two retries of an asynchronous invocation
  (the message body is the event itself), or that EventBridge could not deliver. They are given back
  to Finalize (``FinalizeFunctionName``) by a synchronous Invoke, which writes the import's one
  status record and SNS message (Finalize is idempotent: a repeated event changes nothing).

Each message is routed by what it is, not by the queue it sits in, so a message in the wrong queue
still reaches its handler. A message that fails again stays in its queue (it reappears after the
visibility timeout); one of no known kind is left there for a person to read. AWS facts: Lambda
asynchronous retries and DLQ, docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html;
SQS dead-letter queues and redrive,
docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

UPLOAD, EXECUTION_ENDED, UNKNOWN = "upload", "execution-ended", "unknown"
# messages stay invisible this long after a failed redrive: the run never takes one twice
VISIBILITY_SECONDS = 300
MAX_MESSAGES = 10_000  # a bound on one run (a dead-letter queue keeps 14 days of messages)


@dataclass
class RedriveResult:
    moved: dict[str, int] = field(default_factory=lambda: {UPLOAD: 0, EXECUTION_ENDED: 0})
    failed: list[str] = field(default_factory=list)  # message ids left in their queue, with why
    unknown: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"uploads sent back to the upload queue: {self.moved[UPLOAD]}",
                 f"execution-ended events finalized: {self.moved[EXECUTION_ENDED]}"]
        lines += [f"failed again (left in its queue): {m}" for m in self.failed]
        lines += [f"not an upload nor an execution-ended event (left in its queue): {m}" for m in self.unknown]
        return "\n".join(lines)


def kind_of(body: str) -> str:
    """UPLOAD (an S3 event notification, test events included), EXECUTION_ENDED (a Step Functions
    status-change event), or UNKNOWN."""
    try:
        doc = json.loads(body)
    except ValueError:
        return UNKNOWN
    if not isinstance(doc, dict):
        return UNKNOWN
    if doc.get("detail-type") == "Step Functions Execution Status Change" and doc.get("source") == "aws.states":
        return EXECUTION_ENDED
    records = doc.get("Records")
    if (isinstance(records, list) and records and all(isinstance(r, dict) and r.get("eventSource") == "aws:s3"
                                                       for r in records)) or doc.get("Event") == "s3:TestEvent":
        return UPLOAD
    return UNKNOWN


def redrive(sqs, lambda_client, *, dead_letter_urls: list[str], upload_queue_url: str, finalize_function: str,
            max_messages: int = MAX_MESSAGES) -> RedriveResult:
    """Empty the dead-letter queues into their handlers; returns what was moved and what was left."""
    result = RedriveResult()
    seen = 0
    for url in dead_letter_urls:
        while seen < max_messages:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                           VisibilityTimeout=VISIBILITY_SECONDS).get("Messages", [])
            if not messages:
                break
            for m in messages:
                seen += 1
                kind = kind_of(m["Body"])
                if kind == UNKNOWN:
                    result.unknown.append(m["MessageId"])
                    continue
                error = _hand_back(sqs, lambda_client, kind, m["Body"], upload_queue_url, finalize_function)
                if error:
                    result.failed.append(f"{m['MessageId']} ({kind}): {error}")
                    continue
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                result.moved[kind] += 1
    return result


def _hand_back(sqs, lambda_client, kind: str, body: str, upload_queue_url: str, finalize_function: str) -> str | None:
    """None when the handler took the message, else what went wrong."""
    if kind == UPLOAD:
        sqs.send_message(QueueUrl=upload_queue_url, MessageBody=body)
        return None
    resp = lambda_client.invoke(FunctionName=finalize_function, InvocationType="RequestResponse",
                                Payload=body.encode("utf-8"))
    if resp.get("FunctionError"):
        payload: Any = json.loads(resp["Payload"].read() or b"{}")
        return str(payload.get("errorType") or resp["FunctionError"]) if isinstance(payload, dict) else "error"
    return None


# -- the command ----------------------------------------------------------------------------------------------

OUTPUTS = ("UploadDeadLetterQueueUrl", "FinalizeDeadLetterQueueUrl", "UploadQueueUrl", "FinalizeFunctionName")


def add_subcommand(sub) -> None:
    p = sub.add_parser("redrive", help="send dead letters back: uploads to the upload queue, "
                                       "execution-ended events to Finalize")
    p.add_argument("--stack", required=True, help="the deployed stack (its outputs name the queues and Finalize)")
    p.add_argument("--region", help="the stack's region (default: AWS_REGION / your profile's)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_redrive)


def cmd_redrive(args) -> int:
    import sys

    import boto3

    session = boto3.Session(region_name=args.region)
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"]
    except Exception as exc:  # noqa: BLE001 - no credentials, no region, no such stack: say which
        print(f"s3-vendor-import redrive: cannot read stack {args.stack!r}: {exc}", file=sys.stderr)
        return 1
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    missing = [k for k in OUTPUTS if k not in outputs]
    if missing:
        print(f"s3-vendor-import redrive: stack {args.stack!r} has no output {', '.join(missing)}", file=sys.stderr)
        return 1
    result = redrive(session.client("sqs"), session.client("lambda"),
                     dead_letter_urls=[outputs["UploadDeadLetterQueueUrl"], outputs["FinalizeDeadLetterQueueUrl"]],
                     upload_queue_url=outputs["UploadQueueUrl"], finalize_function=outputs["FinalizeFunctionName"])
    if args.json:
        import json

        print(json.dumps({"moved": result.moved, "failed": result.failed, "unknown": result.unknown}))
    else:
        print(result.text())
    return 1 if result.failed or result.unknown else 0
