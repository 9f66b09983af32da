"""The local runner: the real template in embedded moto, the real handlers in-process, real HTTP
to the vendor (a built-in simulator on 127.0.0.1, or the endpoint in a settings file).

    with LocalPipeline(settings={"hopex": {...}}) as pipe:
        result = pipe.import_file("sample.mgl", "inbox/hopex/sample.mgl")

What AWS does between services is emulated here, faithfully to its documented behaviour:
the SQS event source mapping (batches of 10, partial batch failures, redrive to the DLQ after
maxReceiveCount), the EventBridge rule that finalizes executions that ended abnormally (an
asynchronous invocation: Lambda's two retries, then the function's dead-letter queue), and the
operator's redrive of both dead-letter queues (local/redrive.py).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import deploy_snapshot, moto_seams
from .template_deploy import (
    ACCOUNT,
    REGION,
    ROOT,
    function_code_dirs,
    translated_template,
    translation_key,
    vendor_stems,
)

_SFN_DONE = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
DEFAULT_TIME_SCALE = 0.001
ASYNC_ATTEMPTS = 3  # an asynchronous invocation: the first run and Lambda's 2 retries (the default)


@dataclass
class ImportResult:
    job_id: str | None
    key: str
    vendor: str
    state: str
    record: dict[str, Any] | None
    execution_status: str | None = None
    status_path: Path | None = None
    rejects_paths: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    routed: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("SUCCEEDED", "SUCCEEDED_WITH_REJECTS", "VALIDATED")


class LocalPipeline:
    def __init__(self, *, settings: dict[str, dict[str, Any]] | None = None, simulators: dict[str, Any] | None = None,
                 time_scale: float = DEFAULT_TIME_SCALE, out_dir: str | Path | None = None,
                 execution_timeout: float = 120.0, parameters: dict[str, Any] | None = None):
        self.settings = dict(settings or {})
        self.simulators = dict(simulators or {})
        self.time_scale = time_scale
        self.out_dir = Path(out_dir) if out_dir else None
        self.execution_timeout = execution_timeout
        self.parameters = parameters or {}
        self._mock = None
        self._env_saved: dict[str, str] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> LocalPipeline:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        global _running
        if _running is not None:
            raise RuntimeError("a LocalPipeline is already running in this process: stop it first "
                               "(the stack names are fixed, both would deploy into the same moto)")
        _running = self
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        from moto import mock_aws

        self._env_saved = dict(os.environ)
        os.environ.update({
            "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
            "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
            "POWERTOOLS_IDEMPOTENCY_DISABLED": os.environ.get("POWERTOOLS_IDEMPOTENCY_DISABLED", "false"),
        })
        os.environ.pop("AWS_PROFILE", None)
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        _reset_library_caches()
        self._start_s3_endpoint()
        # the translation is cached on the hashes of what it reads; the deployment is done in full
        # through the API once per key, then restored from its snapshot (local/deploy_snapshot.py)
        sam, self.cfn, _hit = translated_template(parameters=self.parameters)
        self.stems = vendor_stems(sam)
        self.deployment, self.restored = deploy_snapshot.deployed(
            self.cfn, self.parameters, translation_key(parameters=self.parameters))
        code = function_code_dirs(sam)
        by_name = {self.deployment.functions[logical]: spec for logical, spec in code.items()}
        self.lambdas = moto_seams.InProcessLambdas(by_name, [ROOT / "layers" / "common"])
        moto_seams.install(self.lambdas, self.time_scale)
        import boto3

        self.s3 = boto3.client("s3", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.ddb = boto3.resource("dynamodb", region_name=REGION)
        self.secrets = boto3.client("secretsmanager", region_name=REGION)
        self.lambda_client = boto3.client("lambda", region_name=REGION)
        self.sns = boto3.client("sns", region_name=REGION)
        self.bucket = self.deployment.refs["ImportBucket"]
        self.queue_url = self.deployment.refs["UploadQueue"]
        self.dlq_url = self.deployment.refs["UploadDeadLetterQueue"]
        self.finalize_dlq_url = self.deployment.refs["FinalizeDeadLetterQueue"]
        self.table = self.ddb.Table(self.deployment.refs["JobsTable"])
        self.submit_function = self.deployment.functions["SubmitFunction"]
        self.finalize_function = self.deployment.functions["FinalizeFunction"]
        # a queue subscribed to the completion topic lets tests and the CLI read every SNS message
        self.sns_capture_url = self.sqs.create_queue(QueueName="local-completion-capture")["QueueUrl"]
        capture_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:local-completion-capture"
        self.sns.subscribe(TopicArn=self.deployment.refs["CompletionTopic"], Protocol="sqs",
                           Endpoint=capture_arn, Attributes={"RawMessageDelivery": "false"})
        self.messages: list[dict[str, Any]] = []
        for vendor, doc in self.settings.items():
            self.set_settings(vendor, doc)

    def stop(self) -> None:
        global _running
        if _running is self:
            _running = None
        if getattr(self, "_s3_server", None):
            self._s3_server.stop()
            self._s3_server = None
        if self._mock:
            self._mock.stop()
            self._mock = None
        _reset_library_caches()
        if self._env_saved is not None:
            os.environ.clear()
            os.environ.update(self._env_saved)
            self._env_saved = None

    def _start_s3_endpoint(self) -> None:
        """A real HTTP endpoint over the same in-process moto S3, so presigned URLs handed to a
        vendor (simplement-e fetches the file itself) resolve on 127.0.0.1."""
        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # it logs presigned URLs at INFO

        self._s3_server = moto_seams.s3_endpoint_server("127.0.0.1", 0)
        self._s3_server.start()
        port = self._s3_server._server.server_port
        os.environ["S3_PRESIGN_ENDPOINT"] = f"http://127.0.0.1:{port}"

    # -- configuration -----------------------------------------------------------------------------
    def set_settings(self, vendor: str, doc: dict[str, Any]) -> None:
        arn = self.deployment.refs[f"{self.stems[vendor]}Settings"]
        self.secrets.put_secret_value(SecretId=arn, SecretString=json.dumps(doc))
        self.settings[vendor] = doc
        _reset_library_caches(settings_only=True)

    def state_machine_arn(self, vendor: str) -> str:
        return self.deployment.refs[f"{self.stems[vendor]}ImportStateMachine"]

    # -- running imports ---------------------------------------------------------------------------
    def upload(self, path: str | Path | bytes, key: str, metadata: dict[str, str] | None = None) -> dict[str, Any]:
        body = path if isinstance(path, bytes) else Path(path).read_bytes()
        return self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata=metadata or {})

    def import_file(self, path: str | Path | bytes, key: str, metadata: dict[str, str] | None = None) -> ImportResult:
        """Upload, let the pipeline run, return the outcome (and copy outputs to out_dir)."""
        started = time.perf_counter()
        self.upload(path, key, metadata)
        outcomes = self.pump_queue()
        mine = [o for o in outcomes if o.get("key") == key] or outcomes
        result = self._result_for(key, mine[-1] if mine else None)
        result.seconds = time.perf_counter() - started
        return result

    def import_many(self, uploads: list[tuple[str | Path | bytes, str]],
                    metadata: dict[str, str] | None = None) -> list[ImportResult]:
        """A burst: upload every (file, key) at once, let the pipeline start them all, wait for each
        to end (the vendor guard queues what is over the target's limit). Results in upload order."""
        started = time.perf_counter()
        for body, key in uploads:
            self.upload(body, key, metadata)
        outcomes = {o["key"]: o for o in self.pump_queue(max_rounds=10 + len(uploads))}
        results = []
        for _body, key in uploads:
            result = self._result_for(key, outcomes.get(key))
            result.seconds = time.perf_counter() - started
            results.append(result)
        return results

    def start_console(self, vendor: str, execution_input: Any, name: str | None = None) -> ImportResult:
        """What a user does in the Step Functions console: StartExecution with a typed input."""
        started = time.perf_counter()
        # StartExecution without a name gets a UUID from AWS (and from the console); moto would
        # name it "None", so every unnamed start after the first would collide
        kwargs = {"stateMachineArn": self.state_machine_arn(vendor), "name": name or str(uuid.uuid4()),
                  "input": execution_input if isinstance(execution_input, str) else json.dumps(execution_input)}
        arn = self.sfn.start_execution(**kwargs)["executionArn"]
        job_id = arn.rsplit(":", 1)[-1]
        key = execution_input.get("key", "") if isinstance(execution_input, dict) else ""
        result = self._finish(job_id, arn, key, vendor)
        result.seconds = time.perf_counter() - started
        return result

    def pump_queue(self, max_rounds: int = 50) -> list[dict[str, Any]]:
        """The SQS -> submit function event source mapping: until the queue is empty."""
        outcomes: list[dict[str, Any]] = []
        queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{self.queue_url.rsplit('/', 1)[-1]}"
        for _ in range(max_rounds):
            resp = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                            AttributeNames=["All"], MessageAttributeNames=["All"])
            messages = resp.get("Messages", [])
            if not messages:
                break
            records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                        "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
                        "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": REGION}
                       for m in messages]
            resp = self.lambda_client.invoke(FunctionName=self.submit_function,
                                             Payload=json.dumps({"Records": records}).encode())
            payload = json.loads(resp["Payload"].read() or b"{}")
            failed = set()
            if resp.get("FunctionError"):
                failed = {r["messageId"] for r in records}  # the whole batch returns to the queue
            else:
                failed = {f["itemIdentifier"] for f in payload.get("batchItemFailures", [])}
            for m in messages:
                if m["MessageId"] in failed:
                    self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"],
                                                       VisibilityTimeout=0)
                else:
                    self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
                    for rec in json.loads(m["Body"]).get("Records", []):
                        from vendor_import.logic.routing import decode_event_key

                        outcomes.append({"key": decode_event_key(rec["s3"]["object"]["key"]),
                                         "version": rec["s3"]["object"].get("versionId"),
                                         "etag": rec["s3"]["object"].get("eTag")})
        return outcomes

    def _result_for(self, key: str, outcome: dict[str, Any] | None) -> ImportResult:
        from vendor_import.logic.routing import execution_name

        vendor = key.split("/")[1] if key.count("/") >= 2 else "unknown"
        version = (outcome or {}).get("version") or (outcome or {}).get("etag")
        job_id = execution_name(self.bucket, key, version)
        arn = None
        if vendor in self.stems:
            sm_name = self.state_machine_arn(vendor).rsplit(":", 1)[-1]
            arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{sm_name}:{job_id}"
            try:
                self.sfn.describe_execution(executionArn=arn)
            except self.sfn.exceptions.ExecutionDoesNotExist:
                arn = None
        if arn is None:  # rejected before any execution: the status record is already there
            return self._collect(job_id, key, vendor, None)
        return self._finish(job_id, arn, key, vendor)

    def _finish(self, job_id: str, arn: str, key: str, vendor: str) -> ImportResult:
        desc = self.wait_execution(arn)
        while (nxt := _continued_as(desc)) is not None:  # the job went on in a new execution
            desc = self.wait_execution(f"{arn.rsplit(':', 1)[0]}:{nxt}")
        status = desc["status"]
        if status in ("FAILED", "TIMED_OUT", "ABORTED"):
            self._emit_execution_ended(desc)
        return self._collect(job_id, key, vendor, status)

    def wait_execution(self, arn: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.execution_timeout
        pause = 0.005
        while True:
            desc = self.sfn.describe_execution(executionArn=arn)
            if desc["status"] in _SFN_DONE:
                return desc
            if time.monotonic() > deadline:
                self.sfn.stop_execution(executionArn=arn, error="LocalRunnerTimeout",
                                        cause=f"still running after {self.execution_timeout} s of wall time")
                return self.sfn.describe_execution(executionArn=arn)
            # each DescribeExecution costs a few ms of the CPU (and GIL) the execution runs on:
            # poll often at first (short imports), then back off to at most 20 per second
            time.sleep(pause)
            pause = min(pause * 1.5, 0.05)

    def _emit_execution_ended(self, desc: dict[str, Any]) -> None:
        """The EventBridge rule of the template: abnormal ends are finalized by the final function,
        invoked asynchronously: Lambda runs it up to 3 times (2 retries), then sends the event to the
        function's dead-letter queue (docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html)."""
        event = {
            "version": "0", "source": "aws.states", "detail-type": "Step Functions Execution Status Change",
            "account": ACCOUNT, "region": REGION, "resources": [desc["executionArn"]],
            "detail": {"executionArn": desc["executionArn"], "stateMachineArn": desc["stateMachineArn"],
                       "name": desc["name"], "status": desc["status"],
                       "startDate": int(desc["startDate"].timestamp() * 1000),
                       "stopDate": int(desc.get("stopDate", desc["startDate"]).timestamp() * 1000),
                       "input": desc.get("input"), "error": desc.get("error"), "cause": desc.get("cause")},
        }
        payload = json.dumps(event)
        for _attempt in range(ASYNC_ATTEMPTS):
            resp = self.lambda_client.invoke(FunctionName=self.finalize_function, Payload=payload.encode())
            resp["Payload"].read()
            if not resp.get("FunctionError"):
                return
        dead_letters = self.deployment.dead_letters.get(self.finalize_function)
        if dead_letters:
            self.sqs.send_message(QueueUrl=dead_letters, MessageBody=payload)

    def redrive(self) -> Any:
        """What an operator runs (`s3-vendor-import redrive`): each dead letter back to its handler;
        then the event source mapping delivers the uploads that went back to the upload queue."""
        from .redrive import redrive

        result = redrive(self.sqs, self.lambda_client, dead_letter_urls=[self.dlq_url, self.finalize_dlq_url],
                         upload_queue_url=self.queue_url, finalize_function=self.finalize_function)
        self.pump_queue()
        return result

    def _collect(self, job_id: str, key: str, vendor: str, status: str | None) -> ImportResult:
        from vendor_import.dal.jobs_table import _from_dynamo

        item = self.table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        record = _from_dynamo(item) if item else None
        state = (record or {}).get("state") or "MISSING"
        result = ImportResult(job_id, key, vendor, state, record, execution_status=status)
        self.drain_messages()
        if self.out_dir and record:
            folder = self.out_dir / job_id
            folder.mkdir(parents=True, exist_ok=True)
            status_path = folder / "status.json"
            status_path.write_text(json.dumps(record, indent=2, default=str))
            result.status_path = status_path
            for uri in ((record.get("rejects") or {}).get("csv_uri"), (record.get("rejects") or {}).get("raw_uri")):
                if uri:
                    bucket, _, obj_key = uri[5:].partition("/")
                    dest = folder / obj_key.rsplit("/", 1)[-1]
                    with open(dest, "wb") as f:
                        shutil.copyfileobj(self.s3.get_object(Bucket=bucket, Key=obj_key)["Body"], f)
                    result.rejects_paths.append(dest)
        return result

    def drain_messages(self) -> list[dict[str, Any]]:
        """SNS messages published so far (each: subject, attributes, parsed body)."""
        while True:
            resp = self.sqs.receive_message(QueueUrl=self.sns_capture_url, MaxNumberOfMessages=10)
            msgs = resp.get("Messages", [])
            if not msgs:
                return self.messages
            for m in msgs:
                envelope = json.loads(m["Body"])
                self.messages.append({
                    "subject": envelope.get("Subject"),
                    "attributes": {k: v.get("Value") for k, v in (envelope.get("MessageAttributes") or {}).items()},
                    "body": json.loads(envelope["Message"]),
                })
                self.sqs.delete_message(QueueUrl=self.sns_capture_url, ReceiptHandle=m["ReceiptHandle"])

    def dlq_depth(self, queue_url: str | None = None) -> int:
        """Messages waiting in the upload dead-letter queue (or in queue_url)."""
        attrs = self.sqs.get_queue_attributes(QueueUrl=queue_url or self.dlq_url,
                                              AttributeNames=["ApproximateNumberOfMessages"])
        return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


_running: LocalPipeline | None = None


def _continued_as(desc: dict[str, Any]) -> str | None:
    """The name of the execution a SUCCEEDED one continued in (statemachines/import.asl.json)."""
    if desc.get("status") != "SUCCEEDED":
        return None
    try:
        job = (json.loads(desc.get("output") or "{}") or {}).get("job") or {}
    except (ValueError, AttributeError):
        return None
    return job.get("next_execution_name") if job.get("continue_in_new_execution") else None

def _reset_library_caches(settings_only: bool = False) -> None:
    """Library caches hold clients and settings per container; a new local deployment is a new
    'container'."""
    import sys

    wiring = sys.modules.get("vendor_import.wiring")
    if wiring is None:
        return
    wiring._settings_cache.clear()
    wiring._connector_cache.clear()
    if not settings_only:
        wiring.client.cache_clear()
        wiring.presign_client.cache_clear()
        wiring.dynamodb.cache_clear()
    try:
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()
    except Exception:  # noqa: BLE001 - older powertools: nothing cached to clear
        pass
