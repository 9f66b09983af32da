"""AWS rules that moto does not enforce, checked on the template as `sam deploy` would send it.

moto accepts any KMS key policy, any alarm on any metric, any Task timeout: these tests encode what
AWS would do with the same template, each with the documentation page that says so.
"""
# ruff: noqa: F811 - test_template's ``template`` fixture is imported, then named as test arguments

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

# the expanded template (a module fixture) and the logical ids referenced inside a value (Ref, GetAtt, Sub)
from .test_template import LOGICAL, refs, template  # noqa: F401 - template is a fixture

ROOT = Path(__file__).resolve().parents[2]
VENDORS = ("hopex", "campaign", "aep", "simplemente", "cirrus")


@pytest.fixture(scope="module")
def cfn(template) -> dict:
    return translated(template)


def translated(template: dict) -> dict:
    from local.template_deploy import translate

    with pytest.MonkeyPatch.context() as mp:  # the translator builds ARNs for a region
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        return translate(copy.deepcopy(template))


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# -- 1. every publisher can use the key of what it publishes to ---------------------------------------------

def edges(cfn: dict) -> list[tuple[str, str, str]]:
    """(publisher, what configures it, destination logical id) for every message a resource of the
    template sends to a topic or queue of the template. The publisher is a service principal, or
    the logical id of the IAM role the message is sent with."""
    res = cfn["Resources"]
    out: list[tuple[str, str, str]] = []
    for name, r in res.items():
        p = r.get("Properties", {})
        typ = r["Type"]
        if typ == "AWS::CloudWatch::Alarm":
            for key in ("AlarmActions", "OKActions", "InsufficientDataActions"):
                out += [("cloudwatch.amazonaws.com", name, d) for d in refs(p.get(key, []))]
        elif typ == "AWS::S3::Bucket":
            notif = p.get("NotificationConfiguration", {})
            for c in notif.get("QueueConfigurations", []) + notif.get("TopicConfigurations", []):
                out += [("s3.amazonaws.com", name, d) for d in refs(c.get("Queue") or c.get("Topic"))]
        elif typ == "AWS::Events::Rule":
            for target in p.get("Targets", []):
                out += [("events.amazonaws.com", name, d) for d in refs(target["Arn"])]
                out += [("events.amazonaws.com", name, d) for d in refs(target.get("DeadLetterConfig", {}))]
        elif typ == "AWS::SNS::Subscription" and p.get("Protocol") == "sqs":
            out += [("sns.amazonaws.com", name, d) for d in refs(p["Endpoint"])]
        elif typ == "AWS::Lambda::Function" and p.get("DeadLetterConfig"):
            # Lambda sends the dead letter with the function's execution role
            out += [(role, name, d) for role in refs(p["Role"]) for d in refs(p["DeadLetterConfig"])]
        elif typ == "AWS::IAM::Role":
            for pol in p.get("Policies", []):
                for st in pol["PolicyDocument"]["Statement"]:
                    if st["Effect"] == "Allow" and {"sns:Publish", "sqs:SendMessage"} & set(as_list(st["Action"])):
                        out += [(name, name, d) for d in refs(st["Resource"])]
    return [(pub, src, d) for pub, src, d in out
            if res.get(d, {}).get("Type") in ("AWS::SNS::Topic", "AWS::SQS::Queue")]


def key_of(resource: dict) -> object:
    """The KMS key of a topic or queue: None (no KMS key: SSE-SQS or none), an alias string, or the
    intrinsic naming a key of the template."""
    p = resource.get("Properties", {})
    return p.get("KmsMasterKeyId")


def grants(cfn: dict, key_logical: str, principal: str) -> list[dict]:
    """The Allow statements of the key's policy that let a service principal encrypt with it."""
    doc = cfn["Resources"][key_logical]["Properties"]["KeyPolicy"]
    out = []
    for st in doc["Statement"]:
        services = as_list(st.get("Principal", {}).get("Service", [])) if isinstance(st.get("Principal"), dict) else []
        actions = set(as_list(st["Action"]))
        if (st["Effect"] == "Allow" and principal in services
                and {"kms:Decrypt"} <= actions and actions & {"kms:GenerateDataKey*", "kms:GenerateDataKey"}):
            out.append(st)
    return out


