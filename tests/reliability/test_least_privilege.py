"""Least privilege and safe defaults, and stuck work is visible.

Checked on template.yaml as written (samtranslator's parser) and as `sam deploy` would send it
(translated by local.template_deploy.translate: SAM policy templates expanded into IAM roles),
on every connector built from its documented example settings, on the code, and by checkov
(`make lint` runs it too; every check it skips has its reason in the resource's Metadata).
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from .helpers import LOGICAL, ROOT, VENDORS, report

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
# managed policies SAM attaches by itself: logs of the function, X-Ray (Tracing: Active), and the
# SQS event source's poller (receive/delete on the queue it reads)
MANAGED = {"arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
           "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
           "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"}
# the only actions granted on "*": Step Functions' log delivery (these APIs take no resource ARN)
ON_ANY_RESOURCE = {"logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery",
                   "logs:DeleteLogDelivery", "logs:ListLogDeliveries", "logs:PutResourcePolicy",
                   "logs:DescribeResourcePolicies", "logs:DescribeLogGroups"}


@pytest.fixture(scope="module")
def template() -> dict:
    from local.template_deploy import load_sam_template

    return load_sam_template()  # Fn::ForEach expanded, as CloudFormation hands it to the SAM transform


@pytest.fixture(scope="module")
def resources(template) -> dict:
    return template["Resources"]


@pytest.fixture(scope="module")
def cfn(template) -> dict:
    from local.template_deploy import translate

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        return translate(json.loads(json.dumps(template)))


def refs(value) -> set[str]:
    """Logical ids referenced inside a value (Ref, GetAtt, ${...} of Sub)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref" and isinstance(v, str):
                found.add(v)
            elif k == "Fn::GetAtt":
                found.add(v[0] if isinstance(v, list) else v.split(".")[0])
            elif k == "Fn::Sub":
                text, local_vars = (v, {}) if isinstance(v, str) else (v[0], v[1])
                found.update(m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text) if m not in local_vars)
                found |= refs(local_vars)
            else:
                found |= refs(v)
    elif isinstance(value, list):
        for v in value:
            found |= refs(v)
    return found


def statements(cfn) -> list[tuple[str, dict]]:
    """(role logical id, statement) of every role's inline policies and of the AWS::IAM::Policy
    resources attached to roles (the vendor loop's <Stem>SubmitStartsImportPolicy)."""
    out = []
    for name, res in cfn["Resources"].items():
        if res["Type"] == "AWS::IAM::Role":
            for policy in res["Properties"].get("Policies", []):
                out += [(name, st) for st in policy["PolicyDocument"]["Statement"]]
        elif res["Type"] == "AWS::IAM::Policy":
            for role in res["Properties"]["Roles"]:
                out += [(role["Ref"], st) for st in res["Properties"]["PolicyDocument"]["Statement"]]
    return out


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# -- IAM ------------------------------------------------------------------------------------------------

def test_each_vendor_function_can_read_only_its_own_secret(cfn, resources):
    secrets = {n for n, r in resources.items() if r["Type"] == "AWS::SecretsManager::Secret"}
    readers: dict[str, set[str]] = {}
    for role, st in statements(cfn):
        actions = as_list(st["Action"])
        assert not any(a in ("*", "secretsmanager:*") for a in actions), (role, actions)
        if any(a.startswith("secretsmanager:") for a in actions):
            assert st["Effect"] == "Allow" and "*" not in as_list(st["Resource"]), (role, st)
            readers.setdefault(role, set()).update(refs(st["Resource"]) & secrets)
            assert set(actions) <= {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}, actions
    assert readers == {f"{LOGICAL[v]}FunctionRole": {f"{LOGICAL[v]}Settings"} for v in VENDORS}
    for v in VENDORS:  # and it reads that one: the function's environment names it
        env = resources[f"{LOGICAL[v]}Function"]["Properties"]["Environment"]["Variables"]
        assert env["SETTINGS_SECRET_ARN"] == {"Ref": f"{LOGICAL[v]}Settings"}
    report("least privilege (tests/reliability/test_least_privilege.py)",
           f"secrets: {len(readers)} roles may read a settings secret, each only its own vendor's")


