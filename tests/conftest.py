"""Shared fixtures: an emulated AWS account (moto) with the import bucket, the jobs table and the
completion topic, shaped like template.yaml, for unit tests of the logic that talks to AWS."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
BUCKET = "unit-import-bucket"
JOBS_TABLE = "unit-jobs"

AWS_TEST_ENV = {
    "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
    "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true",
}


@functools.cache
def _clients() -> dict[str, Any]:
    """One boto3 session (fake credentials) and its clients per process: creating them is the slow
    part of a moto test (half a second), and clients made after moto is imported are mocked whenever
    it is on. Cached in the module, not only per pytest session: mutation testing (bench/mutation.py)
    starts a pytest session for each mutant in a process forked from one that made them already.
    moto gets the local runner's seams that only save time (local/moto_seams.py): each SNS
    subscription would make its own RSA key pair (~50 ms), every API call list its handler's methods."""
    import boto3
    import moto  # noqa: F401 - registers moto's botocore hook before any client exists

    import local.moto_seams  # noqa: F401 - the runner's time-only seams (5, 6, 8-13) for these tests too

    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                            aws_session_token="testing", region_name=REGION)
    clients: dict[str, Any] = {name: session.client(name) for name in ("s3", "sqs", "sns", "stepfunctions")}
    clients["dynamodb"] = session.resource("dynamodb")
    clients["session"] = session
    return clients


@pytest.fixture(scope="session")
def aws_session():
    return _clients()["session"]


@pytest.fixture(scope="session")
def aws_clients() -> dict[str, Any]:
    return {name: client for name, client in _clients().items() if name != "session"}


@pytest.fixture
def aws(monkeypatch, aws_clients):
    """moto for every AWS service, fresh for each test, with fake credentials in the
    environment too: nothing can reach a real account."""
    from moto import mock_aws

    for name, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield aws_clients


@dataclass
class Account:
    """The storage side of the stack in moto, plus the library objects that use it."""

    s3: Any
    sqs: Any
    sns: Any
    dynamodb: Any
    bucket: str
    topic_arn: str
    capture_url: str

    @property
    def store(self):
        from vendor_import.dal.s3_layout import S3Store

        return S3Store(self.s3, self.bucket)

    @property
    def jobs(self):
        from vendor_import.dal.jobs_table import JobsTable

        return JobsTable(self.dynamodb, JOBS_TABLE)

    def finalizer(self, clock=None):
        from vendor_import.dal.notifier import Notifier
        from vendor_import.logic.finalize import Finalizer

        kwargs = {"clock": clock} if clock else {}
        return Finalizer(self.store, self.jobs, Notifier(self.sns, self.topic_arn), **kwargs)

    def messages(self) -> list[dict[str, Any]]:
        """Every SNS message published so far (subject, attributes, parsed body); drains them."""
        out = []
        while True:
            msgs = self.sqs.receive_message(QueueUrl=self.capture_url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                envelope = json.loads(m["Body"])
                out.append({"subject": envelope.get("Subject"),
                            "attributes": {k: v["Value"] for k, v in envelope.get("MessageAttributes", {}).items()},
                            "body": json.loads(envelope["Message"])})
                self.sqs.delete_message(QueueUrl=self.capture_url, ReceiptHandle=m["ReceiptHandle"])

    def status_items(self) -> list[dict[str, Any]]:
        from vendor_import.dal.jobs_table import _from_dynamo

        return [_from_dynamo(i) for i in self.dynamodb.Table(JOBS_TABLE).scan()["Items"]]

    def read(self, key_or_uri: str) -> bytes:
        key = key_or_uri.split("/", 3)[3] if key_or_uri.startswith("s3://") else key_or_uri
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def keys(self, prefix: str = "") -> list[str]:
        resp = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for o in resp.get("Contents", []))


_ACCOUNT_MADE: list[Any] = []  # (moto's state, topic ARN, capture queue URL) once made in this process


@pytest.fixture
def account(aws) -> Account:
    """Versioned bucket, jobs table (with the by-vendor index), completion topic whose messages
    land in a capture queue, as template.yaml declares them. Made through the API by the first
    test of a process; each later test gets a copy of the state those calls left in moto (the
    same objects, ~1 ms instead of ~50: local/deploy_snapshot.py), and moto is reset after each."""
    from local import deploy_snapshot

    s3, sqs, sns, dynamodb = aws["s3"], aws["sqs"], aws["sns"], aws["dynamodb"]
    if _ACCOUNT_MADE:
        state, topic_arn, capture_url = _ACCOUNT_MADE
        deploy_snapshot.restore_moto_state(state)
        return Account(s3=s3, sqs=sqs, sns=sns, dynamodb=dynamodb, bucket=BUCKET, topic_arn=topic_arn,
                       capture_url=capture_url)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    dynamodb.create_table(
        TableName=JOBS_TABLE, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("job_id", "vendor", "updated_at")],
        KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[{"IndexName": "by-vendor", "Projection": {"ProjectionType": "ALL"},
                                 "KeySchema": [{"AttributeName": "vendor", "KeyType": "HASH"},
                                               {"AttributeName": "updated_at", "KeyType": "RANGE"}]}],
    )
    topic_arn = sns.create_topic(Name="unit-completion")["TopicArn"]
    capture_url = sqs.create_queue(QueueName="unit-completion-capture")["QueueUrl"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs",
                  Endpoint=f"arn:aws:sqs:{REGION}:123456789012:unit-completion-capture")
    state = deploy_snapshot.moto_state()
    if state is not None:
        _ACCOUNT_MADE[:] = [state, topic_arn, capture_url]
    return Account(s3=s3, sqs=sqs, sns=sns, dynamodb=dynamodb, bucket=BUCKET, topic_arn=topic_arn,
                   capture_url=capture_url)
