"""The jobs table: one item per import (job_id = execution name), status and checkpoints."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

BY_VENDOR_INDEX = "by-vendor"
RECENT_MAX_PAGES = 5  # queries per pace lookup: a bound on the read cost of a busy vendor's other targets


def _to_dynamo(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str), parse_float=Decimal)


def _from_dynamo(obj: Any) -> Any:
    if isinstance(obj, list):
        return [_from_dynamo(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _from_dynamo(v) for k, v in obj.items()}
    if isinstance(obj, Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    return obj


class JobsTable:
    def __init__(self, dynamodb_resource, table_name: str):
        self.table = dynamodb_resource.Table(table_name)

    def get(self, job_id: str) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        return _from_dynamo(item) if item else None

    def put_status(self, record: dict[str, Any]) -> None:
        """Write the final status record (keeps nothing of the checkpoint: the job is over).

        An update, not a put: a put would also erase ``notified_at``, and a retried Finalize
        would then publish its SNS message a second time."""
        fields = {k: v for k, v in record.items() if k != "job_id"}
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        values = {f":v{i}": v for i, v in enumerate(_to_dynamo(list(fields.values())))}
        sets = ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
        self.table.update_item(
            Key={"job_id": record["job_id"]},
            UpdateExpression=f"SET {sets} REMOVE checkpoint_poll, checkpoint_job, source_key, current_execution, "
                             "usage_invocations, usage_gb_seconds, usage_requests, usage_retries",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def claim_notification(self, job_id: str, when: str) -> bool:
        """True the first time only: Finalize retries must not publish twice."""
        try:
            self.table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET notified_at = :w",
                ConditionExpression="attribute_not_exists(notified_at)",
                ExpressionAttributeValues={":w": when},
            )
            return True
        except self.table.meta.client.exceptions.ConditionalCheckFailedException:
            return False

    def release_notification(self, job_id: str) -> None:
        self.table.update_item(Key={"job_id": job_id}, UpdateExpression="REMOVE notified_at")

    def save_checkpoint(self, job_id: str, vendor: str, poll: int, connector_job: dict[str, Any],
                        updated_at: str) -> None:
        """Persist a record vendor's cursor mid-step: a retried step resumes from here."""
        self.table.update_item(
            Key={"job_id": job_id},
            UpdateExpression="SET vendor = :v, checkpoint_poll = :p, checkpoint_job = :j, "
                             "updated_at = :u, #s = if_not_exists(#s, :running)",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":v": vendor, ":p": poll, ":j": json.dumps(connector_job),
                                       ":u": updated_at, ":running": "RUNNING"},
        )

    def load_checkpoint(self, job_id: str, poll: int) -> dict[str, Any] | None:
        item = self.get(job_id)
        if item and item.get("checkpoint_poll") == poll and item.get("checkpoint_job"):
            return json.loads(item["checkpoint_job"])
        return None

    def mark_running(self, job_id: str, vendor: str, fields: dict[str, Any]) -> None:
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        values = {f":v{i}": v for i, v in enumerate(_to_dynamo(list(fields.values())))}
        sets = ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
        self.table.update_item(
            Key={"job_id": job_id},
            UpdateExpression=f"SET vendor = :vendor, {sets}",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={":vendor": vendor, **values},
        )

    def recent(self, vendor: str, limit: int = 20, target: str | None = None) -> list[dict[str, Any]]:
        """The vendor's latest ``limit`` jobs (newest first); with ``target``, that target's only
        (an item without ``target``, written before targets existed, is target ``default``).
        DynamoDB applies Limit before the filter, so a target's jobs are read page by page, at most
        RECENT_MAX_PAGES queries."""
        kwargs: dict[str, Any] = {"IndexName": BY_VENDOR_INDEX, "KeyConditionExpression": "vendor = :v",
                                  "ExpressionAttributeValues": {":v": vendor}, "ScanIndexForward": False,
                                  "Limit": limit}
        if target is not None:
            kwargs["FilterExpression"] = "#t = :t" + (" OR attribute_not_exists(#t)" if target == "default" else "")
            kwargs["ExpressionAttributeNames"] = {"#t": "target"}
            kwargs["ExpressionAttributeValues"] = {":v": vendor, ":t": target}
        items: list[dict[str, Any]] = []
        for _ in range(RECENT_MAX_PAGES):
            resp = self.table.query(**kwargs)
            items += resp.get("Items", [])
            if len(items) >= limit or "LastEvaluatedKey" not in resp:
                break
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        return [_from_dynamo(i) for i in items[:limit]]

    # -- usage of every attempt (a retried step's result is lost with it: its usage is kept here) --
    def count_invocation(self, job_id: str, vendor: str) -> int:
        """Count one Lambda invocation of this job (every attempt, retried ones included) and
        return how many there were so far."""
        resp = self.table.update_item(
            Key={"job_id": job_id},
            UpdateExpression="SET vendor = if_not_exists(vendor, :v) ADD usage_invocations :one",
            ExpressionAttributeValues={":v": vendor, ":one": 1},
            ReturnValues="UPDATED_NEW",
        )
        return int(resp["Attributes"]["usage_invocations"])

    def add_usage(self, job_id: str, gb_seconds: float, requests: int = 0, retries: int = 0) -> None:
        """Add what one invocation used: GB-seconds, vendor HTTP requests and their retries."""
        self.table.update_item(
            Key={"job_id": job_id},
            UpdateExpression="ADD usage_gb_seconds :g, usage_requests :r, usage_retries :t",
            ExpressionAttributeValues={":g": Decimal(str(round(max(0.0, gb_seconds), 6))),
                                       ":r": int(requests), ":t": int(retries)},
        )
