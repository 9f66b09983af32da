"""The completion message: JSON status record for machines, a readable summary for e-mail."""

from __future__ import annotations

import json

import pytest
from vendor_import.dal.notifier import Notifier, email_text, execution_console_url, message_for, subject_for

JOB = "cirrus-accounts-xml-0a6c0c1bd058dc80b6fe5c5d4302a217"
ARN = f"arn:aws:states:eu-west-3:123456789012:execution:s3-vendor-import-cirrus-import:{JOB}"


def record(**extra):
    return {
        "job_id": JOB, "vendor": "cirrus", "state": "SUCCEEDED_WITH_REJECTS", "dry_run": False,
        "message": "Cirrus Shield imported 9 of 12 record(s) of accounts.xml; 3 were rejected.",
        "source": {"uri": "s3://bkt/inbox/cirrus/object=Account/accounts.xml", "bucket": "bkt",
                   "key": "inbox/cirrus/object=Account/accounts.xml", "version_id": "v1", "size": 900, "etag": "e"},
        "vendor_ref": None, "counts": {"records": 12, "sent": 12, "accepted": 9, "rejected": 3, "batches": 1},
        "rejects": {"csv_uri": f"s3://bkt/rejects/cirrus/{JOB}/accounts.xml.rejects.csv",
                    "raw_uri": f"s3://bkt/rejects/cirrus/{JOB}/accounts.rejects.xml", "rows": 3},
        "error": None, "execution_arn": ARN, "started_at": "2024-05-01T10:00:00.000000Z",
        "finished_at": "2024-05-01T10:00:42.000000Z", "duration_seconds": 42.0, "polls": 2,
        "status_uri": f"s3://bkt/status/cirrus/{JOB}.json", **extra,
    }


def test_message_structure_keeps_the_json_record_as_default_and_adds_an_email_text():
    body = json.loads(message_for(record()))
    assert set(body) == {"default", "email"}
    assert json.loads(body["default"]) == record()
    assert body["email"] == email_text(record())


def test_email_text_tells_a_person_what_happened():
    text = email_text(record())
    first, underline = text.splitlines()[:2]
    assert first == "Cirrus Shield import SUCCEEDED_WITH_REJECTS: accounts.xml"
    assert set(underline) == {"="}
    for expected in ("Cirrus Shield imported 9 of 12 record(s) of accounts.xml; 3 were rejected.",
                     "State:      SUCCEEDED_WITH_REJECTS", "Vendor:     cirrus (Cirrus Shield)",
                     "File:       s3://bkt/inbox/cirrus/object=Account/accounts.xml",
                     "Counts:     records 12, sent 12, accepted 9, rejected 3, batches 1",
                     "Rejects:    3 row(s)", f"  CSV:      s3://bkt/rejects/cirrus/{JOB}/accounts.xml.rejects.csv",
                     f"  Vendor:   s3://bkt/rejects/cirrus/{JOB}/accounts.rejects.xml",
                     f"Job id:     {JOB}",
                     "Execution:  https://eu-west-3.console.aws.amazon.com/states/home?region=eu-west-3"
                     f"#/v2/executions/details/{ARN}",
                     "(42.0 s, 2 poll(s))"):
        assert expected in text, expected
    assert "{" not in text  # no JSON for people
    assert "Error:" not in text


def test_email_text_of_a_failure_shows_the_error_and_no_empty_fields():
    text = email_text(record(state="FAILED", counts={}, rejects={"csv_uri": None, "raw_uri": None, "rows": 0},
                             error={"type": "VendorAuthError", "message": "Cirrus refused the credentials"},
                             message="Cirrus refused the credentials"))
    assert "Error:      VendorAuthError: Cirrus refused the credentials" in text
    assert "Counts:" not in text and "Rejects:" not in text


