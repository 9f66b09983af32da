"""statemachines/import.asl.json: the one poll loop every vendor runs."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
from vendor_import import errors
from vendor_import.errors import TRANSIENT_ERROR_NAMES, VendorImportError

ASL_FILE = Path(__file__).resolve().parents[2] / "statemachines" / "import.asl.json"
VENDOR_ARN = "${VendorFunctionArn}"
FINALIZE_ARN = "${FinalizeFunctionArn}"
# errors of the Lambda service itself (not of our code): always safe to retry
LAMBDA_SERVICE_ERRORS = {"Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                         "Lambda.TooManyRequestsException"}
# the function's process died mid-step (timeout, out of memory): the step resumes from its checkpoint
LAMBDA_DIED_ERRORS = {"Lambda.Unknown", "Sandbox.Timedout"}


@pytest.fixture(scope="module")
def asl() -> dict:
    return json.loads(ASL_FILE.read_text())


def tasks(asl, resource=None):
    return {name: s for name, s in asl["States"].items()
            if s["Type"] == "Task" and (resource is None or s["Resource"] == resource)}


def vendor_calls(asl):
    """The vendor function's steps that call the vendor (submit, poll); settling calls no vendor."""
    return {name: t for name, t in tasks(asl, VENDOR_ARN).items() if t["Parameters"]["action"] != "settle"}


def settle_name(asl):
    (name,) = [n for n, t in tasks(asl, VENDOR_ARN).items() if t["Parameters"]["action"] == "settle"]
    return name


def finalize_name(asl):
    (name,) = tasks(asl, FINALIZE_ARN)
    return name


def all_keys(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from all_keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from all_keys(v)


def test_asl_is_valid_json_with_states():
    asl = json.loads(ASL_FILE.read_text())
    assert asl["StartAt"] in asl["States"]


def test_every_transition_targets_an_existing_state_and_every_state_is_reachable(asl):
    states = asl["States"]
    targets = {asl["StartAt"]}
    for state in states.values():
        for key, value in all_keys(state):
            if key in ("Next", "Default"):
                assert value in states, value
                targets.add(value)
    assert targets == set(states)


CONTINUE_ARN = "arn:aws:states:::states:startExecution"


def test_there_are_vendor_submit_poll_and_settle_tasks_and_one_finalize(asl):
    assert len(tasks(asl, VENDOR_ARN)) == 3
    assert set(tasks(asl)) == set(tasks(asl, VENDOR_ARN)) | {finalize_name(asl)} | set(tasks(asl, CONTINUE_ARN))
    actions = {t["Parameters"]["action"] for t in tasks(asl, VENDOR_ARN).values()}
    assert actions == {"submit", "poll", "settle"}


def test_the_transient_error_names_are_named_errors_marked_transient():
    classes = {n: c for n, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, VendorImportError)}
    assert set(TRANSIENT_ERROR_NAMES) == {n for n, c in classes.items() if c.transient}


def test_vendor_tasks_retry_exactly_the_transient_errors_and_lambda_service_errors(asl):
    for name, task in vendor_calls(asl).items():
        retried = {e for r in task["Retry"] for e in r["ErrorEquals"]}
        named = {e for e in retried - LAMBDA_DIED_ERRORS if not e.startswith(("Lambda.", "States."))}
        assert named == set(TRANSIENT_ERROR_NAMES), name
        assert retried - named <= LAMBDA_SERVICE_ERRORS | LAMBDA_DIED_ERRORS | {"States.Timeout"}, name
        assert retried >= LAMBDA_SERVICE_ERRORS | LAMBDA_DIED_ERRORS, name
        assert "States.ALL" not in retried and "States.TaskFailed" not in retried, name


def test_vendor_task_retries_are_bounded_with_backoff(asl):
    for name, task in tasks(asl, VENDOR_ARN).items():
        for retry in task["Retry"]:
            assert 1 <= retry["MaxAttempts"] <= 10, name
            assert retry["BackoffRate"] >= 1 and retry["IntervalSeconds"] >= 1, name
            assert retry.get("MaxDelaySeconds"), name


def test_throttling_is_retried_before_the_generic_unavailable_rule(asl):
    # VendorThrottledError is a VendorUnavailableError, but Step Functions matches names: the
    # first matching retrier wins, so the throttling one (longer backoff) must come first
    for task in vendor_calls(asl).values():
        order = [e for r in task["Retry"] for e in r["ErrorEquals"]]
        assert order.index("VendorThrottledError") < order.index("VendorUnavailableError")


def test_every_task_except_finalize_catches_everything_into_finalize(asl):
    final, settle = finalize_name(asl), settle_name(asl)
    (poll,) = [n for n, t in vendor_calls(asl).items() if t["Parameters"]["action"] == "poll"]
    (continue_name,) = tasks(asl, CONTINUE_ARN)
    for name, task in tasks(asl).items():
        if name == final:
            assert "Catch" not in task
            continue
        if name in (poll, continue_name):  # a record import that failed part-way settles the rest first
            (catch,) = task["Catch"]
            assert catch["ErrorEquals"] == ["States.ALL"] and catch["ResultPath"] == "$.error"
            assert asl["States"][catch["Next"]]["Type"] == "Choice"
            continue
        if name == settle:  # the import's own error stays in $.error; settling's beside it
            assert task["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.settle_error",
                                      "Next": final}]
            continue
        assert task["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": final}], name


