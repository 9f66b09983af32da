"""What an import cost: Step Functions state transitions and Lambda GB-seconds at list prices.

Prices are settings (environment of the final function, template parameters) because they vary by
region and change over time; the defaults are us-east-1 list prices for Standard workflows and
arm64 Lambda at the time of writing.
"""

from __future__ import annotations

import os
from typing import Any

DEFAULT_PRICES = {
    "state_transition": 0.000025,  # USD per Standard workflow state transition
    "lambda_gb_second": 0.0000133334,  # USD per GB-second, arm64
    "lambda_request": 0.0000002,  # USD per request
}


def prices() -> dict[str, float]:
    out = dict(DEFAULT_PRICES)
    for name in out:
        raw = os.environ.get(f"PRICE_{name.upper()}")
        if raw:
            try:
                out[name] = float(raw)
            except ValueError:
                pass  # a bad price setting must not lose the status record
    return out


def transitions(polls: int, retries: int = 0, continuations: int = 0, queue_checks: int = 0,
                failure_states: int = 0) -> int:
    """States entered by the executions of statemachines/import.asl.json for one import:
    Submit + Choice, then Wait + Poll + Choice per poll, then Finalize; each retry is one more;
    each continuation in a new execution 4 more (Continue task, Succeed, the new execution's
    Submit and Choice); each check of an import QUEUED by the vendor guard 3 more (Wait in queue,
    Submit, Choice: 0 for an import that never queued); ``failure_states``: those entered on the
    way to a Catch (the Wait, Poll and Choice of a poll that failed, the Settle step of a record
    import settled after it)."""
    return 2 + 3 * polls + 1 + retries + 4 * continuations + 3 * queue_checks + failure_states


def memory_mb() -> int:
    """The running function's memory (Lambda sets AWS_LAMBDA_FUNCTION_MEMORY_SIZE)."""
    try:
        return int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"))
    except ValueError:
        return 1024


def usage_add(usage: dict[str, Any] | None, seconds: float, memory_mb: int) -> dict[str, Any]:
    """Accumulate one Lambda invocation into a usage dict (kept in the job payload)."""
    u = dict(usage or {})
    u["lambda_invocations"] = int(u.get("lambda_invocations", 0)) + 1
    u["lambda_gb_seconds"] = round(float(u.get("lambda_gb_seconds", 0.0)) + seconds * memory_mb / 1024.0, 6)
    return u


def estimate(usage: dict[str, Any] | None, polls: int, retries: int = 0,
             price: dict[str, float] | None = None, continuations: int = 0, queue_checks: int = 0,
             failure_states: int = 0) -> dict[str, Any]:
    p = price or prices()
    u = usage or {}
    n_transitions = transitions(polls, retries, continuations, queue_checks, failure_states)
    gb_s = float(u.get("lambda_gb_seconds", 0.0))
    invocations = int(u.get("lambda_invocations", 0))
    usd = n_transitions * p["state_transition"] + gb_s * p["lambda_gb_second"] + invocations * p["lambda_request"]
    return {"state_transitions": n_transitions, "lambda_invocations": invocations,
            "lambda_gb_seconds": round(gb_s, 6), "usd": round(usd, 8), "prices_usd": p}
