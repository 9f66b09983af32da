"""template.yaml: the resources, wiring and operations properties the design promises, checked on the
SAM template with its vendor loop expanded. Least privilege and safe defaults (IAM, encryption,
public access, TLS, alarms on stuck work, checkov) live in tests/reliability/test_least_privilege.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from vendor_import.connectors import VENDORS

ROOT = Path(__file__).resolve().parents[2]
ASL_PATH = "statemachines/import.asl.json"
LOGICAL = {"hopex": "Hopex", "campaign": "Campaign", "aep": "Aep", "simplemente": "Simplemente", "cirrus": "Cirrus"}


@pytest.fixture(scope="module")
def template() -> dict:
    from local.template_deploy import load_sam_template

    return load_sam_template()  # Fn::ForEach expanded, as CloudFormation hands it to the SAM transform


@pytest.fixture(scope="module")
def resources(template) -> dict:
    return template["Resources"]


def of_type(resources, typ):
    return {name: res for name, res in resources.items() if res["Type"] == typ}


def refs(value) -> set[str]:
    """Every logical id referenced (Ref, GetAtt, ${...} in Sub) inside a value."""
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


def test_there_is_one_vendor_function_state_machine_and_secret_per_vendor(resources):
    for vendor in VENDORS:
        name = LOGICAL[vendor]
        assert resources[f"{name}Function"]["Properties"]["Environment"]["Variables"]["VENDOR"] == vendor
        assert resources[f"{name}ImportStateMachine"]["Type"] == "AWS::Serverless::StateMachine"
        assert resources[f"{name}Settings"]["Type"] == "AWS::SecretsManager::Secret"


# -- secrets -------------------------------------------------------------------------------------------------

def test_secret_placeholders_are_valid_json_naming_their_vendor(resources):
    for vendor in VENDORS:
        doc = json.loads(resources[f"{LOGICAL[vendor]}Settings"]["Properties"]["SecretString"])
        assert doc["vendor"] == vendor


# -- bucket --------------------------------------------------------------------------------------------------

def test_bucket_is_versioned(resources):  # encryption and access: tests/reliability/test_least_privilege.py
    assert resources["ImportBucket"]["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}


def test_bucket_lifecycle_expires_work_files(resources):
    rules = resources["ImportBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    work = [r for r in rules if r.get("Prefix") == "work/"]
    assert len(work) == 1 and work[0]["Status"] == "Enabled"
    assert work[0]["ExpirationInDays"] == {"Ref": "WorkRetentionDays"}
    assert {r.get("Prefix") for r in rules} >= {"work/", "rejects/", "status/"}


def test_only_uploads_under_inbox_notify_the_queue(resources):
    (conf,) = resources["ImportBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert conf["Event"] == "s3:ObjectCreated:*"
    assert conf["Queue"] == {"Fn::GetAtt": ["UploadQueue", "Arn"]}
    assert conf["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "inbox/"}]


# -- table, topic, queue -------------------------------------------------------------------------------------

def test_jobs_table_has_the_by_vendor_index(resources):
    props = resources["JobsTable"]["Properties"]  # PITR and SSE: tests/reliability/test_least_privilege.py
    assert props["KeySchema"] == [{"AttributeName": "job_id", "KeyType": "HASH"}]
    (gsi,) = props["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "by-vendor"
    assert gsi["KeySchema"] == [{"AttributeName": "vendor", "KeyType": "HASH"},
                                {"AttributeName": "updated_at", "KeyType": "RANGE"}]
    assert resources["JobsTable"]["DeletionPolicy"] == "Retain"


def test_idempotency_table_expires_records(resources):
    props = resources["IdempotencyTable"]["Properties"]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert props["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]


def test_upload_queue_redrives_to_the_dead_letter_queue(resources):
    props = resources["UploadQueue"]["Properties"]
    assert props["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["UploadDeadLetterQueue", "Arn"]}
    assert 1 <= props["RedrivePolicy"]["maxReceiveCount"] <= 10
    # AWS advises a visibility timeout of at least 6 times the consuming function's timeout
    assert props["VisibilityTimeout"] >= 6 * resources["SubmitFunction"]["Properties"]["Timeout"]


def test_queues_are_encrypted(resources):
    for name in ("UploadQueue", "UploadDeadLetterQueue", "FinalizeDeadLetterQueue"):
        assert resources[name]["Properties"]["SqsManagedSseEnabled"] is True


def test_submit_function_reports_partial_batch_failures(resources):
    (source,) = resources["SubmitFunction"]["Properties"]["Events"].values()
    assert source["Type"] == "SQS"
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source["Properties"]["Queue"] == {"Fn::GetAtt": ["UploadQueue", "Arn"]}


# -- functions and runtime -----------------------------------------------------------------------------------

def test_functions_run_python_312_or_313_on_arm64(template, resources):
    globals_fn = template["Globals"]["Function"]
    for name, res in of_type(resources, "AWS::Serverless::Function").items():
        props = res["Properties"]
        assert props.get("Runtime", globals_fn["Runtime"]) in ("python3.12", "python3.13"), name
        assert props.get("Architectures", globals_fn["Architectures"]) == ["arm64"], name
    layer = resources["CommonLayer"]
    assert globals_fn["Runtime"] in layer["Properties"]["CompatibleRuntimes"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Metadata"]["BuildArchitecture"] == "arm64"


def test_function_code_folders_and_handlers_exist(template, resources):
    for name, res in of_type(resources, "AWS::Serverless::Function").items():
        props = res["Properties"]
        module, func = props["Handler"].rsplit(".", 1)
        source = (ROOT / props["CodeUri"] / f"{module}.py").read_text()
        assert f"def {func}(" in source, name


def test_submit_function_knows_every_vendors_state_machine(resources, template):
    variables = resources["SubmitFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["VENDOR_STEMS"] == {"Fn::Join": [",", {"Ref": "Vendors"}]}
    assert template["Parameters"]["Vendors"]["Default"] == "Hopex,Campaign,Aep,Simplemente,Cirrus"
    prefix = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:${AWS::StackName}-"
    assert variables["STATE_MACHINE_ARN_PREFIX"] == {"Fn::Sub": prefix}
    for v in VENDORS:  # the name the prefix + "<id>-import" rule of vendor_import.wiring expects
        name = resources[f"{LOGICAL[v]}ImportStateMachine"]["Properties"]["Name"]
        assert name == {"Fn::Sub": f"${{AWS::StackName}}-{v}-import"}


def test_execution_ended_rules_send_every_state_machine_to_finalize(resources):
    rules = {n: r for n, r in resources.items() if r["Type"] == "AWS::Events::Rule"}
    assert set(rules) == {f"{LOGICAL[v]}ExecutionEndedRule" for v in VENDORS}
    for v in VENDORS:
        props = rules[f"{LOGICAL[v]}ExecutionEndedRule"]["Properties"]
        pattern = props["EventPattern"]
        assert pattern["source"] == ["aws.states"]
        assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
        assert set(pattern["detail"]["status"]) == {"FAILED", "TIMED_OUT", "ABORTED"}
        assert pattern["detail"]["stateMachineArn"] == [{"Ref": f"{LOGICAL[v]}ImportStateMachine"}]
        assert [t["Arn"] for t in props["Targets"]] == [{"Fn::GetAtt": ["FinalizeFunction", "Arn"]}]
        permission = resources[f"{LOGICAL[v]}ExecutionEndedPermission"]["Properties"]
        assert permission == {"Action": "lambda:InvokeFunction", "FunctionName": {"Ref": "FinalizeFunction"},
                              "Principal": "events.amazonaws.com",
                              "SourceArn": {"Fn::GetAtt": [f"{LOGICAL[v]}ExecutionEndedRule", "Arn"]}}


# -- state machines ------------------------------------------------------------------------------------------

def test_every_state_machine_uses_the_one_asl_with_its_substitutions(resources):
    machines = of_type(resources, "AWS::Serverless::StateMachine")
    assert set(machines) == {f"{LOGICAL[v]}ImportStateMachine" for v in VENDORS}
    for vendor in VENDORS:
        props = machines[f"{LOGICAL[vendor]}ImportStateMachine"]["Properties"]
        assert props["DefinitionUri"] == ASL_PATH
        assert props["DefinitionSubstitutions"] == {
            "VendorFunctionArn": {"Fn::GetAtt": [f"{LOGICAL[vendor]}Function", "Arn"]},
            "FinalizeFunctionArn": {"Fn::GetAtt": ["FinalizeFunction", "Arn"]},
        }
        assert props["Type"] == "STANDARD"
        invokable = refs([p["LambdaInvokePolicy"] for p in props["Policies"] if isinstance(p, dict)
                          and "LambdaInvokePolicy" in p])
        assert invokable == {f"{LOGICAL[vendor]}Function", "FinalizeFunction"}


def test_asl_placeholders_are_exactly_the_substitutions():
    text = (ROOT / ASL_PATH).read_text()
    assert set(re.findall(r"\$\{([^}]+)\}", text)) == {"VendorFunctionArn", "FinalizeFunctionArn"}


# -- logs and alarms -----------------------------------------------------------------------------------------

def test_every_log_group_has_a_retention(resources):
    groups = of_type(resources, "AWS::Logs::LogGroup")
    assert groups
    for name, res in groups.items():
        assert res["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name


def test_every_function_and_state_machine_logs_to_a_declared_log_group(resources):
    groups = set(of_type(resources, "AWS::Logs::LogGroup"))
    for name, res in of_type(resources, "AWS::Serverless::Function").items():
        assert refs(res["Properties"]["LoggingConfig"]) <= groups and refs(res["Properties"]["LoggingConfig"]), name
    for name, res in of_type(resources, "AWS::Serverless::StateMachine").items():
        assert refs(res["Properties"]["Logging"]["Destinations"]) <= groups, name


@pytest.mark.parametrize("queue", ["UploadDeadLetterQueue", "FinalizeDeadLetterQueue"])
def test_each_dead_letter_queue_has_an_alarm(resources, queue):
    alarms = of_type(resources, "AWS::CloudWatch::Alarm")
    dlq = [a["Properties"] for a in alarms.values() if a["Properties"]["Namespace"] == "AWS/SQS"
           and a["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
           and refs(a["Properties"]["Dimensions"]) == {queue}]
    assert len(dlq) == 1
    assert dlq[0]["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_finalize_dead_letters_have_their_own_queue(resources):
    """Finalize's failed events (Lambda's async DLQ) and the rule's undelivered ones share a queue that
    the upload queue does not use: a redrive of uploads never hands them to the submit function."""
    finalize = resources["FinalizeFunction"]["Properties"]
    assert finalize["DeadLetterQueue"] == {"Type": "SQS",
                                           "TargetArn": {"Fn::GetAtt": ["FinalizeDeadLetterQueue", "Arn"]}}
    for vendor in VENDORS:  # one execution-ended rule per vendor state machine
        (target,) = resources[f"{LOGICAL[vendor]}ExecutionEndedRule"]["Properties"]["Targets"]
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["FinalizeDeadLetterQueue", "Arn"]}}
    assert resources["UploadQueue"]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["UploadDeadLetterQueue", "Arn"]}


def test_every_state_machine_has_failed_and_timed_out_alarms(resources):
    alarms = [a["Properties"] for a in of_type(resources, "AWS::CloudWatch::Alarm").values()
              if a["Properties"]["Namespace"] == "AWS/States"]
    for vendor in VENDORS:
        mine = {a["MetricName"] for a in alarms if refs(a["Dimensions"]) == {f"{LOGICAL[vendor]}ImportStateMachine"}
                and a["AlarmActions"] == [{"Ref": "AlarmTopic"}]}
        assert mine == {"ExecutionsFailed", "ExecutionsTimedOut"}, vendor


# -- linters -------------------------------------------------------------------------------------------------

def test_cfn_lint_passes():
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run([str(cfn_lint), "template.yaml"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
