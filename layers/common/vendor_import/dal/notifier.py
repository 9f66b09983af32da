"""The completion topic: one message per import, filterable on vendor and state."""

from __future__ import annotations

import json
from typing import Any


def subject_for(record: dict[str, Any]) -> str:
    # a console start without a key still gets its message
    name = (record["source"].get("key") or "(no key)").rsplit("/", 1)[-1]
    dry = " (dry run)" if record.get("dry_run") else ""
    subject = f"[{record['vendor']}] {record['state']}{dry}: {name}"
    # SNS subjects: ASCII printable, no newlines, at most 100 characters
    subject = "".join(c if 32 <= ord(c) < 127 else "?" for c in subject)
    return subject[:100]


class Notifier:
    def __init__(self, sns_client, topic_arn: str):
        self.sns = sns_client
        self.topic_arn = topic_arn

    def publish(self, record: dict[str, Any]) -> str:
        resp = self.sns.publish(
            TopicArn=self.topic_arn,
            Subject=subject_for(record),
            Message=json.dumps(record, indent=2, default=str),
            MessageAttributes={
                "vendor": {"DataType": "String", "StringValue": record["vendor"]},
                "state": {"DataType": "String", "StringValue": record["state"]},
                "dry_run": {"DataType": "String", "StringValue": str(bool(record.get("dry_run"))).lower()},
            },
        )
        return resp["MessageId"]
