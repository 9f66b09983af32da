"""template.yaml writes the vendor block once (Fn::ForEach): the expansion gives the expected
resources, and the deployed template is the one of five written-out vendor blocks (commit 250a6f4
with issue 17's changes written into each block: tests/unit/fixtures/template_written_out.yaml) but
for these differences, each checked below:

* Fn::ForEach makes keys, never list items, and SAM CLI expands it only at the top of Resources,
  Outputs or Properties, so each list of the five vendors became per-vendor resources of the loop:
  the finalize rule of five ARNs is five rules (and permissions), the submit role's StartExecution
  statement on five ARNs is five AWS::IAM::Policy on that role; the submit function's STATE_MACHINES
  JSON (five Refs) became the ARN prefix of the state machine names and the list of vendor stems;
* the dashboard finds its per-vendor lines with metric math SEARCH instead of naming each vendor
  (the same metrics; a vendor shows once it has emitted data in the last two weeks);
* an output's Description takes no function, so the per-vendor output descriptions name no vendor;
* each vendor function's Metadata carries a cfn-lint directive (cfn-lint 1.58 misses Globals in loops).

Outside Resources: a parameter Vendors (the loop's list), Mappings VendorTable (id, name) and
AlarmText (the ends of the alarm descriptions, completed by the alarm loops: nested in the vendor loop
per metric, and one loop over the submit and finalize functions); the stack Description no longer
lists the vendors. The alarms keep their logical ids.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path

import pytest

from local.language_extensions import expand
from local.template_deploy import load_sam_template, translate

ROOT = Path(__file__).resolve().parents[2]
BEFORE = Path(__file__).resolve().parent / "fixtures" / "template_written_out.yaml"
STEMS = ("Hopex", "Campaign", "Aep", "Simplemente", "Cirrus")
IDS = {"Hopex": "hopex", "Campaign": "campaign", "Aep": "aep", "Simplemente": "simplemente", "Cirrus": "cirrus"}
PER_VENDOR = ("Settings", "Function", "LogGroup", "ImportStateMachine", "StateMachineLogGroup",
              "ExecutionsFailedAlarm", "ExecutionsTimedOutAlarm", "ExecutionEndedRule", "ExecutionEndedPermission",
              "SubmitStartsImportPolicy", "ImportsFailedAlarm", "ImportsTimedOutAlarm", "FunctionErrorsAlarm",
              "FunctionThrottlesAlarm")
SHARED = {"ImportBucket", "ImportBucketPolicy", "UploadQueue", "UploadDeadLetterQueue", "UploadQueuePolicy",
          "JobsTable", "IdempotencyTable", "CompletionTopic", "CompletionEmailSubscription", "AlarmTopic",
          "AlarmEmailSubscription", "CommonLayer", "SubmitFunction", "SubmitLogGroup", "FinalizeFunction",
          "FinalizeLogGroup", "DeadLetterQueueAlarm", "ImportsDashboard",
          # issue 17: the alarm topic's key, Finalize's own dead-letter queue, alarms on what matters
          "AlarmTopicKey", "FinalizeDeadLetterQueue", "FinalizeDeadLetterQueuePolicy", "FinalizeDeadLetterQueueAlarm",
          "UploadQueueAgeAlarm", "SubmitFunctionErrorsAlarm", "SubmitFunctionThrottlesAlarm",
          "FinalizeFunctionErrorsAlarm", "FinalizeFunctionThrottlesAlarm"}


@pytest.fixture(scope="module")
def translated():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        before = translate(load_sam_template(BEFORE))
        after = translate(load_sam_template())
    return before, after


def test_the_template_is_short_and_names_each_vendor_id_once():
    text = (ROOT / "template.yaml").read_text()
    # issue 16's bar, kept after issue 17 added its key, queue and alarms: the vendor block once (its
    # alarms in nested loops), the submit and finalize function alarms in one loop, short maps in flow style
    assert len(text.splitlines()) < 700
    (default,) = [line for line in text.splitlines() if line.strip().startswith("Default: Hopex,")]
    assert default.split(": ")[1].split(",") == list(STEMS)
    for stem, vendor in IDS.items():  # the id once: in its row of Mappings VendorTable, keyed by its stem
        assert text.count(vendor) == 1 and f"    {stem}: {{Id: {vendor}, Name: " in text, vendor


def test_the_loop_expands_to_the_expected_resources():
    sam = load_sam_template()
    expected = SHARED | {f"{stem}{part}" for stem in STEMS for part in PER_VENDOR}
    assert set(sam["Resources"]) == expected
    assert "Fn::ForEach" not in json.dumps(sam)
    hopex = sam["Resources"]["HopexFunction"]["Properties"]
    assert hopex["Environment"]["Variables"] == {"VENDOR": "hopex", "SETTINGS_SECRET_ARN": {"Ref": "HopexSettings"}}
    assert sam["Resources"]["CirrusImportStateMachine"]["Properties"]["Name"] == {
        "Fn::Sub": "${AWS::StackName}-cirrus-import"}
    assert sam["Resources"]["AepLogGroup"]["Properties"]["LogGroupName"] == {
        "Fn::Sub": "/aws/lambda/${AWS::StackName}-aep"}
    assert set(sam["Outputs"]) == {"ImportBucketName", "DashboardUrl", "CompletionTopicArn", "AlarmTopicArn",
                                   "JobsTableName", "UploadDeadLetterQueueUrl", "UploadQueueUrl",
                                   "FinalizeDeadLetterQueueUrl", "FinalizeFunctionName"} | {
        f"{stem}{suffix}" for stem in STEMS for suffix in ("StateMachineArn", "SettingsSecretArn")}


def test_each_stem_is_its_vendor_id_with_a_capital_first_letter():
    # vendor_import.wiring.state_machines reads the id from the stem (CloudFormation has no lower-case function)
    rows = load_sam_template()["Mappings"]["VendorTable"]
    assert {stem: row["Id"] for stem, row in rows.items()} == IDS
    assert all(stem == row["Id"].capitalize() for stem, row in rows.items())


def test_the_vendors_parameter_chooses_the_loop_items():
    sam = load_sam_template(parameters={"Vendors": "Hopex,Cirrus"})
    assert {n for n in sam["Resources"] if n.endswith("Settings")} == {"HopexSettings", "CirrusSettings"}


def test_expansion_follows_cloudformation_rules_for_keys_subs_refs_and_maps():
    template = {
        "Transform": ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"],
        "Mappings": {"T": {"A": {"Id": "a-1"}}},
        "Resources": {"Fn::ForEach::L": ["X", ["A", "B-2"], {"R&{X}": {"Type": "T", "Properties": {
            "Name": {"Fn::Sub": "n-${X}-${AWS::Region}"},
            "Self": {"Ref": "X"},
            "Other": {"Ref": {"Fn::Sub": "Q${X}"}},
            "Id": {"Fn::FindInMap": ["T", {"Ref": "X"}, "Id", {"DefaultValue": "none"}]},
            "Label": {"Fn::Sub": ["${V}!", {"V": {"Fn::FindInMap": ["T", {"Ref": "X"}, "Id", {"DefaultValue": "d"}]}}]},
        }}}]},
    }
    out = expand(template)
    assert out["Transform"] == "AWS::Serverless-2016-10-31"
    assert out["Resources"] == {
        "RA": {"Type": "T", "Properties": {"Name": {"Fn::Sub": "n-A-${AWS::Region}"}, "Self": "A",
                                           "Other": {"Ref": "QA"}, "Id": "a-1", "Label": "a-1!"}},
        "RB2": {"Type": "T", "Properties": {"Name": {"Fn::Sub": "n-B-2-${AWS::Region}"}, "Self": "B-2",
                                            "Other": {"Ref": "QB-2"}, "Id": "none", "Label": "d!"}},
    }


def test_a_key_produced_twice_or_a_missing_map_entry_fails():
    twice = {"Resources": {"Fn::ForEach::L": ["X", ["A", "A"], {"R${X}": {"Type": "T"}}]}}
    with pytest.raises(ValueError, match="twice"):
        expand(twice)
    missing = {"Mappings": {"T": {}}, "Resources": {"Fn::ForEach::L": ["X", ["A"], {
        "R${X}": {"Type": "T", "Properties": {"P": {"Fn::FindInMap": ["T", {"Ref": "X"}, "Id"]}}}}]}}
    with pytest.raises(ValueError, match="no such entry"):
        expand(missing)


# -- before (written out) and after, as `sam deploy` sends them ---------------------------------------------------

def test_every_vendor_resource_is_deployed_as_before(translated):
    before, after = translated
    for stem in STEMS:
        for part in ("Settings", "LogGroup", "ImportStateMachine", "ImportStateMachineRole", "StateMachineLogGroup",
                     "ExecutionsFailedAlarm", "ExecutionsTimedOutAlarm", "FunctionRole", "ImportsFailedAlarm",
                     "ImportsTimedOutAlarm", "FunctionErrorsAlarm", "FunctionThrottlesAlarm"):
            assert after["Resources"][f"{stem}{part}"] == before["Resources"][f"{stem}{part}"], (stem, part)
        # the function differs only by a cfn-lint directive in its Metadata (cfn-lint 1.58 merges
        # Globals before it expands Fn::ForEach and would miss the Globals' Runtime)
        function = copy.deepcopy(after["Resources"][f"{stem}Function"])
        assert function["Metadata"].pop("cfn-lint") == {"config": {"ignore_checks": ["W2533"]}}
        assert function == before["Resources"][f"{stem}Function"], stem
    for name in SHARED - {"SubmitFunction", "ImportsDashboard", "CommonLayer"}:
        assert after["Resources"][name] == before["Resources"][name], name
    layer = [n for n in before["Resources"] if n.startswith("CommonLayer")]  # SAM adds a content hash
    assert len(layer) == 1 and after["Resources"][layer[0]] == before["Resources"][layer[0]]
    assert after["Resources"]["FinalizeFunctionRole"] == before["Resources"]["FinalizeFunctionRole"]


def test_the_only_resources_added_or_removed_are_the_per_vendor_rule_permission_and_policy(translated):
    before, after = translated
    assert set(before["Resources"]) - set(after["Resources"]) == {
        "FinalizeFunctionExecutionEndedAbnormally", "FinalizeFunctionExecutionEndedAbnormallyPermission"}
    assert set(after["Resources"]) - set(before["Resources"]) == {
        f"{stem}{part}" for stem in STEMS
        for part in ("ExecutionEndedRule", "ExecutionEndedPermission", "SubmitStartsImportPolicy")}


def test_one_rule_per_state_machine_matches_what_the_one_rule_matched(translated):
    before, after = translated
    old = before["Resources"]["FinalizeFunctionExecutionEndedAbnormally"]["Properties"]
    old_permission = before["Resources"]["FinalizeFunctionExecutionEndedAbnormallyPermission"]["Properties"]
    matched = []
    for stem in STEMS:
        new = after["Resources"][f"{stem}ExecutionEndedRule"]["Properties"]
        pattern = copy.deepcopy(new["EventPattern"])
        matched += pattern["detail"].pop("stateMachineArn")
        expected = copy.deepcopy(old["EventPattern"])
        del expected["detail"]["stateMachineArn"]
        assert pattern == expected
        assert [t["Arn"] for t in new["Targets"]] == [t["Arn"] for t in old["Targets"]]  # the target id is a label
        permission = after["Resources"][f"{stem}ExecutionEndedPermission"]["Properties"]
        assert permission == {**old_permission, "SourceArn": {"Fn::GetAtt": [f"{stem}ExecutionEndedRule", "Arn"]}}
    assert matched == old["EventPattern"]["detail"]["stateMachineArn"]


def test_the_submit_function_may_start_the_same_state_machines_through_per_vendor_policies(translated):
    # SAM's Policies is a list, which Fn::ForEach cannot extend: the StartExecution statement moved
    # from the role's inline policy to one AWS::IAM::Policy per vendor on the same role
    before, after = translated
    old_role = copy.deepcopy(before["Resources"]["SubmitFunctionRole"])
    (inline,) = [p for p in old_role["Properties"]["Policies"]
                 if any(st["Action"] == "states:StartExecution" for st in p["PolicyDocument"]["Statement"])]
    (statement,) = inline["PolicyDocument"]["Statement"]
    old_role["Properties"]["Policies"].remove(inline)
    for index, policy in enumerate(old_role["Properties"]["Policies"]):  # SAM numbers the inline policies
        policy["PolicyName"] = f"SubmitFunctionRolePolicy{index}"
    assert after["Resources"]["SubmitFunctionRole"] == old_role
    started = []
    for stem in STEMS:
        props = after["Resources"][f"{stem}SubmitStartsImportPolicy"]["Properties"]
        assert props["Roles"] == [{"Ref": "SubmitFunctionRole"}]
        (st,) = props["PolicyDocument"]["Statement"]
        assert st["Effect"] == statement["Effect"] and st["Action"] == statement["Action"]
        started.append(st["Resource"])
    assert started == statement["Resource"]


def test_the_submit_function_finds_the_same_state_machines_by_name(translated):
    # STATE_MACHINES held {"hopex": Ref HopexImportStateMachine, ...}; now the function builds each ARN
    # from the prefix and the vendor ids of VENDOR_STEMS (vendor_import.wiring.state_machines)
    from vendor_import.wiring import state_machines

    before, after = translated
    old = copy.deepcopy(before["Resources"]["SubmitFunction"])
    new = copy.deepcopy(after["Resources"]["SubmitFunction"])
    old_map = json.loads(old["Properties"]["Environment"]["Variables"].pop("STATE_MACHINES")["Fn::Sub"])
    variables = new["Properties"]["Environment"]["Variables"]
    assert variables.pop("VENDOR_STEMS") == {"Fn::Join": [",", {"Ref": "Vendors"}]}
    prefix = variables.pop("STATE_MACHINE_ARN_PREFIX")["Fn::Sub"]
    assert new == old
    environ = {"STATE_MACHINE_ARN_PREFIX": prefix, "VENDOR_STEMS": ",".join(STEMS)}
    names = {v: after["Resources"][ref[2:-1]]["Properties"]["StateMachineName"]["Fn::Sub"]
             for v, ref in old_map.items()}
    assert state_machines(environ) == {
        v: prefix + name.removeprefix("${AWS::StackName}-") for v, name in names.items()}
    assert state_machines(environ) == {
        "hopex": prefix + "hopex-import", "campaign": prefix + "campaign-import", "aep": prefix + "aep-import",
        "simplemente": prefix + "simplemente-import", "cirrus": prefix + "cirrus-import"}


def test_outputs_are_the_same_but_vendor_descriptions(translated):
    # an output's Description takes no function, so the loop's descriptions name no vendor
    before, after = translated
    assert set(after["Outputs"]) == set(before["Outputs"])
    for name, output in before["Outputs"].items():
        assert after["Outputs"][name]["Value"] == output["Value"], name
        if not name.startswith(STEMS):
            assert after["Outputs"][name] == output, name


def test_the_dashboard_shows_the_same_metrics(translated):
    def names(resources):
        body = resources["ImportsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
        text = body if isinstance(body, str) else body[0]
        listed = set(re.findall(r'\["(?:S3VendorImport|AWS/States|AWS/Lambda|AWS/SQS)", "(\w+)"', text))
        return listed, set(re.findall(r'\\"(\w+)\\"', text))  # the quoted names in SEARCH expressions

    before, after = translated
    listed_before, _ = names(before["Resources"])
    listed_after, searched_after = names(after["Resources"])
    assert listed_before == {"ImportsStarted", "ImportsSucceeded", "ImportsSucceededWithRejects", "ImportsFailed",
                             "ImportsTimedOut", "ImportsValidated", "RecordsSent", "RecordsRefused",
                             "DurationSeconds", "Polls", "ApproximateNumberOfMessagesVisible", "Errors",
                             "ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted", "ExecutionsStarted",
                             "ExecutionsSucceeded"}
    assert listed_before <= listed_after | searched_after


SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
SAM_EXPAND = """
import json, sys
from samcli.lib.cfn_language_extensions.api import process_template
from samtranslator.yaml_helper import yaml_parse
print(json.dumps(process_template(yaml_parse(open(sys.argv[1]).read()))))
"""


@pytest.mark.slow
@pytest.mark.sam  # deselected in make test (CI has no SAM CLI); make sam-validate runs it
def test_the_expansion_is_the_one_of_sam_cli():
    """AWS's own expander (SAM CLI 1.170, samcli.lib.cfn_language_extensions) gives the same resources
    and outputs. It also resolves Refs to parameters to their defaults and writes a Fn::Sub string
    as a plain string: both are undone before comparing."""
    proc = subprocess.run([str(SAM_PYTHON), "-c", SAM_EXPAND, str(ROOT / "template.yaml")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = json.loads(proc.stdout)
    mine = load_sam_template()
    defaults = {name: spec["Default"] for name, spec in mine["Parameters"].items() if "Default" in spec}

    def plain(value):
        if isinstance(value, dict):
            if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
                return value["Fn::Sub"]
            if set(value) == {"Ref"} and value["Ref"] in defaults:
                return defaults[value["Ref"]]
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    assert set(theirs["Resources"]) == set(mine["Resources"]) and set(theirs["Outputs"]) == set(mine["Outputs"])
    for stem in STEMS:
        for part in PER_VENDOR:
            name = f"{stem}{part}"
            assert plain(theirs["Resources"][name]) == plain(mine["Resources"][name]), name
    for name in ("SubmitFunctionErrorsAlarm", "SubmitFunctionThrottlesAlarm", "FinalizeFunctionErrorsAlarm",
                 "FinalizeFunctionThrottlesAlarm"):  # the second loop (nested over the metric), as the vendor alarms
        assert plain(theirs["Resources"][name]) == plain(mine["Resources"][name]), name
    for name, output in mine["Outputs"].items():
        assert plain(theirs["Outputs"][name]) == plain(output), name