def role_may_use_key(cfn: dict, role: str, key_logical: str) -> bool:
    actions: set[str] = set()
    for pol in cfn["Resources"][role]["Properties"].get("Policies", []):
        for st in pol["PolicyDocument"]["Statement"]:
            if st["Effect"] == "Allow" and key_logical in refs(st["Resource"]):
                actions |= set(as_list(st["Action"]))
    return "kms:Decrypt" in actions and bool(actions & {"kms:GenerateDataKey*", "kms:GenerateDataKey"})


def problems(cfn: dict) -> list[str]:
    """Every edge whose publisher could not encrypt with the destination's key, in words."""
    res = cfn["Resources"]
    found = []
    for publisher, source, dest in edges(cfn):
        key = key_of(res[dest])
        if key is None:
            continue  # SQS-managed SSE or no encryption: no key policy involved
        service = publisher.endswith(".amazonaws.com")
        if isinstance(key, str):  # an alias: AWS managed keys (alias/aws/...) grant no service principal
            if service and key.startswith("alias/aws/"):
                found.append(f"{source} -> {dest}: {publisher} cannot use the AWS managed key {key}")
            continue
        (key_logical,) = refs(key)
        if service:
            matching = grants(cfn, key_logical, publisher)
            if not matching:
                found.append(f"{source} -> {dest}: the policy of {key_logical} does not let {publisher} use it")
            elif publisher != "events.amazonaws.com" and not any(
                    {"aws:SourceAccount", "aws:SourceArn"} & {k for cond in st.get("Condition", {}).values()
                                                              for k in cond} for st in matching):
                found.append(f"{source} -> {dest}: the grant to {publisher} is not scoped to this account")
        elif not role_may_use_key(cfn, publisher, key_logical):
            found.append(f"{source} -> {dest}: role {publisher} may not use {key_logical}")
    return found


def test_every_publisher_can_encrypt_with_the_key_of_the_topic_or_queue_it_sends_to(cfn):
    """A service that publishes to an encrypted topic or queue (CloudWatch alarms, S3 notifications,
    EventBridge targets, SNS subscriptions) needs kms:GenerateDataKey* and kms:Decrypt in the policy
    of a customer managed key; an AWS managed key (alias/aws/sns, alias/aws/sqs) cannot grant it,
    and the message is dropped without an error anyone sees.
    docs.aws.amazon.com/sns/latest/dg/sns-key-management.html ("Enable compatibility between event
    sources from AWS services and encrypted topics"), and for queues
    docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html.
    Roles of the template that publish need the same two actions on the key in their own policy."""
    found = edges(cfn)
    # the edges of this template, written by hand: a new one must be looked at
    services = {(pub, dest) for pub, _src, dest in found if pub.endswith(".amazonaws.com")}
    assert services == {("cloudwatch.amazonaws.com", "AlarmTopic"), ("s3.amazonaws.com", "UploadQueue"),
                        ("events.amazonaws.com", "FinalizeDeadLetterQueue")}
    assert problems(cfn) == []


