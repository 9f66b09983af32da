"""Every output within AWS limits and safe to read: 1 MB vendor texts, control characters, formula
cells, hostile keys, unknown console fields."""

from __future__ import annotations

import json

import pytest
from vendor_import.connectors.simplemente import Message, messages_csv
from vendor_import.dal.notifier import Notifier, email_text, message_for
from vendor_import.dal.s3_layout import rows_to_csv, status_key
from vendor_import.logic.routing import parse_console_input
from vendor_import.model import FinalState, Progress, RejectRow

from tests.unit.test_finalize import JOB, clock, done_job, execution_event, state_event
from tests.unit.test_submit_upload import body, executions, router, s3_record, upload  # noqa: F401

MB_TEXT = "reason " + "x" * (1024 * 1024)  # a vendor's 1 MB reason
MARKER_END = "characters cut: the whole text is in the status JSON in S3]"
KIB256 = 262_144


def utf8_json(obj) -> int:
    return len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def finalize_with_a_huge_reason(account):
    # the vendor step kept the whole text in S3 and sent it cut through the state
    account.store.put_text(f"work/{JOB}/message.txt", MB_TEXT)
    job = done_job("FAILED", message=MB_TEXT[:16_000], message_key=f"work/{JOB}/message.txt")
    return account.finalizer(clock).from_state(state_event(job))


def test_the_s3_status_json_keeps_a_1_mb_reason_whole(account):
    finalize_with_a_huge_reason(account)
    whole = json.loads(account.read(status_key("hopex", JOB)))
    assert whole["message"] == MB_TEXT


def test_the_dynamodb_item_fits_400_kb_with_a_1_mb_reason(account):
    finalize_with_a_huge_reason(account)
    (item,) = account.status_items()
    assert utf8_json(item) < 400 * 1024
    assert item["message"].startswith("reason xxxx") and item["message"].endswith(MARKER_END)
    assert item["state"] == "FAILED"


def test_the_sns_message_fits_256_kib_with_a_1_mb_reason(account):
    record = finalize_with_a_huge_reason(account)
    (message,) = account.messages()
    assert message["attributes"]["state"] == "FAILED"
    assert len(message_for(record).encode("utf-8")) + 100 <= KIB256
    assert message["body"]["message"].endswith(MARKER_END)  # the SQS subscriber gets the JSON record


def test_the_sns_message_fits_even_when_every_character_is_escaped():
    record = {"job_id": "j", "vendor": "hopex", "state": "FAILED", "source": {"key": "inbox/hopex/a.mgl"},
              "message": "é\u0000" * 500_000, "error": {"type": "VendorRejectedError", "message": "\"" * 500_000}}
    assert len(message_for(record).encode("utf-8")) <= KIB256 - 4096


def test_the_finalize_state_output_fits_256_kib_with_a_1_mb_error(account):
    cause = json.dumps({"errorType": "VendorRejectedError", "errorMessage": MB_TEXT})
    record = account.finalizer(clock).from_state(
        state_event(error={"Error": "VendorRejectedError", "Cause": cause}))
    assert utf8_json(record) < KIB256
    assert record["error"]["message"].endswith(MARKER_END)
    assert json.loads(account.read(status_key("hopex", JOB)))["error"]["message"] == MB_TEXT


def test_a_vendor_step_payload_fits_256_kib_with_a_1_mb_reason(account):
    from vendor_import.logic.vendor_step import VendorStep

    step = VendorStep(vendor="hopex", settings_loader=dict, s3_client=account.s3, store=account.store,
                      jobs=account.jobs)
    step._emitted_format = None
    progress = Progress(job={"job_id": "J-1"}, done=True, state=FinalState.FAILED, message=MB_TEXT)
    payload = step._payload({"job_id": JOB, "polls": 3}, progress, JOB, part_id="step-000003", settings={})
    assert utf8_json(payload) < 32 * 1024
    assert payload["message"].endswith(MARKER_END)
    assert account.read(payload["message_key"]).decode() == MB_TEXT


