"""The vendor guard's state: one item per (vendor, target) in the jobs table, changed only by
conditional writes on its ``version`` (optimistic locking, the DynamoDB form of the Step Functions
"controlling concurrency" sample's semaphore item: docs.aws.amazon.com/step-functions/latest/dg/
sample-controlling-concurrency.html).

Item ``job_id = "guard#<vendor>#<target>"`` (no ``vendor`` attribute: the by-vendor index and
``list`` show imports only):
    holders  {job_id: {"arn", "ticket", "lane", "since"}}    imports running against the vendor
    waiters  {job_id: {"arn", "ticket", "lane", "since"}}    imports QUEUED, served by ticket
    next_ticket  int    upload order (a ticket is taken once, at the first acquire)
    version      int    bumped by every write; a write that read an older version fails and retries
    breaker      {"state", "failures", "opened_at", "probe_at", "cooldown"}  (logic/guard.py)
"""

from __future__ import annotations

from typing import Any

from .jobs_table import _from_dynamo, _to_dynamo

GUARD_PREFIX = "guard#"


def guard_key(vendor: str, target: str) -> str:
    return f"{GUARD_PREFIX}{vendor}#{target}"


class Conflict(Exception):
    """Another writer changed the item since it was read: read again and retry."""


class GuardTable:
    def __init__(self, table):
        self.table = table  # a boto3 DynamoDB Table resource (the jobs table)

    def read(self, key: str) -> dict[str, Any]:
        item = self.table.get_item(Key={"job_id": key}, ConsistentRead=True).get("Item")
        state = _from_dynamo(item) if item else {}
        state.setdefault("holders", {})
        state.setdefault("waiters", {})
        state.setdefault("next_ticket", 0)
        state.setdefault("version", 0)
        state.setdefault("breaker", {})
        return state

    def write(self, key: str, state: dict[str, Any]) -> None:
        """Write ``state`` back if nobody wrote since it was read (raises Conflict otherwise)."""
        version = int(state.get("version") or 0)
        fields = {k: state[k] for k in ("holders", "waiters", "next_ticket", "breaker")}
        fields["version"] = version + 1
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        values = {f":v{i}": v for i, v in enumerate(_to_dynamo(list(fields.values())))}
        values[":read"] = version
        sets = ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
        if version == 0:
            condition = "attribute_not_exists(job_id)"
            values.pop(":read")
        else:
            condition = "#ver = :read"
            names["#ver"] = "version"
        try:
            self.table.update_item(Key={"job_id": key}, UpdateExpression=f"SET {sets}",
                                   ConditionExpression=condition, ExpressionAttributeNames=names,
                                   ExpressionAttributeValues=values)
        except self.table.meta.client.exceptions.ConditionalCheckFailedException:
            raise Conflict(key) from None
        state["version"] = version + 1
