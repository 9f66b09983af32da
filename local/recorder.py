"""Record every AWS API call each deployed function makes in the local runner, as IAM requests.

    with record_calls() as calls:
        pipe.import_file(...)
    requests = iam_requests(calls)   # {function name: {(action, resource ARN), ...}}

Calls are seen where botocore makes them (``BaseClient._make_api_call``) and where it signs a
presigned URL (a vendor fetches it with the signer's permissions). A call belongs to the function
whose handler runs in the calling thread (local.moto_seams), or, from a worker thread of s3transfer
(multipart uploads), to the function running at that moment. Calls made by the runner itself and by
Step Functions (its Lambda Invoke) belong to no function and are not recorded.

The mapping of an API operation to the IAM action it needs follows the Service Authorization
Reference
(docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html):
an S3 call on a version needs the ...Version action; the multipart parts of an upload need
s3:PutObject; a DynamoDB query on an index is authorized on the index ARN.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from .moto_seams import current_function
from .template_deploy import ACCOUNT, REGION

_PUT_PARTS = {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"}


@dataclass(frozen=True)
class Call:
    function: str  # the deployed function's name
    service: str  # botocore's service name: s3, dynamodb, sns...
    operation: str  # the API operation: GetObject, UpdateItem...
    params: dict[str, Any]


def _caller() -> str | None:
    fn = current_function()
    if fn is None and threading.current_thread().name.startswith("ThreadPoolExecutor"):
        fn = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")  # s3transfer's workers, for the function running
    return fn


@contextmanager
def record_calls() -> Iterator[list[Call]]:
    from botocore import client as botocore_client
    from botocore import signers

    calls: list[Call] = []
    lock = threading.Lock()
    make_api_call = botocore_client.BaseClient._make_api_call
    presign = signers.RequestSigner.generate_presigned_url

    def recording_call(self, operation_name, api_params):
        fn = _caller()
        if fn:
            with lock:
                calls.append(Call(fn, self.meta.service_model.service_name, operation_name, dict(api_params)))
        return make_api_call(self, operation_name, api_params)

    def recording_presign(self, request_dict, operation_name, *args, **kwargs):
        fn = _caller()
        if fn:
            bucket, _, key = unquote(request_dict["auth_path"]).lstrip("/").partition("/")
            params = {"Bucket": bucket, "Key": key, **({"VersionId": request_dict["query_string"]["versionId"]}
                                                       if "versionId" in request_dict["query_string"] else {})}
            with lock:
                calls.append(Call(fn, "s3", operation_name, params))
        return presign(self, request_dict, operation_name, *args, **kwargs)

    botocore_client.BaseClient._make_api_call = recording_call
    signers.RequestSigner.generate_presigned_url = recording_presign
    try:
        yield calls
    finally:
        botocore_client.BaseClient._make_api_call = make_api_call
        signers.RequestSigner.generate_presigned_url = presign


def iam_request(call: Call) -> set[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs one call is authorized on."""
    p, op = call.params, call.operation
    if call.service == "s3":
        if op == "ListObjectsV2" or op == "ListObjects":
            return {("s3:ListBucket", f"arn:aws:s3:::{p['Bucket']}")}
        obj = f"arn:aws:s3:::{p['Bucket']}/{p['Key']}"
        if op in ("GetObject", "HeadObject"):
            return {("s3:GetObjectVersion" if p.get("VersionId") else "s3:GetObject", obj)}
        if op in _PUT_PARTS:
            return {("s3:PutObject", obj)}
        if op == "CopyObject":
            src = p["CopySource"]
            src = src if isinstance(src, str) else f"{src['Bucket']}/{src['Key']}"
            return {("s3:PutObject", obj), ("s3:GetObject", f"arn:aws:s3:::{src}")}
        return {(f"s3:{op}", obj)}
    if call.service == "dynamodb":
        table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{p['TableName']}"
        if p.get("IndexName"):
            table += f"/index/{p['IndexName']}"
        return {(f"dynamodb:{op}", table)}
    if call.service == "sns":
        return {(f"sns:{op}", p["TopicArn"])}
    if call.service == "stepfunctions":
        return {(f"states:{op}", p.get("stateMachineArn") or p.get("executionArn"))}
    if call.service == "secretsmanager":
        return {(f"secretsmanager:{op}", p["SecretId"])}
    if call.service == "sqs":
        return {(f"sqs:{op}", p["QueueUrl"])}
    return {(f"{call.service}:{op}", "*")}


def iam_requests(calls: list[Call]) -> dict[str, set[tuple[str, str]]]:
    out: dict[str, set[tuple[str, str]]] = {}
    for call in calls:
        out.setdefault(call.function, set()).update(iam_request(call))
    return out
