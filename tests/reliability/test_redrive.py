"""Dead letters come back to where they are handled (docs/operations.md, "Dead letters").

Through the local runner: the real template's two dead-letter queues, Finalize invoked the way the
EventBridge rule invokes it (asynchronously: the first run and Lambda's 2 retries, then the function's
dead-letter queue, docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html), and
the operator's redrive (local/redrive.py, `s3-vendor-import redrive`).
"""

from __future__ import annotations

import json
import uuid

from local.redrive import EXECUTION_ENDED, UNKNOWN, UPLOAD, kind_of

from .helpers import ROOT, assert_one_outcome, outcomes_by_job, slug, take_queue_messages

SAMPLE = (ROOT / "events" / "files" / "hopex" / "clean.mgl").read_bytes()


def execution_that_ends_without_finalize(pipe) -> tuple[str, str]:
    """An execution that fails before Finalize, every time: a console input that is a JSON string,
    to which the first state's Catch cannot add $.error (its status record comes from the
    execution-ended event). Returns (job id, execution ARN)."""
    job_id = f"dlq-{uuid.uuid4().hex[:12]}"
    arn = pipe.sfn.start_execution(stateMachineArn=pipe.state_machine_arn("hopex"), name=job_id,
                                   input=json.dumps("inbox/hopex/not-an-object.mgl"))["executionArn"]
    return job_id, arn


def test_a_failed_finalize_event_waits_in_its_own_queue_and_redrive_gives_the_import_its_one_record(pipe):
    job_id, arn = execution_that_ends_without_finalize(pipe)
    pipe.lambdas.crash_next[pipe.finalize_function] = 3  # every attempt of the asynchronous invocation
    result = pipe._finish(job_id, arn, "", "hopex")

    assert (result.execution_status, result.state) == ("FAILED", "MISSING")
    assert outcomes_by_job(pipe, [job_id])[job_id] == {"records": [], "documents": [], "messages": []}
    assert pipe.dlq_depth(pipe.finalize_dlq_url) == 1
    assert pipe.dlq_depth() == 0  # the uploads' queue holds uploads only

    redriven = pipe.redrive()

    assert redriven.moved == {UPLOAD: 0, EXECUTION_ENDED: 1} and redriven.failed == redriven.unknown == []
    assert pipe.dlq_depth(pipe.finalize_dlq_url) == 0
    found = outcomes_by_job(pipe, [job_id])[job_id]
    record = assert_one_outcome(found, job_id)
    assert (record["state"], record["job_id"], record["vendor"]) == ("FAILED", job_id, "hopex")
    assert record["error"]["type"] == "InputError"

    again = pipe.redrive()  # nothing left: no second record, no second message
    assert again.moved == {UPLOAD: 0, EXECUTION_ENDED: 0}
    assert_one_outcome(outcomes_by_job(pipe, [job_id])[job_id], job_id)  # drain_messages keeps all


def test_a_finalize_that_fails_again_on_redrive_leaves_the_event_in_its_queue(pipe):
    job_id, arn = execution_that_ends_without_finalize(pipe)
    pipe.lambdas.crash_next[pipe.finalize_function] = 4  # the 3 attempts, then the redrive's
    pipe._finish(job_id, arn, "", "hopex")

    redriven = pipe.redrive()

    assert redriven.moved[EXECUTION_ENDED] == 0 and len(redriven.failed) == 1
    assert "RuntimeError" in redriven.failed[0]
    # in flight (invisible for the visibility timeout), not deleted: the next redrive takes it
    attrs = pipe.sqs.get_queue_attributes(QueueUrl=pipe.finalize_dlq_url,
                                          AttributeNames=["ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "1"
    _make_visible(pipe)
    assert pipe.redrive().moved[EXECUTION_ENDED] == 1
    assert_one_outcome(outcomes_by_job(pipe, [job_id])[job_id], job_id)


def _make_visible(pipe) -> None:
    """What the visibility timeout's end does: the message in flight is visible again."""
    from moto.sqs.models import sqs_backends

    from local.template_deploy import ACCOUNT, REGION

    queue = sqs_backends[ACCOUNT][REGION].get_queue(pipe.finalize_dlq_url.rsplit("/", 1)[-1])
    for message in queue._messages:
        message.change_visibility(0)


def test_an_upload_dead_letter_goes_back_to_the_upload_queue_and_is_imported(pipe, request):
    key = f"inbox/hopex/{slug(request.node.name)}.mgl"
    pipe.upload(SAMPLE, key)
    (body,) = take_queue_messages(pipe)
    pipe.sqs.send_message(QueueUrl=pipe.dlq_url, MessageBody=body)  # what maxReceiveCount failures leave

    redriven = pipe.redrive()

    assert redriven.moved == {UPLOAD: 1, EXECUTION_ENDED: 0}
    assert pipe.dlq_depth() == 0
    result = pipe._result_for(key, {"version": json.loads(body)["Records"][0]["s3"]["object"]["versionId"]})
    assert result.state == "SUCCEEDED"


def test_each_dead_letter_is_routed_by_its_kind_whatever_queue_holds_it():
    upload = json.dumps({"Records": [{"eventSource": "aws:s3", "s3": {"object": {"key": "inbox/hopex/a.mgl"}}}]})
    ended = json.dumps({"source": "aws.states", "detail-type": "Step Functions Execution Status Change",
                        "detail": {"status": "TIMED_OUT"}})
    assert kind_of(upload) == UPLOAD
    assert kind_of(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})) == UPLOAD
    assert kind_of(ended) == EXECUTION_ENDED
    for other in ("not json", "[]", json.dumps({"Records": []}), json.dumps({"source": "aws.states"}),
                  json.dumps({"Records": [{"eventSource": "aws:sns"}]})):
        assert kind_of(other) == UNKNOWN, other


def test_the_redrive_command_names_the_stack_it_cannot_read(pipe, capsys):
    from local.cli import build_parser

    args = build_parser().parse_args(["redrive", "--stack", "no-such-stack", "--region", "us-east-1"])
    assert args.func(args) == 1
    assert "cannot read stack 'no-such-stack'" in capsys.readouterr().err