class FailingOnce:
    """An SNS client whose first Publish fails (as a refused message did)."""

    def __init__(self, sns):
        self.sns, self.calls = sns, 0

    def publish(self, **kwargs):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("InvalidParameter: Message too long")
        return self.sns.publish(**kwargs)


def test_the_fallback_never_replaces_the_vendors_reason_with_a_stack_trace(account):
    from vendor_import.logic.finalize import Finalizer

    finalizer = Finalizer(account.store, account.jobs, Notifier(FailingOnce(account.sns), account.topic_arn),
                          clock=clock)
    job = done_job("FAILED", message="HOPEX import job J-1 failed: TERMINATED with reason 'LOCKED'")
    with pytest.raises(RuntimeError):
        finalizer.from_state(state_event(job))
    cause = json.dumps({"errorMessage": "InvalidParameter: Message too long", "errorType": "RuntimeError",
                        "stackTrace": ['  File "/var/task/app.py", line 30, in lambda_handler\n']})
    finalizer.from_execution_event(execution_event("FAILED", error="RuntimeError", cause=cause))
    (item,) = account.status_items()
    assert item["message"] == "HOPEX import job J-1 failed: TERMINATED with reason 'LOCKED'"
    (message,) = account.messages()
    assert message["body"]["job_id"] == JOB


def test_a_fallback_without_a_status_gives_the_error_message_not_the_trace(account):
    cause = json.dumps({"errorMessage": "boom", "errorType": "RuntimeError",
                        "stackTrace": ['  File "/var/task/app.py", line 30\n']})
    record = account.finalizer(clock).from_execution_event(execution_event("FAILED", error="RuntimeError",
                                                                           cause=cause))
    assert record["message"] == "boom"
    assert record["error"] == {"type": "InternalError", "message": "RuntimeError: boom"}  # errors.documented_error


# -- control characters -----------------------------------------------------------------------------------

def test_a_file_name_cannot_forge_lines_in_the_email():
    key = "inbox/hopex/a.mgl\nState:      SUCCEEDED\r\n\x1b[32mall good\x1b[0m\u202e.mgl"
    record = {"job_id": "j", "vendor": "hopex", "state": "FAILED", "message": "failed:\nState: SUCCEEDED",
              "source": {"key": key, "uri": f"s3://b/{key}"}, "error": {"type": "InputError", "message": "x\ny"}}
    text = email_text(record)
    assert [line for line in text.splitlines() if line.startswith("State")] == ["State:      FAILED"]
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
    assert "File:       s3://b/inbox/hopex/a.mgl\\nState:      SUCCEEDED\\r\\n\\x1b[32mall good\\x1b[0m\\u202e.mgl" \
        in text.splitlines()
    assert "failed:\\nState: SUCCEEDED" in text.splitlines()


# -- spreadsheet formulas ----------------------------------------------------------------------------------

def test_rejects_csv_cells_cannot_be_formulas():
    rows = [RejectRow("=1+2", "@SUM(A1:A9)", "+33"), RejectRow("-2", "ok reason", ""),
            RejectRow("7", "\tTAB", "\rCR"), RejectRow("8", "line\nbreak \x1b[31m", "")]
    assert rows_to_csv(rows) == (
        b"'=1+2,'+33,'@SUM(A1:A9)\n"
        b"'-2,,ok reason\n"
        b"7,'\\rCR,'\\tTAB\n"
        b"8,,line\\nbreak \\x1b[31m\n"
    )


def test_vendor_messages_csv_cells_cannot_be_formulas():
    messages = [Message("2024-05-01", "=HYPERLINK(\"http://evil\",\"x\")", True), Message("-1", "fine", False)]
    assert messages_csv(messages) == (
        b'"2024-05-01";1;"\'=HYPERLINK(""http://evil"",""x"")"\r\n'
        b'"\'-1";0;"fine"\r\n'
    )


