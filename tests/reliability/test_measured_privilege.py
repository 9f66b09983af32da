"""Least privilege, measured: every AWS API call each function makes, against its policy.

Every demo case of every vendor (successes, rejects, vendor failures), a bad upload and an execution
that ended without reaching Finalize run through the local runner while local/recorder.py records
each function's calls as IAM (action, resource) requests. Each function's inline policies, as
`sam deploy` would create them (translated template, resolved by the local deployer), must allow
every request (nothing used and missing) and each (action, resource) they grant must have been
requested (nothing granted and unused), but for the exceptions below, each with its reason.
IAM evaluation: an action is allowed when an Allow statement names it and a resource pattern
matches (`*` matches any characters, `/` included):
docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html
"""

from __future__ import annotations

import importlib
import json
from fnmatch import fnmatchcase

import pytest

from local.recorder import iam_requests, record_calls

from .helpers import LOGICAL, ROOT, VENDORS, report
from .test_redrive import execution_that_ends_without_finalize

# Granted, and not seen used by the code in a local run, on purpose:
NOT_CALLED_BY_THE_CODE = {
    # the vendor guard asks Step Functions about a slot holder only when its release was lost (the
    # holder's execution ended without Finalize nor its event handler): no demo case loses one
    *((f"{LOGICAL[v]}Function", "states:DescribeExecution", "execution") for v in VENDORS),
    # the circuit breaker's PAUSED / RESUMED messages: no demo case takes a vendor down
    *((f"{LOGICAL[v]}Function", "sns:Publish", "CompletionTopic") for v in VENDORS),
    # S3 answers a HeadObject/GetObject of a missing key with 404 only to a caller allowed
    # s3:ListBucket, else 403 (docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html): a console
    # start naming a missing file must say "does not exist" in AWS too, where moto always says 404
    *((f"{LOGICAL[v]}Function", "s3:ListBucket", "s3-vendor-import") for v in VENDORS),
    # Campaign stages rejects in a dry run or when Campaign refuses records; no demo case does either
    ("CampaignFunction", "s3:PutObject", "work"),
    # Lambda itself sends a failed asynchronous event to the dead-letter queue, with the function's
    # role (docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html)
    ("FinalizeFunction", "sqs:SendMessage", "FinalizeDeadLetterQueue"),
    # s3transfer aborts a multipart upload that failed part-way (rejects larger than 8 MiB): the
    # parts would otherwise stay billed until the bucket's 7-day lifecycle rule removes them
    ("FinalizeFunction", "s3:AbortMultipartUpload", "rejects"),
}


def granted(pipe, role_name: str) -> list[tuple[set[str], list[str]]]:
    """The Allow statements of every inline policy of the deployed role (the role's own, and the
    AWS::IAM::Policy resources attached to it)."""
    import boto3

    iam = boto3.client("iam", region_name="us-east-1")
    out = []
    for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
        doc = json.loads(doc) if isinstance(doc, str) else doc
        for st in doc["Statement"]:
            assert st["Effect"] == "Allow" and "NotAction" not in st and "NotResource" not in st, st
            res = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            out.append((set(st["Action"] if isinstance(st["Action"], list) else [st["Action"]]), res))
    return out


def allows(statements, action: str, resource: str) -> bool:
    return any(action in actions and any(fnmatchcase(resource, pat) for pat in patterns)
               for actions, patterns in statements)


@pytest.fixture(scope="module")
def measured(pipe, sims):
    """{function logical id: {(action, resource)}} from one run of every kind of import."""
    from local.runner import _reset_library_caches

    _reset_library_caches()  # cold containers: settings are read from their secret again
    with record_calls() as calls:
        for vendor in VENDORS:
            module = importlib.import_module(f"local.simulators.{vendor}")
            for case in module.DEMO_CASES:
                pipe.import_file(ROOT / case.file, case.key, case.metadata or None)
        for vendor in VENDORS:  # console starts: the latest version (no version id), and a missing key
            doc = json.loads((ROOT / "events" / f"console-start-{vendor}.json").read_text())
            pipe.start_console(vendor, {**doc, "bucket": pipe.bucket})
            pipe.start_console(vendor, {"bucket": pipe.bucket, "key": f"inbox/{vendor}/measured-missing.csv"})
        pipe.import_file(b"a,b\n1,2\n", "inbox/nosuchvendor/measured.csv")  # FAILED by the submit function
        pipe.import_file(ROOT / "events/files/hopex/clean.mgl", "inbox/hopex/dry-run/measured.mgl")
        job_id, arn = execution_that_ends_without_finalize(pipe)
        pipe._finish(job_id, arn, "", "hopex")  # finalized from the execution-ended event
    by_name = iam_requests(calls)
    logical = {name: lid for lid, name in pipe.deployment.functions.items()}
    return {logical[name]: reqs for name, reqs in by_name.items()}


def role_of(pipe, function: str) -> str:
    """The deployed name of the function's execution role."""
    return pipe.deployment.refs[pipe.cfn["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0]]


FUNCTIONS = ["SubmitFunction", "FinalizeFunction", *(f"{LOGICAL[v]}Function" for v in VENDORS)]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_is_granted_what_it_calls_and_nothing_more(pipe, measured, function):
    used = measured.get(function, set())
    assert used, f"{function} made no AWS call in the run"
    statements = granted(pipe, role_of(pipe, function))
    missing = sorted((a, r) for a, r in used if not allows(statements, a, r))
    assert missing == [], f"{function} calls what its policy does not allow"
    exceptions = {(a, where) for fn, a, where in NOT_CALLED_BY_THE_CODE if fn == function}
    unused, excused = set(), set()
    for actions, patterns in statements:
        for action in actions:
            for pat in patterns:
                if any(a == action and fnmatchcase(r, pat) for a, r in used):
                    continue
                reason = next(((a, w) for a, w in exceptions if a == action and w in pat), None)
                if reason is None:
                    unused.add((action, pat))
                else:
                    excused.add(reason)
    assert sorted(unused) == [], f"{function} is granted what it never calls"
    assert excused == exceptions, f"{function}: an exception above no longer applies"
    report("least privilege, measured (tests/reliability/test_measured_privilege.py)",
           f"{function}: {len(used)} (action, resource) requests, all granted; "
           f"{sum(len(a) * len(p) for a, p in statements)} grants, all used or listed")
