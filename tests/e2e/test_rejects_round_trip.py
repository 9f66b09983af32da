"""Issue 13 part 4: a rejects file comes back in its own format. For every re-uploadable vendor
(aep, cirrus) x input format x option source (key segment, S3 metadata, console options): import
a file with records the vendor refuses, ``resubmit`` its rejects file (the operator command, as in
AWS: copied into the inbox with the upload's metadata), and assert the exact records the vendor
simulator received the second time, and that the options that still apply were applied again."""

# ruff: noqa: F811 - the fixtures of record_sims are imported, then named as test arguments

from __future__ import annotations

import json
import re

import pytest

from local import operator

from .record_sims import aep_sim, cirrus_sim, clear, record_sims  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e

SOURCES = ("key", "metadata", "console")


def _drop_queue(pipe) -> None:
    while True:
        msgs = pipe.sqs.receive_message(QueueUrl=pipe.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            return
        for m in msgs:
            pipe.sqs.delete_message(QueueUrl=pipe.queue_url, ReceiptHandle=m["ReceiptHandle"])


def _import(pipe, vendor: str, data: bytes, name: str, source: str, options: dict[str, str]):
    """One import of ``data`` with ``options`` given by ``source``."""
    if source == "key":
        segments = "".join(f"{k}={v}/" for k, v in options.items())
        return pipe.import_file(data, f"inbox/{vendor}/{segments}{name}")
    if source == "metadata":
        return pipe.import_file(data, f"inbox/{vendor}/{name}", dict(options))
    key = f"inbox/{vendor}/{name}"
    pipe.s3.put_object(Bucket=pipe.bucket, Key=key, Body=data)
    _drop_queue(pipe)  # a console user uploads, then starts by hand
    return pipe.start_console(vendor, {"bucket": pipe.bucket, "key": key, "options": dict(options)})


def _resubmit(pipe, job_id: str):
    backend = operator.AwsBackend(pipe.s3, pipe.ddb, pipe.bucket, pipe.table.name)
    key = backend.resubmit(job_id)
    outcomes = pipe.pump_queue()
    (mine,) = [o for o in outcomes if o["key"] == key]
    return key, pipe._result_for(key, mine)


# -- AEP: every input format, the format option from every source -----------------------------------------------
# (input bytes, options, the records the inlet refuses: written by hand)
AEP_CASES = {
    "csv": (b'sku;name;price\r\nA1;TV 55" screen;499\r\nA2;INVALID cable;9\r\nA3;"Lamp ""Atelier""";19\r\n'
            b'A4;INVALID "remote";5\r\n',
            {"format": "csv", "delimiter": ";"},
            [{"sku": "A2", "name": "INVALID cable", "price": "9"},
             {"sku": "A4", "name": 'INVALID "remote"', "price": "5"}]),
    "ndjson": (b'{"id": "N1"}\n{"id": "N2", "note": "INVALID"}\n{"id": "N3"}\n',
               {"format": "ndjson"},
               [{"id": "N2", "note": "INVALID"}]),
    "json": (b'[{"id": "J1", "note": "INVALID"}, {"id": "J2"}, {"id": "J3", "tags": ["a", "INVALID"]}]',
             {"format": "json"},
             [{"id": "J1", "note": "INVALID"}, {"id": "J3", "tags": ["a", "INVALID"]}]),
}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("fmt", sorted(AEP_CASES))
def test_aep_rejects_come_back_as_ndjson(record_sims, pipe, fmt, source):
    sims = record_sims
    data, options, refused = AEP_CASES[fmt]
    clear(sims)
    first = _import(pipe, "aep", data, f"rt-{fmt}-{source}.txt", source, options)
    assert first.state == "SUCCEEDED_WITH_REJECTS", first.record
    assert sims["aep"].refused == refused
    clear(sims)
    key, again = _resubmit(pipe, first.job_id)
    assert re.fullmatch(rf"inbox/aep/rt-{fmt}-{source}\.rejected\.resubmit-\d{{8}}T\d{{6}}Z\.ndjson", key), key
    head = pipe.s3.head_object(Bucket=pipe.bucket, Key=key)
    assert head["Metadata"] == {}  # format and delimiter do not apply to the rejects file
    # read as NDJSON: exactly the refused records were sent again, nothing else
    assert sims["aep"].refused == refused and sims["aep"].accepted == []
    assert again.record["counts"]["records"] == len(refused)
    assert again.state == "FAILED"  # the inlet refuses them again (they still hold INVALID)


def test_a_rejects_file_dropped_back_under_a_format_folder_is_still_read_as_ndjson(record_sims, pipe):
    """A user downloads the rejects file and drops it back where the CSV was, metadata and all."""
    sims = record_sims
    _data, _options, refused = AEP_CASES["csv"]
    clear(sims)
    again = pipe.import_file(b"".join(json.dumps(r).encode() + b"\n" for r in refused),
                             "inbox/aep/format=csv/delimiter=;/manual.rejected.ndjson", {"format": "csv"})
    assert again.record["counts"]["records"] == 2
    assert sims["aep"].refused == refused


# -- Cirrus: XML, the action/matching options from every source ---------------------------------------------------
CIRRUS_XML = (b"<Data>\n<Account><Name>Acme</Name><Code>C1</Code></Account>\n"
              b"<Account><Name>Bad Co</Name><Code>INVALID</Code></Account>\n"
              b"<Account><Name>Zeta</Name><Code>C3</Code></Account>\n</Data>\n")


@pytest.mark.parametrize("source", SOURCES)
def test_cirrus_rejects_come_back_with_the_options_that_apply(record_sims, pipe, source):
    sims = record_sims
    options = {"action": "insert", "matching_field": "Code"}
    clear(sims)
    first = _import(pipe, "cirrus", CIRRUS_XML, f"rt-cirrus-{source}.xml", source, options)
    assert first.state == "SUCCEEDED_WITH_REJECTS", first.record
    clear(sims)
    key, again = _resubmit(pipe, first.job_id)
    assert again.record["counts"]["records"] == 1
    # exactly the refused record, its <ErrorMessage> dropped, with the same action again
    assert sims["cirrus"].received == [{"object": "Account", "action": "insert", "use_external_id": True,
                                        "fields": {"Name": "Bad Co", "Code": "INVALID"}}]
    if source == "key":
        assert key.startswith("inbox/cirrus/action=insert/matching_field=Code/rt-cirrus-key.rejects.resubmit-")
    else:
        head = pipe.s3.head_object(Bucket=pipe.bucket, Key=key)
        assert head["Metadata"] == options