def test_a_poll_failed_for_good_settles_a_record_import_and_finalizes_a_file_import(asl):
    (poll,) = [t for t in vendor_calls(asl).values() if t["Parameters"]["action"] == "poll"]
    (go_on,) = tasks(asl, CONTINUE_ARN).values()
    choice = asl["States"][poll["Catch"][0]["Next"]]
    assert go_on["Catch"][0]["Next"] == poll["Catch"][0]["Next"]  # a failed continuation too
    assert choice["Choices"] == [
        {"And": [{"Variable": "$.job.record_import", "IsPresent": True},
                 {"Variable": "$.job.record_import", "BooleanEquals": True}], "Next": settle_name(asl)}]
    assert choice["Default"] == finalize_name(asl)
    settle = asl["States"][settle_name(asl)]
    assert settle["Next"] == finalize_name(asl)
    assert settle["ResultPath"] == "$.job"  # Finalize reads the settled counts where it reads the job's
    # no vendor call: only the Lambda service's own errors are retried
    assert {e for r in settle["Retry"] for e in r["ErrorEquals"]} == LAMBDA_SERVICE_ERRORS | LAMBDA_DIED_ERRORS
    assert settle["TimeoutSeconds"] == 900


def test_finalize_is_the_end_and_retries_anything(asl):
    final = asl["States"][finalize_name(asl)]
    assert final.get("End") is True
    assert [e for r in final["Retry"] for e in r["ErrorEquals"]] == ["States.ALL"]


def test_done_jobs_go_to_finalize_others_continue_or_wait(asl):
    choice = asl["States"]["Vendor job finished?"]
    (go_on,) = tasks(asl, CONTINUE_ARN)
    assert choice["Choices"] == [
        {"Variable": "$.job.done", "BooleanEquals": True, "Next": finalize_name(asl)},
        {"And": [{"Variable": "$.job.continue_in_new_execution", "IsPresent": True},
                 {"Variable": "$.job.continue_in_new_execution", "BooleanEquals": True}], "Next": go_on},
        {"And": [{"Variable": "$.job.queued", "IsPresent": True},
                 {"Variable": "$.job.queued", "BooleanEquals": True}], "Next": "Wait in queue"},
    ]
    assert asl["States"][choice["Default"]]["Type"] == "Wait"


def test_a_job_goes_on_in_a_new_execution_of_the_same_state_machine_with_the_same_input(asl):
    (name,) = tasks(asl, CONTINUE_ARN)
    task = asl["States"][name]
    assert task["Parameters"] == {"StateMachineArn.$": "$$.StateMachine.Id", "Name.$": "$.job.next_execution_name",
                                  "Input.$": "$"}
    assert task["ResultPath"] is None
    assert asl["States"][task["Next"]]["Type"] == "Succeed"  # the EventBridge finalizer ignores SUCCEEDED


def test_vendor_errors_get_one_state_machine_retry_the_http_layer_does_the_rest(asl):
    # README "Retry budget": requests per vendor call = HTTP attempts in a step x 2 attempts of the step
    for task in vendor_calls(asl).values():
        (rule,) = [r for r in task["Retry"] if "VendorUnavailableError" in r["ErrorEquals"]]
        assert rule["ErrorEquals"] == ["VendorThrottledError", "VendorUnavailableError", "States.Timeout"]
        assert rule["MaxAttempts"] == 1


def test_wait_uses_the_seconds_the_poll_asked_for(asl):
    waits = [s for s in asl["States"].values() if s["Type"] == "Wait"]
    assert len(waits) == 2  # before the next poll, and in the vendor guard's queue
    for wait in waits:
        assert wait["SecondsPath"] == "$.job.wait_seconds"
        assert "Seconds" not in wait and asl["States"][wait["Next"]]["Resource"] == VENDOR_ARN


def test_vendor_steps_keep_the_input_and_put_their_result_under_job(asl):
    for task in tasks(asl, VENDOR_ARN).values():
        assert task["ResultPath"] == "$.job"
        assert task["Parameters"]["input.$"] == "$"
        assert task["Parameters"]["execution_name.$"] == "$$.Execution.Name"


def test_finalize_gets_the_state_machine_and_execution(asl):
    params = asl["States"][finalize_name(asl)]["Parameters"]
    assert params["input.$"] == "$"
    assert params["execution_name.$"] == "$$.Execution.Name"
    assert params["state_machine_arn.$"] == "$$.StateMachine.Id"


def test_only_jsonpath_no_jsonata_no_distributed_map(asl):
    text = ASL_FILE.read_text()
    assert asl.get("QueryLanguage", "JSONPath") == "JSONPath"
    for key, _ in all_keys(asl):
        assert key not in ("QueryLanguage", "ItemBatcher", "ItemReader", "Arguments", "Output", "Assign"), key
    assert "{%" not in text
    assert {s["Type"] for s in asl["States"].values()} <= {"Task", "Choice", "Wait", "Pass", "Succeed", "Fail"}


def test_timeouts_are_set_for_the_execution_and_every_task(asl):
    assert 0 < asl["TimeoutSeconds"] <= 365 * 86400
    for name, task in tasks(asl).items():
        assert 0 < task["TimeoutSeconds"] <= 900, name  # a Lambda cannot run longer


def test_a_queued_import_waits_then_submits_again_and_nothing_else_is_added_to_its_path(asl):
    states = asl["States"]
    assert asl["StartAt"] == "Submit to vendor"  # no state before Submit: an import that never queues pays nothing
    wait = states["Wait in queue"]
    assert wait["Next"] == "Submit to vendor" and states[wait["Next"]]["Parameters"]["action"] == "submit"
    assert [n for n, s in states.items() if s.get("Next") == "Wait in queue" or s.get("Default") == "Wait in queue"
            or any(c.get("Next") == "Wait in queue" for c in s.get("Choices", []))] == ["Vendor job finished?"]