def test_email_text_of_a_console_start_without_key_or_execution():
    text = email_text(record(state="FAILED", source={"uri": None, "bucket": "bkt", "key": None}, execution_arn=None,
                             dry_run=True))
    assert text.splitlines()[0] == "Cirrus Shield import FAILED (dry run): (no key)"
    assert "Execution:" not in text and "File:" not in text


@pytest.mark.parametrize(("arn", "url"), [
    (ARN, f"https://eu-west-3.console.aws.amazon.com/states/home?region=eu-west-3#/v2/executions/details/{ARN}"),
    ("arn:aws-cn:states:cn-north-1:1:execution:sm:j",
     "https://cn-north-1.console.amazonaws.cn/states/home?region=cn-north-1#/v2/executions/details/"
     "arn:aws-cn:states:cn-north-1:1:execution:sm:j"),
    (None, None), ("not-an-arn", None), ("arn:aws:lambda:us-east-1:1:function:f", None),
])
def test_execution_console_url(arn, url):
    assert execution_console_url(arn) == url


def test_subject_is_short_ascii_and_names_vendor_state_file():
    assert subject_for(record()) == "[cirrus] SUCCEEDED_WITH_REJECTS: accounts.xml"
    long = record(source={"key": "inbox/cirrus/" + "é" * 200})
    assert len(subject_for(long)) == 100 and subject_for(long).isascii()


def test_sqs_subscribers_get_the_json_record_and_the_filter_attributes(account):
    seen = []
    Notifier(account.sns, account.topic_arn, on_published=seen.append).publish(record())
    (message,) = account.messages()
    assert message["body"] == record()
    assert message["attributes"] == {"vendor": "cirrus", "target": "default", "state": "SUCCEEDED_WITH_REJECTS",
                                     "dry_run": "false"}
    assert message["subject"] == "[cirrus] SUCCEEDED_WITH_REJECTS: accounts.xml"
    assert seen == [record()]


def test_a_failing_hook_does_not_fail_the_publication(account):
    def broken(_record):
        raise RuntimeError("metrics down")

    assert Notifier(account.sns, account.topic_arn, on_published=broken).publish(record())
    assert len(account.messages()) == 1


def test_filter_policies_from_the_docs_select_what_they_say(account):
    """The filter policies documented in docs/operations.md, applied by (moto's) SNS."""
    import re
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    policies = {name: json.loads(body) for name, body in
                re.findall(r"<!-- filter:(\S+) -->\s*```json\s*(\{.*?\})\s*```", docs, re.S)}
    assert set(policies) >= {"failures", "one-vendor", "one-vendor-not-clean", "credentials", "one-target"}
    queues = {}
    for name, policy in policies.items():
        url = account.sqs.create_queue(QueueName=f"filter-{name}")["QueueUrl"]
        account.sns.subscribe(TopicArn=account.topic_arn, Protocol="sqs",
                              Endpoint=f"arn:aws:sqs:us-east-1:123456789012:filter-{name}",
                              Attributes={"FilterPolicy": json.dumps(policy)})
        queues[name] = url
    notifier = Notifier(account.sns, account.topic_arn)
    errors = {"FAILED": {"type": "VendorAuthError", "message": "refused the credentials"},
              "TIMED_OUT": {"type": "DeadlineExceeded", "message": "still running"}}
    for vendor, state in (("cirrus", "SUCCEEDED"), ("cirrus", "FAILED"), ("hopex", "TIMED_OUT"),
                          ("hopex", "SUCCEEDED"), ("cirrus", "SUCCEEDED_WITH_REJECTS")):
        notifier.publish(record(vendor=vendor, state=state, error=errors.get(state)))
    notifier.publish(record(vendor="hopex", target="prod", state="FAILED", error=errors["FAILED"]))

    def got(name):
        msgs = account.sqs.receive_message(QueueUrl=queues[name], MaxNumberOfMessages=10).get("Messages", [])
        return sorted((json.loads(json.loads(m["Body"])["Message"])["vendor"],
                       json.loads(json.loads(m["Body"])["Message"])["state"]) for m in msgs)

    assert got("failures") == [("cirrus", "FAILED"), ("hopex", "FAILED"), ("hopex", "TIMED_OUT")]
    assert got("one-vendor") == [("cirrus", "FAILED"), ("cirrus", "SUCCEEDED"), ("cirrus", "SUCCEEDED_WITH_REJECTS")]
    assert got("one-vendor-not-clean") == [("cirrus", "FAILED"), ("cirrus", "SUCCEEDED_WITH_REJECTS")]
    assert got("credentials") == [("cirrus", "FAILED"), ("hopex", "FAILED")]
    assert got("one-target") == [("hopex", "FAILED")]  # hopex's default target is not prod