def test_no_role_is_granted_everything(cfn):
    for role, st in statements(cfn):
        actions = set(as_list(st["Action"]))
        assert not any(a == "*" or a.endswith(":*") for a in actions), (role, actions)
        if "*" in as_list(st.get("Resource", [])):
            assert actions <= ON_ANY_RESOURCE, (role, actions)
    for name, res in cfn["Resources"].items():
        if res["Type"] == "AWS::IAM::Role":
            assert set(res["Properties"].get("ManagedPolicyArns", [])) <= MANAGED, name


def test_only_the_vendor_functions_talk_to_vendors_and_finalize_has_no_credentials(resources):
    secrets = {n for n, r in resources.items() if r["Type"] == "AWS::SecretsManager::Secret"}
    for name in ("SubmitFunction", "FinalizeFunction"):
        assert refs(resources[name]["Properties"]) & secrets == set(), name


def test_the_submit_function_may_start_exactly_the_vendor_state_machines(cfn):
    """The submit function starts each vendor's state machine; a state machine starts only itself
    ("Continue in a new execution", statemachines/import.asl.json); nothing else starts anything."""
    started, continued = [], []
    for role, st in statements(cfn):
        if st.get("Sid") == "GuardReclaimsEndedHolders":
            continue  # DescribeExecution, read-only: its shape is tested in tests/unit/test_aws_rules.py
        if any(a.startswith("states:") for a in as_list(st["Action"])):
            assert as_list(st["Action"]) == ["states:StartExecution"] and st["Effect"] == "Allow", st
            assert isinstance(st["Resource"], dict), st  # one state machine per statement, never a pattern
            if role == "SubmitFunctionRole":
                started += refs(st["Resource"])
                continue
            vendor = next(v for v in VENDORS if role == f"{LOGICAL[v]}ImportStateMachineRole")
            # its own name: ${AWS::StackName}-<vendor>-import (its ARN, without a circular Ref)
            assert st["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:"
                                                 f"stateMachine:${{AWS::StackName}}-{vendor}-import"}, (role, st)
            continued.append(vendor)
    assert sorted(started) == sorted(f"{LOGICAL[v]}ImportStateMachine" for v in VENDORS)
    assert sorted(continued) == sorted(VENDORS)


def test_vendor_functions_write_only_under_work(resources):
    for v in VENDORS:
        writes = [st for p in resources[f"{LOGICAL[v]}Function"]["Properties"]["Policies"]
                  if "Statement" in p for st in p["Statement"] if "s3:PutObject" in as_list(st["Action"])]
        assert [st["Resource"] for st in writes] == [{"Fn::Sub": "${ImportBucket.Arn}/work/*"}], v


# -- storage and messaging -------------------------------------------------------------------------------

def test_the_bucket_refuses_plain_http_and_public_access(resources):
    props = resources["ImportBucket"]["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                       "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}  # no ACLs
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    policy = resources["ImportBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "ImportBucket"}
    statements_ = policy["PolicyDocument"]["Statement"]
    deny = [st for st in statements_ if st["Effect"] == "Deny" and st["Principal"] == "*" and st["Action"] == "s3:*"
            and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}]
    assert len(deny) == 1
    assert deny[0]["Resource"] == [{"Fn::GetAtt": ["ImportBucket", "Arn"]}, {"Fn::Sub": "${ImportBucket.Arn}/*"}]
    assert not [st for st in statements_ if st["Effect"] == "Allow" and st.get("Principal") in ("*", {"AWS": "*"})]


