"""Every bad input gets a clear answer.

A corpus of bad uploads (files under tests/reliability/corpus/, plus big ones generated here), odd
but valid keys, bad routing, bad vendor settings, wrong credentials and bad console starts. Each
ends with exactly one status record (and SNS message) whose error names the problem in words a
user can act on; none leaves an execution running or an upload event in the dead-letter queue.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from .helpers import (
    CORPUS,
    SECRETS,
    assert_one_outcome,
    import_many,
    make_sample,
    outcomes_by_job,
    report,
)

pytestmark = pytest.mark.e2e

ENDED = {None, "SUCCEEDED", "FAILED", "TIMED_OUT"}  # None: refused before any execution
MB = 1024 * 1024


@dataclass
class Case:
    id: str
    key: str
    body: bytes | None = None  # None: the corpus file named by the key's last segment
    words: tuple[str, ...] = ()  # all must appear (case-insensitive) in the error or the rejects
    state: str = "FAILED"
    metadata: dict[str, str] = field(default_factory=dict)
    error_type: str | None = "InputError"

    def content(self) -> bytes:
        if self.body is not None:
            return self.body
        vendor = self.key.split("/")[1]
        return (CORPUS / vendor / self.key.rsplit("/", 1)[-1]).read_bytes()


def huge_ndjson_line() -> bytes:
    return json.dumps({"id": "huge-1", "note": "x" * (MB + 10)}).encode() + b"\n"


def huge_cirrus_record() -> bytes:
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n<Data>\n  <Account><Name>Huge</Name><Notes>'
            + b"x" * (MB + 10) + b"</Notes></Account>\n</Data>\n")


def oversize_hopex() -> bytes:
    line = b'.Create ."Application" "filler"\n'
    return line * (30 * MB // len(line) + 2)


HOPEX_OK = make_sample("hopex", "bad-input-valid-hopex").body
CIRRUS_OK = make_sample("cirrus", "bad-input-valid-cirrus", records=2).body

UPLOADS = [
    # -- Cirrus Shield XML -------------------------------------------------------------------------------
    Case("xml-malformed", "inbox/cirrus/bad/malformed.xml", words=("not well-formed xml", "tag mismatch")),
    Case("xml-truncated", "inbox/cirrus/bad/truncated.xml", words=("not well-formed xml", "premature end")),
    Case("xml-bomb", "inbox/cirrus/bad/xml-bomb.xml", words=("doctype", "refused", "remove the doctype")),
    Case("xml-external-entity", "inbox/cirrus/bad/external-entity.xml",
         words=("doctype", "never expanded nor fetched")),
    Case("xml-wrong-root", "inbox/cirrus/bad/wrong-root.xml", words=("root element is <records>", "<data>")),
    Case("xml-invalid-utf8", "inbox/cirrus/bad/invalid-utf8.xml", words=("encoding", "save it as utf-8")),
    Case("xml-mixed-objects", "inbox/cirrus/bad/mixed-object-types.xml",
         words=("mixed object types", "own file")),
    Case("xml-no-record", "inbox/cirrus/bad/no-record.xml", words=("no record", "<data> is empty")),
    Case("xml-zero-byte", "inbox/cirrus/bad/zero-byte.xml", words=("empty", "0 bytes")),
    Case("xml-not-xml", "inbox/cirrus/bad/not-xml.xml", words=("not xml", "<data>")),
    Case("xml-huge-record", "inbox/cirrus/bad/huge-record.xml", body=huge_cirrus_record(),
         words=("record 1", "bytes")),
    # -- AEP records ---------------------------------------------------------------------------------------
    Case("ndjson-invalid-utf8", "inbox/aep/bad/invalid-utf8.ndjson", words=("not utf-8", "line 1")),
    Case("ndjson-not-json", "inbox/aep/bad/not-records.xml.ndjson", words=("not valid json", "line 1")),
    Case("json-array-truncated", "inbox/aep/bad/truncated-array.json",
         words=("json array is not valid", "ndjson")),
    Case("ndjson-truncated-last-line", "inbox/aep/bad/truncated.ndjson", state="SUCCEEDED_WITH_REJECTS",
         words=("line 2", "not valid json"), error_type=None),
    Case("ndjson-zero-byte", "inbox/aep/bad/zero-byte.ndjson", words=("empty", "0 bytes")),
    Case("csv-wrong-separator", "inbox/aep/bad/wrong-separator.csv",
         words=("single column", "delimiter=;")),
    Case("ndjson-huge-line", "inbox/aep/bad/huge-line.ndjson", body=huge_ndjson_line(),
         words=("record 1", "bytes")),
    # -- HOPEX ---------------------------------------------------------------------------------------------
    Case("mgl-zero-byte", "inbox/hopex/bad/zero-byte.mgl", words=("empty", "0 bytes")),
    Case("mgl-oversize", "inbox/hopex/bad/oversize.mgl", body=oversize_hopex(),
         words=("over HOPEX's 30 MB limit (31,457,280 bytes)", "split the file")),
    Case("option-bad-value-in-key", "inbox/hopex/validate=Sometimes/bad.mgl", body=HOPEX_OK,
         words=("validate", "must be one of", "atend")),
    Case("option-bad-value-in-metadata", "inbox/hopex/bad/metadata.mgl", body=HOPEX_OK,
         metadata={"validate": "Sometimes"}, words=("validate", "must be one of")),
    # -- Campaign trigger ------------------------------------------------------------------------------------
    Case("trigger-truncated-json", "inbox/campaign/bad/truncated.json", words=("not valid json",)),
    Case("trigger-bad-mapping-id", "inbox/campaign/bad/bad-mapping-id.json",
         words=("mapping id", "not well-formed", "no spaces or /")),
    Case("trigger-unknown-field", "inbox/campaign/bad/unknown-field.json", words=("unknown key 'color'",)),
    Case("trigger-utf16", "inbox/campaign/bad/utf16.json", words=("not utf-8", "save it as utf-8")),
    # -- simplement-e RAW CSV -------------------------------------------------------------------------------
    Case("raw-bom", "inbox/simplemente/flux=articles/bad/bom.csv", words=("byte order mark", "without bom")),
    Case("raw-wrong-separator", "inbox/simplemente/flux=articles/bad/wrong-separator.csv",
         words=("single column", "separate columns with ;")),
    Case("raw-invalid-utf8", "inbox/simplemente/flux=articles/bad/invalid-utf8.csv",
         words=("invalid utf-8", "line 2")),
    Case("raw-no-flux", "inbox/simplemente/no-flux.csv", body=b'"Code";"Libelle"\r\n"A1";"Chaise"\r\n',
         words=("flux",)),
    # -- routing ---------------------------------------------------------------------------------------------
    Case("unknown-vendor", "inbox/sap/orders.csv", body=b"id\n1\n", words=("unknown vendor 'sap'", "inbox/<vendor>/")),
    Case("no-vendor-folder", "inbox/orders.csv", body=b"id\n1\n", words=("names no vendor", "inbox/<vendor>/")),
    # -- odd but valid keys: imported as they are --------------------------------------------------------------
    Case("key-with-spaces", "inbox/hopex/with space/my model file.mgl", body=HOPEX_OK, state="SUCCEEDED",
         error_type=None),
    Case("key-with-unicode", "inbox/hopex/ünïcödé/модель-数据.mgl", body=HOPEX_OK, state="SUCCEEDED",
         error_type=None),
    Case("key-with-plus-and-percent", "inbox/hopex/a+b/100% sure+ok.mgl", body=HOPEX_OK, state="SUCCEEDED",
         error_type=None),
    Case("key-with-plus-cirrus", "inbox/cirrus/object=Account/x+y 50%.xml", body=CIRRUS_OK, state="SUCCEEDED",
         error_type=None),
]


def error_text(pipe, record: dict[str, Any]) -> str:
    """What the user reads: the message, the error, and the reasons in the rejects file."""
    parts = [record.get("message") or "", json.dumps(record.get("error") or {}, ensure_ascii=False)]
    uri = (record.get("rejects") or {}).get("csv_uri")
    if uri:
        body = pipe.s3.get_object(Bucket=pipe.bucket, Key=uri.split("/", 3)[3])["Body"].read().decode("utf-8")
        parts += [f"{row['record']} {row['reason']}" for row in csv.DictReader(io.StringIO(body))]
    return "\n".join(parts).lower()


def check(pipe, case: Case, result) -> dict[str, Any]:
    assert result.execution_status in ENDED, f"{case.id}: execution {result.execution_status}"
    record = assert_one_outcome(outcomes_by_job(pipe, [result.job_id])[result.job_id], result.job_id)
    assert record["state"] == case.state, (case.id, record["message"])
    if case.error_type:
        assert record["error"]["type"] == case.error_type, (case.id, record["error"])
    elif case.state != "FAILED":
        assert record["error"] is None, (case.id, record["error"])
    text = error_text(pipe, record)
    missing = [w for w in case.words if w.lower() not in text]
    assert not missing, f"{case.id}: {missing} not in: {text}"
    return record


@pytest.fixture(scope="module")
def uploaded(pipe):
    """Every upload case at once: they are imported side by side, like a busy bucket."""
    results = import_many(pipe, [(c.key, c.content(), c.metadata or None) for c in UPLOADS])
    return {r.key: r for r in results}


@pytest.mark.parametrize("case", UPLOADS, ids=[c.id for c in UPLOADS])
def test_bad_upload_gets_a_clear_answer(pipe, uploaded, case):
    record = check(pipe, case, uploaded[case.key])
    assert record["source"]["key"] == case.key


def test_no_bad_upload_leaves_a_message_in_the_dead_letter_queue(pipe, uploaded):
    assert pipe.dlq_depth() == 0
    assert pipe.sqs.get_queue_attributes(QueueUrl=pipe.queue_url, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_the_corpus_is_kept_and_covered(uploaded):
    files = {p.name for p in CORPUS.rglob("*") if p.is_file()}
    used = {c.key.rsplit("/", 1)[-1] for c in UPLOADS if c.body is None}
    assert files == used
    assert len(files) >= 20 and len(UPLOADS) + len(SETTINGS) + len(CONSOLE) >= 30
    report("bad input (tests/reliability/test_bad_input.py)",
           f"{len(files)} corpus files + {len(UPLOADS) - len(used)} generated uploads, {len(SETTINGS)} bad "
           f"settings or credentials, {len(CONSOLE)} bad console starts: "
           f"{len(UPLOADS) + len(SETTINGS) + len(CONSOLE)} bad inputs, each answered by one status record")


# -- vendor settings and credentials -----------------------------------------------------------------------------

def placeholder(vendor: str) -> str:
    """The secret as the template creates it, before the user puts the real settings in."""
    from local.template_deploy import load_sam_template

    from .helpers import LOGICAL

    template = load_sam_template()
    return template["Resources"][f"{LOGICAL[vendor]}Settings"]["Properties"]["SecretString"]


def with_changes(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    *parents, last = path.split(".")
    target = doc
    for name in parents:
        target = target[name]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return doc


# (id, vendor, settings: a function of the simulator's settings -> a document or a raw string, words, type)
SETTINGS = [
    ("placeholder-secret", "hopex", lambda d: placeholder("hopex"), ("missing setting", "environment_id"),
     "SettingsError"),
    ("invalid-json-secret", "cirrus", lambda d: '{"vendor": "cirrus", "base_url": ', ("not valid json",),
     "SettingsError"),
    ("missing-field", "cirrus", lambda d: with_changes(d, "password", ...), ("missing setting password",),
     "SettingsError"),
    ("missing-nested-field", "hopex", lambda d: with_changes(d, "auth.password", ...),
     ("missing setting auth.password",), "SettingsError"),
    ("wrong-type", "simplemente", lambda d: with_changes(d, "timeout_seconds", "ten"),
     ("setting timeout_seconds must be",), "SettingsError"),
    ("unknown-field", "campaign", lambda d: with_changes(d, "colour", "blue"),
     ("unknown setting colour",), "SettingsError"),
    ("other-vendors-document", "aep", lambda d: with_changes(d, "vendor", "cirrus"),
     ("setting vendor is 'cirrus'", "'aep'"), "SettingsError"),
    ("plain-http-not-allowed", "hopex", lambda d: with_changes(d, "allow_http", False),
     ("plain http://", "allow_http"), "SettingsError"),
    ("wrong-password-hopex", "hopex", lambda d: with_changes(d, "auth.password", "wrong-password"),
     ("refused",), "VendorAuthError"),
    ("wrong-secret-campaign", "campaign", lambda d: with_changes(d, "ims.client_secret", "wrong-secret"),
     ("client",), "VendorAuthError"),
    ("wrong-secret-aep", "aep", lambda d: with_changes(d, "ims.client_secret", "wrong-secret"),
     ("client",), "VendorAuthError"),
    ("wrong-secret-simplemente", "simplemente", lambda d: with_changes(d, "secret", "wrong-secret"),
     ("refused",), "VendorAuthError"),
    ("wrong-password-cirrus", "cirrus", lambda d: with_changes(d, "password", "wrong-password"),
     ("refused",), "VendorAuthError"),
]


@pytest.mark.parametrize(("case_id", "vendor", "make", "words", "error_type"), SETTINGS,
                         ids=[s[0] for s in SETTINGS])
def test_bad_settings_or_credentials_get_a_clear_answer(pipe, sims, settings_restored, case_id, vendor, make,
                                                        words, error_type):
    from local.runner import _reset_library_caches

    from .helpers import LOGICAL, default_settings

    doc = make(default_settings(sims, vendor))
    arn = pipe.deployment.refs[f"{LOGICAL[vendor]}Settings"]
    pipe.secrets.put_secret_value(SecretId=arn, SecretString=doc if isinstance(doc, str) else json.dumps(doc))
    pipe.settings[vendor] = None  # settings_restored puts the simulator's back
    _reset_library_caches(settings_only=True)
    sample = make_sample(vendor, f"bad-settings-{case_id}", records=2)
    (result,) = import_many(pipe, [(sample.key, sample.body, None)])
    case = Case(case_id, sample.key, words=words, error_type=error_type)
    record = check(pipe, case, result)
    for secret in SECRETS.values():
        assert secret not in json.dumps(record)
    assert pipe.dlq_depth() == 0


# -- console starts ----------------------------------------------------------------------------------------------

# (id, vendor, input: a function of the bucket, words)
CONSOLE = [
    ("missing-key", "hopex", lambda b: {"bucket": b}, ('"key" is missing', "inbox/<vendor>/<file>")),
    ("missing-bucket", "cirrus", lambda b: {"key": "inbox/cirrus/x.xml"}, ('"bucket" is missing',)),
    ("empty-input", "aep", lambda b: {}, ('"bucket" is missing',)),
    ("not-an-object", "campaign", lambda b: ["inbox/campaign/x.json"], ("must be a json object",)),
    ("key-not-a-string", "simplemente", lambda b: {"bucket": b, "key": 42}, ('"key" must be a non-empty string',)),
    ("options-not-an-object", "hopex", lambda b: {"bucket": b, "key": "inbox/hopex/x.mgl", "options": "AtEnd"},
     ('"options" must be an object',)),
    ("dry-run-not-a-boolean", "hopex", lambda b: {"bucket": b, "key": "inbox/hopex/x.mgl", "dry_run": "yes"},
     ('"dry_run" must be true or false',)),
    ("missing-object", "hopex", lambda b: {"bucket": b, "key": "inbox/hopex/console/not-there.mgl"},
     ("cannot read", "not-there.mgl", "does not exist")),
    ("missing-version", "cirrus", lambda b: {"bucket": b, "key": "inbox/cirrus/console/v.xml",
                                            "version_id": "no-such-version"},
     ("cannot read", "version no-such-version", "does not exist")),
    ("missing-bucket-name", "aep", lambda b: {"bucket": "no-such-bucket-s3vi", "key": "inbox/aep/x.ndjson"},
     ("cannot read s3://no-such-bucket-s3vi/",)),
    ("other-vendors-key", "hopex", lambda b: {"bucket": b, "key": "inbox/cirrus/console/x.xml"},
     ("routed to vendor 'cirrus'", "hopex state machine")),
]


@pytest.mark.parametrize(("case_id", "vendor", "make", "words"), CONSOLE, ids=[c[0] for c in CONSOLE])
def test_bad_console_start_gets_a_clear_answer(pipe, case_id, vendor, make, words):
    if case_id == "missing-version":  # the object exists, the version does not
        pipe.s3.put_object(Bucket=pipe.bucket, Key="inbox/cirrus/console/v.xml", Body=CIRRUS_OK)
        from .helpers import drop_messages

        drop_messages(pipe, pipe.queue_url)
    result = pipe.start_console(vendor, make(pipe.bucket))
    assert result.execution_status in ("SUCCEEDED", "FAILED"), result.execution_status  # ended, not stuck
    case = Case(case_id, "", words=words)
    check(pipe, case, result)
    assert pipe.dlq_depth() == 0
