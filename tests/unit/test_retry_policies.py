"""The exact bound of the retry policies that live outside the connectors (the connectors' own
and the HTTP session's are tested over HTTP in tests/contract/test_retry_bounds.py): the state
machine's Retry rules and the AWS SDK's. A change of any bound must be deliberate: it changes how
long an import can take before it fails and how hard a struggling vendor or AWS API is hit."""

from __future__ import annotations

import json
from pathlib import Path

from vendor_import import wiring

ASL = Path(__file__).resolve().parents[2] / "statemachines" / "import.asl.json"

# (first error name, MaxAttempts, IntervalSeconds, BackoffRate, MaxDelaySeconds), in order
# vendor errors: one state machine retry after 30 s (README "Retry budget": the HTTP layer has
# already retried what can be retried within the step); Lambda service errors 5; a dead run 3
# a batch whose outcome is unknown: 5 retries, each of which reports it UNCONFIRMED and goes on
VENDOR_TASK = [("VendorOutcomeUnknownError", 5, 5, 2.0, 60), ("VendorThrottledError", 1, 30, 2.0, 120),
               ("Lambda.ServiceException", 5, 5, 2.0, 120), ("Lambda.Unknown", 3, 5, 2.0, 60)]
EXPECTED = {"Submit to vendor": VENDOR_TASK, "Poll vendor": VENDOR_TASK,
            "Finalize import": [("States.ALL", 4, 2, 2.0, 60)],
            # settling calls no vendor: the Lambda service's errors only
            "Settle unsent records": [("Lambda.ServiceException", 5, 5, 2.0, 120), ("Lambda.Unknown", 3, 5, 2.0, 60)],
            # the StartExecution of the continuation (a service integration: any error, 3 tries)
            "Continue in a new execution": [("States.ALL", 3, 2, 2.0, 30)]}


def test_state_machine_retry_rules_have_their_exact_bounds():
    states = json.loads(ASL.read_text())["States"]
    found = {name: [(r["ErrorEquals"][0], r["MaxAttempts"], r["IntervalSeconds"], r["BackoffRate"],
                     r.get("MaxDelaySeconds")) for r in state["Retry"]]
             for name, state in states.items() if "Retry" in state}
    assert found == EXPECTED


def test_aws_sdk_calls_retry_in_standard_mode_five_retries():
    retries = dict(wiring._BOTO_CONFIG.retries)
    # botocore rewrites max_attempts (retries after the first call) as total_max_attempts (all calls)
    # once a client is made with this config: both spellings say 5 retries, 6 calls in all
    total = retries.get("total_max_attempts", retries.get("max_attempts", 0) + 1)
    assert (retries["mode"], total) == ("standard", 6)