# -- error_type: the failure's documented type as a message attribute (filter policies) -------------------------

def test_a_failure_carries_its_error_type_attribute_and_a_success_none(account):
    notifier = Notifier(account.sns, account.topic_arn)
    notifier.publish(record(state="FAILED", error={"type": "VendorRefusedAll", "message": "Cirrus refused all"}))
    notifier.publish(record())
    failed, succeeded = account.messages()
    assert failed["attributes"] == {"vendor": "cirrus", "target": "default", "state": "FAILED", "dry_run": "false",
                                    "error_type": "VendorRefusedAll"}
    assert succeeded["attributes"] == {"vendor": "cirrus", "target": "default", "state": "SUCCEEDED_WITH_REJECTS",
                                       "dry_run": "false"}


def _filtered_queue(account, name: str, policy: dict) -> str:
    url = account.sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = account.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    account.sns.subscribe(TopicArn=account.topic_arn, Protocol="sqs", Endpoint=arn,
                          Attributes={"FilterPolicy": json.dumps(policy), "RawMessageDelivery": "false"})
    return url


def _subjects(account, url: str) -> list[str]:
    msgs = account.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return sorted(json.loads(m["Body"])["Subject"] for m in msgs.get("Messages", []))


def test_subscription_filter_policies_on_error_type(account):
    """The README's filter policies, evaluated by SNS (moto): one error type, any failure."""
    auth_only = _filtered_queue(account, "auth-only", {"error_type": ["VendorAuthError"]})
    any_error = _filtered_queue(account, "any-error", {"error_type": [{"exists": True}]})
    notifier = Notifier(account.sns, account.topic_arn)
    failing = "inbox/cirrus/object=Account/{}.xml"
    notifier.publish(record(state="FAILED", source={"key": failing.format("auth")},
                            error={"type": "VendorAuthError", "message": "refused the credentials"}))
    notifier.publish(record(state="TIMED_OUT", source={"key": failing.format("late")},
                            error={"type": "DeadlineExceeded", "message": "still running"}))
    notifier.publish(record(source={"key": failing.format("fine")}))
    assert _subjects(account, auth_only) == ["[cirrus] FAILED: auth.xml"]
    assert _subjects(account, any_error) == ["[cirrus] FAILED: auth.xml", "[cirrus] TIMED_OUT: late.xml"]


def test_subscription_filter_policy_on_target(account):
    """A subscriber of one HOPEX target hears of that target's imports only (SNS filter in moto)."""
    prod = _filtered_queue(account, "hopex-prod", {"vendor": ["hopex"], "target": ["prod"]})
    notifier = Notifier(account.sns, account.topic_arn)
    for target in ("prod", "test", "default"):
        notifier.publish(record(vendor="hopex", target=target, source={"key": f"inbox/hopex/{target}.mgl"}))
    notifier.publish(record(vendor="cirrus", target="prod", source={"key": "inbox/cirrus/prod.xml"}))
    assert _subjects(account, prod) == ["[hopex/prod] SUCCEEDED_WITH_REJECTS: prod.mgl"]


def test_the_email_names_a_target():
    assert "Target:     test" in email_text(record(target="test")).splitlines()