def test_the_upload_queue_refuses_plain_http_and_takes_only_this_accounts_bucket(resources):
    statements_ = resources["UploadQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (allow,) = [st for st in statements_ if st["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"} and allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert "aws:SourceArn" in allow["Condition"]["ArnLike"]
    assert [st["Condition"] for st in statements_ if st["Effect"] == "Deny"] == [
        {"Bool": {"aws:SecureTransport": "false"}}]


def test_tables_topics_and_queues_are_encrypted_at_rest(resources):
    for name, res in resources.items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::DynamoDB::Table":
            assert props["SSESpecification"]["SSEEnabled"] is True, name
            assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, name
        elif res["Type"] == "AWS::SNS::Topic":
            assert props.get("KmsMasterKeyId"), name
        elif res["Type"] == "AWS::SQS::Queue":
            assert props.get("SqsManagedSseEnabled") is True or props.get("KmsMasterKeyId"), name


# -- TLS -------------------------------------------------------------------------------------------------------

def test_every_connector_verifies_tls_by_default():
    import requests
    from vendor_import.connectors import build_connector, load_settings

    for vendor in VENDORS:
        doc = json.loads((ROOT / "events" / "settings" / f"{vendor}.example.json").read_text())
        assert "verify_tls" not in doc, f"{vendor}: the example must show the default"
        connector = build_connector(vendor, load_settings(vendor, doc))
        # the connector's session and those of what it holds (the IMS token client...)
        held = [connector, *(v for v in vars(connector).values() if hasattr(v, "__dict__"))]
        sessions = [v for obj in held for v in vars(obj).values() if isinstance(v, requests.Session)]
        assert sessions, vendor
        assert all(s.verify is True for s in sessions), vendor
    report("least privilege (tests/reliability/test_least_privilege.py)",
           f"TLS: the sessions of all {len(VENDORS)} connectors (and their token clients) verify certificates "
           "by default; no verify=False in the code")


def test_aep_provisioning_verifies_tls_by_default():
    from vendor_import.connectors.aep_provision import Provisioner, load_provision_settings

    doc = json.loads((ROOT / "events" / "settings" / "aep-provision.example.json").read_text())
    assert "verify_tls" not in doc
    provisioner = Provisioner(load_provision_settings(doc), log=lambda line: None)
    assert provisioner.session.verify is True


def test_no_code_turns_tls_verification_off():
    pattern = re.compile(r"verify\s*=\s*False|CERT_NONE|check_hostname\s*=\s*False|disable_warnings|"
                         r"_create_unverified_context|PYTHONHTTPSVERIFY")
    offenders = []
    for folder in ("layers", "functions"):
        for path in (ROOT / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_plain_http_to_a_vendor_needs_an_explicit_setting():
    from vendor_import.connectors import load_settings
    from vendor_import.errors import SettingsError

    doc = json.loads((ROOT / "events" / "settings" / "hopex.example.json").read_text())
    with pytest.raises(SettingsError, match="plain http://"):
        load_settings("hopex", {**doc, "base_url": "http://hopex.example.com"})


# -- stuck work is visible ------------------------------------------------------------------------------------

def alarms(resources) -> dict[str, dict]:
    return {n: r["Properties"] for n, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def test_the_dead_letter_queue_has_an_alarm_on_the_alarm_topic(resources):
    (dlq_alarm,) = [a for a in alarms(resources).values() if a["Namespace"] == "AWS/SQS"
                    and a["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["UploadDeadLetterQueue", "QueueName"]}]
    assert dlq_alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert dlq_alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["UploadDeadLetterQueue",
                                                                                     "QueueName"]}}]
    assert (dlq_alarm["Threshold"], dlq_alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert dlq_alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    redrive = resources["UploadQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["UploadDeadLetterQueue", "Arn"]}
    # the finalize function's own failures (execution-ended events) have their own queue
    assert resources["FinalizeFunction"]["Properties"]["DeadLetterQueue"] == {
        "Type": "SQS", "TargetArn": {"Fn::GetAtt": ["FinalizeDeadLetterQueue", "Arn"]}}


def test_failed_and_timed_out_executions_have_alarms_on_the_alarm_topic(resources):
    by_machine: dict[str, set[str]] = {}
    for props in alarms(resources).values():
        if props["Namespace"] != "AWS/States":
            continue
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        assert (props["Threshold"], props["ComparisonOperator"]) == (0, "GreaterThanThreshold")
        assert props["TreatMissingData"] == "notBreaching"
        (dim,) = props["Dimensions"]
        assert dim["Name"] == "StateMachineArn"
        by_machine.setdefault(dim["Value"]["Ref"], set()).add(props["MetricName"])
    assert by_machine == {f"{LOGICAL[v]}ImportStateMachine": {"ExecutionsFailed", "ExecutionsTimedOut"}
                          for v in VENDORS}
    email = resources["AlarmEmailSubscription"]["Properties"]
    assert email["TopicArn"] == {"Ref": "AlarmTopic"} and email["Protocol"] == "email"
    report("stuck work (tests/reliability/test_least_privilege.py)",
           f"alarms on the alarm topic: the dead-letter queue + {len(by_machine)} state machines x "
           "(failed, timed out)")


def test_the_deployed_alarms_notify_the_alarm_topic(pipe):
    """The same template, deployed locally: each alarm exists and names the alarm topic's ARN."""
    import boto3

    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    deployed = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    topic = pipe.deployment.refs["AlarmTopic"]
    names = {pipe.deployment.refs["DeadLetterQueueAlarm"]}
    for v in VENDORS:
        names |= {pipe.deployment.refs[f"{LOGICAL[v]}ExecutionsFailedAlarm"],
                  pipe.deployment.refs[f"{LOGICAL[v]}ExecutionsTimedOutAlarm"]}
    assert names <= set(deployed)
    assert all(deployed[n]["AlarmActions"] == [topic] for n in names)
    dlq_alarm = deployed[pipe.deployment.refs["DeadLetterQueueAlarm"]]
    assert dlq_alarm["Dimensions"] == [{"Name": "QueueName", "Value": pipe.dlq_url.rsplit("/", 1)[-1]}]


# -- checkov ---------------------------------------------------------------------------------------------------

def test_every_checkov_skip_says_why(resources):
    skips = 0
    for name, res in resources.items():
        for skip in ((res.get("Metadata") or {}).get("checkov") or {}).get("skip", []):
            assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), (name, skip)
            comment = skip.get("comment") or ""
            assert len(comment) >= 20 and "\n" not in comment, (name, skip)
            skips += 1
    assert skips > 0


def test_checkov_finds_no_failed_check(tmp_path):
    if not CHECKOV.exists():
        pytest.skip("checkov is not installed: `make checkov` installs it into .venv-checkov")
    from local.language_extensions import main as write_expanded

    expanded = tmp_path / "template.expanded.json"  # checkov does not expand Fn::ForEach itself
    write_expanded([str(ROOT / "template.yaml"), str(expanded)])
    proc = subprocess.run([str(CHECKOV), "-f", str(expanded), "--framework", "cloudformation", "--compact",
                           "--skip-download", "-o", "json"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    result = json.loads(proc.stdout)
    result = result[0] if isinstance(result, list) else result
    summary = result["summary"]
    failed = [(c["check_id"], c["resource"]) for c in result["results"].get("failed_checks", [])]
    assert failed == [] and summary["failed"] == 0 and proc.returncode == 0
    checked = {c["resource"] for key in ("passed_checks", "skipped_checks") for c in result["results"][key]}
    for v in VENDORS:  # it saw the resources of every vendor, not the unexpanded loop
        assert {f"AWS::SecretsManager::Secret.{LOGICAL[v]}Settings", f"AWS::Serverless::Function.{LOGICAL[v]}Function",
                f"AWS::Logs::LogGroup.{LOGICAL[v]}LogGroup", f"AWS::IAM::Policy.{LOGICAL[v]}SubmitStartsImportPolicy",
                } <= checked, v
    report("least privilege (tests/reliability/test_least_privilege.py)",
           f"checkov: {summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped "
           "(each with its reason in the resource's Metadata)")
