"""The local runner deploys the template through the API once per key, then restores that
deployment into moto (local/deploy_snapshot.py): a restored deployment is the one the API made,
a changed template is deployed anew, and a snapshot that cannot be read is not used."""

from __future__ import annotations

import json
import shutil

import boto3
import pytest
from moto import mock_aws

from local import deploy_snapshot
from local.runner import LocalPipeline
from local.template_deploy import REGION, ROOT, translated_template, translation_key


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("S3_VENDOR_IMPORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)  # the SAM translator builds ARNs
    return tmp_path / "cache"


def describe() -> dict:
    """What the deployment left in moto, read back through the API."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    lam = boto3.client("lambda", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    ddb = boto3.client("dynamodb", region_name=REGION)
    sns = boto3.client("sns", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    secrets = boto3.client("secretsmanager", region_name=REGION)
    queues = {}
    for url in sqs.list_queues().get("QueueUrls", []):
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        queues[url] = {k: v for k, v in attrs.items() if not k.endswith("Timestamp")}
    buckets = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    return {
        "state machines": {m["name"]: sfn.describe_state_machine(stateMachineArn=m["stateMachineArn"])["definition"]
                           for m in sfn.list_state_machines()["stateMachines"]},
        "functions": {f["FunctionName"]: (f["Handler"], f["Timeout"], f["MemorySize"],
                                          f.get("Environment", {}).get("Variables"))
                      for f in lam.list_functions()["Functions"]},
        "queues": queues,
        "tables": {t: ddb.describe_table(TableName=t)["Table"]["KeySchema"] for t in ddb.list_tables()["TableNames"]},
        "topics": sorted(t["TopicArn"] for t in sns.list_topics()["Topics"]),
        "notifications": {b: s3.get_bucket_notification_configuration(Bucket=b).get("QueueConfigurations")
                          for b in buckets},
        "secrets": sorted(s["Name"] for s in secrets.list_secrets()["SecretList"]),
    }


def test_a_restored_deployment_is_the_one_the_api_made(cache):
    with LocalPipeline() as pipe:
        assert not pipe.restored  # empty cache: deployed through the API, then saved
        made = describe()
        record = (pipe.deployment.refs, pipe.deployment.functions, pipe.deployment.dead_letters,
                  pipe.deployment.event_sources, pipe.deployment.rules)
    assert len(list(cache.glob("deployment-*.pickle"))) == 1
    with LocalPipeline() as pipe:
        assert pipe.restored
        assert describe() == made
        assert (pipe.deployment.refs, pipe.deployment.functions, pipe.deployment.dead_letters,
                pipe.deployment.event_sources, pipe.deployment.rules) == record
        assert set(pipe.stems) == {"hopex", "campaign", "aep", "simplemente", "cirrus"}
        assert len(made["state machines"]) >= 5 and made["topics"] and made["secrets"]
        upload_queue = made["queues"][pipe.queue_url]
        assert upload_queue["VisibilityTimeout"] == "600"  # template.yaml, UploadQueue
        assert json.loads(upload_queue["RedrivePolicy"])["maxReceiveCount"] == 5
    # moto was reset between the two: nothing restored leaks into a plain mock afterwards
    with mock_aws():
        assert boto3.client("sqs", region_name=REGION).list_queues().get("QueueUrls", []) == []


def test_a_changed_template_is_deployed_anew(cache, tmp_path):
    template = tmp_path / "template.yaml"
    shutil.copy(ROOT / "template.yaml", template)
    _sam, cfn, _hit = translated_template(template)
    with mock_aws():
        _deployer, restored = deploy_snapshot.deployed(cfn, None, translation_key(template))
        assert not restored
    with mock_aws():
        _deployer, restored = deploy_snapshot.deployed(cfn, None, translation_key(template))
        assert restored

    text = template.read_text()
    assert "      VisibilityTimeout: 600\n      MessageRetentionPeriod: 345600\n" in text
    template.write_text(text.replace("      VisibilityTimeout: 600\n      MessageRetentionPeriod: 345600\n",
                                     "      VisibilityTimeout: 700\n      MessageRetentionPeriod: 345600\n", 1))
    _sam, changed, _hit = translated_template(template)
    with mock_aws():
        deployer, restored = deploy_snapshot.deployed(changed, None, translation_key(template))
        assert not restored  # another key: the changed template went through the API
        attrs = boto3.client("sqs", region_name=REGION).get_queue_attributes(
            QueueUrl=deployer.refs["UploadQueue"], AttributeNames=["VisibilityTimeout"])["Attributes"]
        assert attrs["VisibilityTimeout"] == "700"
    assert len(list(cache.glob("deployment-*.pickle"))) == 2


def test_a_snapshot_that_cannot_be_read_is_not_used(cache):
    _sam, cfn, _hit = translated_template()
    key = translation_key()
    with mock_aws():
        deploy_snapshot.deployed(cfn, None, key)
    (path,) = cache.glob("deployment-*.pickle")
    path.write_bytes(path.read_bytes()[:200])  # cut short
    with mock_aws():
        deployer, restored = deploy_snapshot.deployed(cfn, None, key)
        assert not restored
        assert boto3.client("sqs", region_name=REGION).get_queue_attributes(
            QueueUrl=deployer.refs["UploadQueue"], AttributeNames=["VisibilityTimeout"]
        )["Attributes"]["VisibilityTimeout"] == "600"
    with mock_aws():  # written again, whole
        _deployer, restored = deploy_snapshot.deployed(cfn, None, key)
        assert restored
