"""The poll loop of one import may span several executions: each stays under Step Functions' limits.

AWS limits (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html, "Quotas
related to state machine executions"): an execution history holds at most 25,000 events, and the
state machine stops an execution after its own ``TimeoutSeconds`` (7 days in
statemachines/import.asl.json). AWS recommends starting a new execution from a Task state to go on
with long work (https://docs.aws.amazon.com/step-functions/latest/dg/tutorial-continue-new.html).

Events of statemachines/import.asl.json (HistoryEvent types,
https://docs.aws.amazon.com/step-functions/latest/apireference/API_HistoryEvent.html):

* ExecutionStarted: 1;
* a Lambda Task state: TaskStateEntered + TaskStateExited (2), and per attempt
  LambdaFunctionScheduled + LambdaFunctionStarted + LambdaFunctionSucceeded/Failed (3);
* a Choice or a Wait state: Entered + Exited (2).

So one poll iteration (Wait, Poll, Choice) costs 9 events, a retried attempt 3 more, and an
execution that ran its first step and ``polls`` iterations with ``invocations`` Lambda attempts in
all holds ``5 + 6 * polls + 3 * invocations`` events (8 + 9 x polls without retries). The vendor
step continues in a new execution (same job id, one status record) before the next iteration
could pass ``HISTORY_BUDGET`` or the execution's age could pass ``EXECUTION_SECONDS_BUDGET``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

HISTORY_LIMIT = 25_000  # events in one execution history (hard quota)
EVENTS_PER_POLL = 9  # Wait 2 + Poll 5 + Choice 2
EVENTS_PER_RETRY = 3  # LambdaFunctionScheduled, LambdaFunctionStarted, LambdaFunctionFailed
# Room left for what may still come after the decision: the worst case of one step's retries
# (15 attempts, statemachines/import.asl.json), Finalize with its retries, or the continuation
# task (TaskStateEntered, TaskScheduled, TaskStarted, TaskSucceeded, TaskStateExited), the
# Succeed state and ExecutionSucceeded.
HISTORY_RESERVE = 500
HISTORY_BUDGET = HISTORY_LIMIT - HISTORY_RESERVE
EXECUTION_TIMEOUT_SECONDS = 7 * 86_400  # TimeoutSeconds of statemachines/import.asl.json
# Continue a day before the execution timeout: a step, its retries and their waits fit in a day.
EXECUTION_SECONDS_BUDGET = EXECUTION_TIMEOUT_SECONDS - 86_400
# How many execution names a job keeps (payload and status record stay small): the first and
# the latest ones; ``executions_count`` says how many there were.
KEEP_NAMES = 50


def history_events(polls: int, invocations: int) -> int:
    """Events in an execution that ran its first step and ``polls`` iterations, with
    ``invocations`` Lambda attempts in all (retries included)."""
    return 5 + 6 * polls + 3 * invocations


def next_name(job_id: str, index: int) -> str:
    """The name of execution ``index`` (1 = the first continuation) of ``job_id``: unique per job
    and index, readable, at most 80 characters (StartExecution's limit)."""
    digest = hashlib.sha256(f"{job_id}\n{index}".encode()).hexdigest()[:12]
    return f"{job_id[:60]}-{digest}-{index}"[:80]


def keep_names(names: list[str]) -> list[str]:
    if len(names) <= 2 * KEEP_NAMES:
        return names
    return names[:KEEP_NAMES] + names[-KEEP_NAMES:]


def seconds_since(iso_start: Any, now: float) -> float:
    """Seconds since ``$$.Execution.StartTime`` (0 when it cannot be read)."""
    if not isinstance(iso_start, str):
        return 0.0
    try:
        start = datetime.fromisoformat(iso_start.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
    return max(0.0, now - start)


def should_continue(execution: dict[str, Any], invocations_now: int | None, *, waited: int, wait: int,
                    age_seconds: float) -> bool:
    """Start a new execution instead of the next iteration of this one?

    ``execution``: the job payload's record of the current execution (``polls`` iterations in it,
    ``invocations_before`` the job's Lambda attempts before it started, ``waited_at_start``);
    ``invocations_now``: the job's Lambda attempts so far (jobs table; None if unknown: then a
    retry is assumed for every step)."""
    polls = int(execution.get("polls") or 0)
    if invocations_now is None:
        invocations = 2 * (polls + 1)
    else:
        invocations = max(polls + 1, invocations_now - int(execution.get("invocations_before") or 0))
    if history_events(polls, invocations) + EVENTS_PER_POLL > HISTORY_BUDGET:
        return True
    age = max(age_seconds, float(waited - int(execution.get("waited_at_start") or 0)))
    return age + wait > EXECUTION_SECONDS_BUDGET