def test_the_raw_rejects_file_stays_byte_exact(account):
    raw = b'=cmd|" /C calc"!A0\r\n@SUM(1)\n-x\x1b\n'
    account.store.stage_rejects(JOB, "step-000001", [RejectRow("1", "=bad")], raw)
    job = done_job(raw_format={"name": "clean.mgl.rejects", "content_type": "text/plain", "header": "",
                               "footer": ""})
    record = account.finalizer(clock).from_state(state_event(job))
    assert account.read(record["rejects"]["raw_uri"]) == raw
    assert account.read(record["rejects"]["csv_uri"]) == b"record,code,reason\n1,,'=bad\n"


# -- hostile keys ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", [
    "inbox//report.mgl",
    "inbox/../x.mgl",
    "inbox/./x.mgl",
    "inbox/\x1b[31m/x.mgl",
    "inbox/ho\npex/x.mgl",
    "inbox/" + "v" * 900 + "/x.mgl",
])
def test_a_hostile_key_gets_a_failed_status_under_a_safe_key_and_one_message(router, key):  # noqa: F811
    outcome, = router.handle_message_body(body(s3_record(router, key, upload(router, key))))
    assert outcome.action == "rejected" and executions(router) == []
    (item,) = router.account.status_items()
    assert item["state"] == "FAILED" and item["vendor"] == "unknown"
    assert router.account.keys("status/") == [f"status/unknown/{outcome.job_id}.json"]
    (message,) = router.account.messages()
    assert message["attributes"]["vendor"] == "unknown" and message["attributes"]["state"] == "FAILED"
    assert message["body"]["job_id"] == outcome.job_id


# -- console input fields ----------------------------------------------------------------------------------

def test_the_fields_the_state_machine_adds_are_known():
    req = parse_console_input({"bucket": "b", "key": "inbox/hopex/x.mgl", "etag": "e", "size": 3,
                               "job": {}, "error": None, "dry_run": True, "options": {}, "version_id": "v"})
    assert req.dry_run is True and req.vendor == "hopex"


def test_cli_tables_show_control_characters_escaped():
    from local import operator

    record = {"job_id": "j1", "vendor": "hopex", "state": "FAILED", "updated_at": "2024-05-01T10:00:00Z",
              "message": "bad\nstate:          SUCCEEDED", "counts": {"rejected": 1},
              "source": {"key": "inbox/hopex/a\n2099-01-01 00:00  SUCCEEDED\x1b[2K.mgl"}}
    table = operator.list_text([record])
    assert len(table.splitlines()) == 3  # header, rule, one row
    assert "\x1b" not in table and "a\\n2099-01-01 00:00  SUCCEEDED\\x1b[2K.mgl" in table
    shown = operator.show_text(record)
    assert [line for line in shown.splitlines() if line.startswith("state")] == ["state:          FAILED"]
    assert "message:        bad\\nstate:          SUCCEEDED" in shown.splitlines()


def test_a_step_error_quoting_a_1_mb_text_travels_cut_and_is_kept_whole(account):
    from vendor_import.errors import VendorRejectedError
    from vendor_import.logic.vendor_step import VendorStep

    step = VendorStep(vendor="campaign", settings_loader=dict, s3_client=account.s3, store=account.store,
                      jobs=account.jobs)
    exc = VendorRejectedError("Campaign refused it: " + MB_TEXT)
    step._fit_error(JOB, exc)
    assert len(str(exc)) < 17_000 and str(exc).endswith(MARKER_END)
    cause = json.dumps({"errorType": "VendorRejectedError", "errorMessage": str(exc)})
    record = account.finalizer(clock).from_state(state_event(error={"Error": "VendorRejectedError", "Cause": cause}))
    assert utf8_json(record) < KIB256
    whole = json.loads(account.read(status_key("hopex", JOB)))
    assert whole["error"]["message"] == "Campaign refused it: " + MB_TEXT
    assert whole["message"] == "Campaign refused it: " + MB_TEXT