def test_the_check_finds_an_alarm_topic_on_the_aws_managed_key(template):
    """The mistake this guards against (the alarm topic on alias/aws/sns) is reported, once per alarm."""
    broken = copy.deepcopy(template)
    broken["Resources"]["AlarmTopic"]["Properties"]["KmsMasterKeyId"] = "alias/aws/sns"
    alarms = sorted(n for n, r in broken["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm")
    assert sorted(problems(translated(broken))) == [
        f"{a} -> AlarmTopic: cloudwatch.amazonaws.com cannot use the AWS managed key alias/aws/sns" for a in alarms]
    unscoped = copy.deepcopy(template)
    for st in unscoped["Resources"]["AlarmTopicKey"]["Properties"]["KeyPolicy"]["Statement"]:
        st.pop("Condition", None)
    assert problems(translated(unscoped))[0].endswith(
        "the grant to cloudwatch.amazonaws.com is not scoped to this account")


def test_the_alarm_key_rotates_and_its_cloudwatch_grant_is_scoped_to_this_accounts_alarms(template):
    """Automatic rotation of a customer managed key
    (docs.aws.amazon.com/kms/latest/developerguide/rotate-keys.html);
    the confused-deputy conditions aws:SourceAccount and aws:SourceArn
    (docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html)."""
    key = template["Resources"]["AlarmTopicKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    (grant,) = [st for st in key["KeyPolicy"]["Statement"]
                if st.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert sorted(grant["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert grant["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
        "ArnLike": {"aws:SourceArn": {
            "Fn::Sub": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:*"}}}


# -- 3. every alarm watches a metric that exists ----------------------------------------------------------------

# Metrics AWS publishes for us, and the one dimension each alarm must name (with what it refers to):
# AWS/Lambda docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html (FunctionName),
# AWS/SQS docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html
# (QueueName), AWS/States docs.aws.amazon.com/step-functions/latest/dg/procedure-cw-metrics.html (StateMachineArn).
AWS_METRICS = {
    "AWS/Lambda": ({"Errors", "Throttles", "Invocations", "Duration", "ConcurrentExecutions"}, "FunctionName",
                   ("Ref", "AWS::Serverless::Function")),
    "AWS/SQS": ({"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"}, "QueueName",
                ("QueueName", "AWS::SQS::Queue")),
    "AWS/States": ({"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted", "ExecutionsStarted"},
                   "StateMachineArn", ("Ref", "AWS::Serverless::StateMachine")),
}


def alarms(template: dict) -> dict[str, dict]:
    return {n: r["Properties"] for n, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


@pytest.fixture(scope="module")
def emitted(template) -> set[tuple[str, str, frozenset]]:
    """(namespace, metric name, dimensions) of every EMF document the code prints, run with the
    functions' environment from the template's Globals: each final state and the start, per vendor."""
    import contextlib
    import io

    from aws_lambda_powertools import Metrics
    from vendor_import import metrics as import_metrics

    env = template["Globals"]["Function"]["Environment"]["Variables"]
    out: set[tuple[str, str, frozenset]] = set()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POWERTOOLS_METRICS_DISABLED", "false")
        mp.setenv("POWERTOOLS_METRICS_NAMESPACE", env["POWERTOOLS_METRICS_NAMESPACE"])
        mp.setenv("POWERTOOLS_SERVICE_NAME", env["POWERTOOLS_SERVICE_NAME"])
        metrics = Metrics()  # as the handlers build it: namespace and service from the environment
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            for vendor in VENDORS:
                import_metrics.import_started(metrics, vendor)
                for state in import_metrics.STATE_METRICS:
                    import_metrics.import_ended(metrics, {
                        "job_id": "j", "vendor": vendor, "state": state, "dry_run": False,
                        "counts": {"sent": 2, "rejected": 1}, "polls": 1, "duration_seconds": 3.0})
        metrics.clear_metrics()
    for line in buf.getvalue().splitlines():
        if not line.startswith('{"_aws"'):
            continue
        doc = json.loads(line)
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for dims in directive["Dimensions"]:
                dimensions = frozenset((d, doc[d]) for d in dims)
                out |= {(directive["Namespace"], m["Name"], dimensions) for m in directive["Metrics"]}
    return out


def test_every_alarm_watches_a_metric_that_is_emitted_with_exactly_its_dimensions(template, emitted):
    """A CloudWatch metric is its namespace, name and full set of dimensions: an alarm that leaves a
    dimension out, or names one more, watches a metric nobody publishes and stays in OK (missing data
    is notBreaching) forever. docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch_concepts.html
    ("Dimensions": each unique combination is a separate metric); EMF documents:
    docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html"""
    res = template["Resources"]
    for name, a in alarms(template).items():
        if a["Namespace"] in AWS_METRICS:
            names, dim, (how, typ) = AWS_METRICS[a["Namespace"]]
            assert a["MetricName"] in names, name
            (d,) = a["Dimensions"]
            assert d["Name"] == dim, name
            (target,) = refs(d["Value"])
            assert res[target]["Type"] == typ, name
            assert d["Value"] == ({"Ref": target} if how == "Ref" else {"Fn::GetAtt": [target, how]}), name
        else:
            dims = frozenset((d["Name"], d["Value"]) for d in a["Dimensions"])
            assert (a["Namespace"], a["MetricName"], dims) in emitted, name


def test_the_check_knows_what_the_code_emits(emitted):
    """The EMF run above found the per-vendor outcome metrics under the template's namespace."""
    for vendor in VENDORS:
        dims = frozenset({("service", "s3-vendor-import"), ("vendor", vendor)})
        assert ("S3VendorImport", "ImportsFailed", dims) in emitted
        assert ("S3VendorImport", "ImportsTimedOut", dims) in emitted
    assert ("S3VendorImport", "ImportsFailed", frozenset({("vendor", "hopex")})) not in emitted



# -- 5. settings that cannot bite ---------------------------------------------------------------------------------

def asl() -> dict:
    return json.loads((ROOT / "statemachines" / "import.asl.json").read_text())


def test_staged_work_outlives_every_execution(template):
    """Finalize reads the rejects staged under work/ when the execution ends, up to the execution's
    TimeoutSeconds after it started; the lifecycle rule must not expire them before. S3 counts
    expiration days from the object's creation, rounded up to the next midnight UTC, so an object
    lives at least that many whole days
    (docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-expire-general-considerations.html);
    a day more than the execution's lifetime leaves Finalize its time."""
    assert asl()["TimeoutSeconds"] == 7 * 86400
    param = template["Parameters"]["WorkRetentionDays"]
    assert param["MinValue"] == 8 and param["Default"] >= param["MinValue"]
    (rule,) = [r for r in template["Resources"]["ImportBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
               if r.get("Prefix") == "work/"]
    assert rule["ExpirationInDays"] == {"Ref": "WorkRetentionDays"}


@pytest.mark.parametrize("name", ["ImportBucket", "JobsTable", *(f"{LOGICAL[v]}Settings" for v in VENDORS)])
def test_what_holds_user_data_survives_a_stack_delete_and_a_replacement(template, name):
    """DeletionPolicy covers a stack delete, UpdateReplacePolicy an update that replaces the resource
    (docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html,
    .../aws-attribute-updatereplacepolicy.html). The bucket holds uploads, rejects and status files,
    the table the status records, the settings secrets the vendor credentials."""
    res = template["Resources"][name]
    assert (res.get("DeletionPolicy"), res.get("UpdateReplacePolicy")) == ("Retain", "Retain")


def test_every_upload_event_sample_carries_the_object_version():
    """Every event notification from a versioning-enabled bucket carries s3.object.versionId (and a
    sequencer): docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html.
    The job id is derived from it, so a sample without it tests another path than AWS takes."""
    seen = 0
    for path in sorted((ROOT / "events").glob("*.json")):
        doc = json.loads(path.read_text())
        for message in doc.get("Records", []) if isinstance(doc, dict) else []:
            body = json.loads(message.get("body") or "{}")
            for record in body.get("Records", []):
                if record.get("eventSource") == "aws:s3":
                    obj = record["s3"]["object"]
                    assert obj.get("versionId") and obj.get("sequencer"), path.name
                    seen += 1
    assert seen == 6  # submit-sqs-upload.json and one per vendor


# Name limits of what the template names after the stack: Step Functions state machine names,
# docs.aws.amazon.com/step-functions/latest/apireference/API_CreateStateMachine.html (80);
# log group names, docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html
# (512); dashboard names, docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutDashboard.html (255).
NAME_LIMITS = {("AWS::Serverless::StateMachine", "Name"): 80, ("AWS::Logs::LogGroup", "LogGroupName"): 512,
               ("AWS::CloudWatch::Dashboard", "DashboardName"): 255}


def test_the_readme_gives_the_longest_stack_name_every_derived_name_allows(template):
    allowed = 128  # CloudFormation's own limit on stack names
    derived = 0
    for r in template["Resources"].values():
        for (typ, prop), limit in NAME_LIMITS.items():
            value = r.get("Properties", {}).get(prop) if r["Type"] == typ else None
            if isinstance(value, dict) and "Fn::Sub" in value and "${AWS::StackName}" in value["Fn::Sub"]:
                fixed = value["Fn::Sub"].replace("${AWS::StackName}", "")
                assert "${" not in fixed, fixed  # only fixed text besides the stack name
                allowed = min(allowed, limit - len(fixed))
                derived += 1
    assert derived >= 5 and allowed == 61  # "-simplemente-import" is 19 characters: 80 - 19
    assert f"at most {allowed} characters" in (ROOT / "README.md").read_text()


def test_what_matters_has_an_alarm_on_the_alarm_topic(template):
    """Failed and timed-out imports end in a SUCCEEDED execution (Finalize catches everything), so
    the imports' own outcome metrics carry them; Lambda errors and throttles of every function; the
    upload queue's oldest message; both dead-letter queues."""
    watched = set()
    for a in alarms(template).values():
        assert a["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        dims = {d["Name"]: (next(iter(refs(d["Value"])), None) or d["Value"]) for d in a["Dimensions"]}
        watched.add((a["Namespace"], a["MetricName"], tuple(sorted(dims.items()))))
    functions = ["SubmitFunction", "FinalizeFunction", *(f"{LOGICAL[v]}Function" for v in VENDORS)]
    expected = {("AWS/Lambda", m, (("FunctionName", f),)) for f in functions for m in ("Errors", "Throttles")}
    expected |= {("S3VendorImport", m, (("service", "s3-vendor-import"), ("vendor", v)))
                 for v in VENDORS for m in ("ImportsFailed", "ImportsTimedOut")}
    expected |= {("AWS/SQS", "ApproximateAgeOfOldestMessage", (("QueueName", "UploadQueue"),)),
                 ("AWS/SQS", "ApproximateNumberOfMessagesVisible", (("QueueName", "UploadDeadLetterQueue"),)),
                 ("AWS/SQS", "ApproximateNumberOfMessagesVisible", (("QueueName", "FinalizeDeadLetterQueue"),))}
    assert expected <= watched, sorted(expected - watched)


def test_a_retried_step_never_overlaps_the_run_it_replaces(template):
    """A Task that runs past its TimeoutSeconds fails with States.Timeout
    (docs.aws.amazon.com/step-functions/latest/dg/state-task.html), but the Lambda invocation it made
    goes on until it returns or reaches the function's own timeout
    (docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html). The vendor steps retry
    States.Timeout: if the Task could time out while its function still runs, the retry would run
    beside it. With the function's timeout a minute below the Task's, the function has always ended
    (returned, or been stopped by Lambda: Sandbox.Timedout, retried) before the Task could time out."""
    globals_timeout = template["Globals"]["Function"]["Timeout"]
    tasks = {}

    def walk(states):
        for name, s in states.items():
            if s["Type"] == "Task" and "${" in s["Resource"]:  # a Lambda function (not a service integration)
                tasks[name] = s
            for branch in s.get("Branches", []):
                walk(branch["States"])

    walk(asl()["States"])
    machines = {n: r for n, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::StateMachine"}
    assert len(machines) == len(VENDORS)
    checked = 0
    for name, machine in machines.items():
        subs = machine["Properties"]["DefinitionSubstitutions"]
        for state, task in tasks.items():
            (var,) = re.findall(r"\$\{(\w+)\}", task["Resource"])
            (function,) = refs(subs[var])
            timeout = template["Resources"][function]["Properties"].get("Timeout", globals_timeout)
            assert timeout + 60 <= task["TimeoutSeconds"], (name, state, function, timeout)
            checked += 1
    assert checked == 4 * len(VENDORS)  # Submit, Poll, Settle, Finalize in each


def test_the_vendor_guard_may_describe_the_executions_of_its_own_state_machine_only(cfn):
    """DescribeExecution authorizes on resource type ``execution``, whose ARN is
    ``arn:${Partition}:states:${Region}:${Account}:execution:${StateMachineName}:${ExecutionId}``
    (Service Authorization Reference, AWS Step Functions:
    docs.aws.amazon.com/service-authorization/latest/reference/list_awsstepfunctions.html); moto does
    not evaluate IAM, so the grant's shape is checked here: each vendor function may describe the
    executions of its own vendor's state machine (the guard's reclaim of ended holders), no other."""
    resources = cfn["Resources"]
    for vendor in VENDORS:
        stem = LOGICAL[vendor]
        machine_name = resources[f"{stem}ImportStateMachine"]["Properties"]["StateMachineName"]
        assert machine_name == {"Fn::Sub": f"${{AWS::StackName}}-{vendor}-import"}
        statements = [st for policy in resources[f"{stem}FunctionRole"]["Properties"]["Policies"]
                      for st in policy["PolicyDocument"]["Statement"] if st.get("Sid") == "GuardReclaimsEndedHolders"]
        assert [(st["Action"], st["Resource"]) for st in statements] == [(
            "states:DescribeExecution",
            {"Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:"
                        f"${{AWS::StackName}}-{vendor}-import:*"})]
