"""AEP connector logic without a network: settings, message encoding, batch packing, the commit
of out-of-order batches, and the pacer."""

from __future__ import annotations

import json
import time

import pytest
from vendor_import.connectors import load_settings
from vendor_import.connectors.aep import AepConnector, _Batch, _Outcome, _Pacer
from vendor_import.connectors.base import StepContext
from vendor_import.errors import SettingsError
from vendor_import.source import BytesSource

BASE = {"vendor": "aep", "base_url": "https://dcs.adobedc.net", "inlet_id": "inlet1", "flow_id": "flow1"}


def connector(**overrides) -> AepConnector:
    return AepConnector(load_settings("aep", {**BASE, **overrides}))


def test_defaults_match_the_documented_limits():
    s = connector().settings
    assert (s["max_request_bytes"], s["max_record_bytes"]) == (1_000_000, 1_000_000)
    assert (s["max_requests_per_second"], s["max_messages_per_second"]) == (1000, 10000)
    assert s["message_mode"] == "raw" and s["verify_flow_runs"] is False and s["concurrency"] == 8
    assert connector().inlet_url == "https://dcs.adobedc.net/collection/batch/inlet1"
    # raw records: one per request to the documented single-message endpoint (seed 003) unless
    # raw_batch opts in to /collection/batch (Adobe shows it with XDM envelopes only)
    assert (s["raw_batch"], s["single_concurrency"]) == (False, 50)
    assert connector().single and connector().single_url == "https://dcs.adobedc.net/collection/inlet1"
    assert not connector(raw_batch=True).single


def test_single_path_batches_are_small_bookkeeping_units():
    data = "".join(json.dumps({"id": i}) + "\n" for i in range(120)).encode()
    assert [len(b.messages) for b in batches_of(connector(), data)] == [50, 50, 20]


def test_session_pool_fits_the_concurrency():
    conn = connector(concurrency=32)
    assert conn.session.get_adapter("https://x")._pool_maxsize >= 32


@pytest.mark.parametrize("overrides,message", [
    ({"message_mode": "xdm"}, "schema_id"),
    ({"authenticated": True}, "ims.client_id"),
    ({"verify_flow_runs": True, "ims": {"client_id": "c", "client_secret": "s"}}, "ims_org_id"),
    ({"max_retries": 2}, "at least 3"),
    ({"concurrency": 65}, "at most 64"),
])
def test_settings_that_do_not_fit_together(overrides, message):
    with pytest.raises(SettingsError, match=message):
        connector(**overrides)


def test_example_settings_validate():
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    doc = json.loads((root / "events/settings/aep.example.json").read_text())
    AepConnector(load_settings("aep", doc))


def test_raw_and_xdm_encoding():
    assert connector().encode({"a": "é"}) == '{"a":"é"}'.encode()
    xdm = connector(message_mode="xdm", schema_id="https://ns.adobe.com/t/schemas/s1", dataset_id="ds1",
                    ims_org_id="ORG@AdobeOrg")
    message = json.loads(xdm.encode({"a": 1}))
    ref = {"id": "https://ns.adobe.com/t/schemas/s1", "contentType": "application/vnd.adobe.xed-full+json;version=1"}
    assert message == {"header": {"schemaRef": ref, "imsOrgId": "ORG@AdobeOrg", "datasetId": "ds1",
                                  "flowId": "flow1"},
                       "body": {"xdmMeta": {"schemaRef": ref}, "xdmEntity": {"a": 1}}}
    with pytest.raises(ValueError):
        connector().encode({"a": float("nan")})


def batches_of(conn: AepConnector, data: bytes, done=()):
    ctx = StepContext(source=BytesSource(data, "f.ndjson"))
    job = {"format": "ndjson", "delimiter": ",", "offset": 0, "number": 0, "line": 1, "done": [list(d) for d in done]}
    return list(conn._batches(ctx, job))


def body_size(batch: _Batch) -> int:
    return len(b'{"messages":[' + b",".join(m for _, m in batch.messages) + b"]}")


def test_batches_are_packed_under_the_request_limit_and_contiguous():
    records = [{"id": i, "pad": "p" * (i % 50)} for i in range(400)]
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    conn = connector(max_request_bytes=2048, max_messages_per_request=1000)
    batches = batches_of(conn, data)
    assert all(b.size == body_size(b) <= 2048 for b in batches)
    # full: the next record would not have fitted
    for b, nxt in zip(batches, batches[1:], strict=False):
        assert b.size + len(nxt.messages[0][1]) + 1 > 2048
    assert batches[0].start == 0 and batches[-1].end == len(data)
    assert all(a.end == b.start for a, b in zip(batches, batches[1:], strict=False))
    assert sum(len(b.messages) for b in batches) == 400


def test_batches_respect_the_message_count_and_carry_local_rejects():
    data = b'{"a":1}\n{"a":\n{"a":2}\n{}\n{"a":3}\n'
    batches = batches_of(connector(max_messages_per_request=2, raw_batch=True), data)
    assert [[i.number for i, _ in b.messages] for b in batches] == [[1, 3], [5]]
    # a record refused locally joins the open batch (it closes only when a message does not fit)
    assert [[(i.number, code) for i, code, _ in b.local] for b in batches] == [
        [(2, "invalid_json"), (4, "empty")], []]
    assert (batches[0].items, batches[1].items) == (4, 1)


def test_batches_skip_the_ranges_completed_ahead():
    data = "".join(json.dumps({"id": i}) + "\n" for i in range(10)).encode()
    conn = connector(max_messages_per_request=3, raw_batch=True)
    full = batches_of(conn, data)
    second = full[1]
    again = batches_of(conn, data, done=[(second.start, second.end, second.end_number, second.end_line)])
    assert [(b.start, b.end) for b in again] == [(b.start, b.end) for b in full if b is not second]


def test_commit_moves_the_offset_over_the_completed_prefix_only():
    conn = connector()
    data = "".join(json.dumps({"id": i}) + "\n" for i in range(9)).encode()
    b1, b2, b3 = batches_of(connector(max_messages_per_request=3, raw_batch=True), data)
    saved = []
    ctx = StepContext(source=BytesSource(data, "f.ndjson"), checkpoint=saved.append)
    job = {"offset": 0, "number": 0, "line": 1, "done": [],
           "counts": dict.fromkeys(("records", "sent", "accepted", "rejected", "requests", "retries"), 0)}
    conn._commit(job, [(b3, _Outcome(accepted=3, requests=1)), (b2, _Outcome(accepted=3, requests=1))], ctx)
    assert job["offset"] == 0 and [d[:2] for d in job["done"]] == [[b2.start, b2.end], [b3.start, b3.end]]
    assert saved[-1]["counts"]["accepted"] == 6
    conn._commit(job, [(b1, _Outcome(accepted=3, requests=1))], ctx)
    assert (job["offset"], job["number"], job["done"]) == (len(data), 9, [])
    assert saved[-1]["counts"]["records"] == 9 and len(saved) == 2


def test_pacer_spaces_requests_after_a_one_second_burst():
    pacer = _Pacer(requests_per_second=50, messages_per_second=1_000_000)
    start = time.monotonic()
    for _ in range(60):  # 50 in the burst, then 10 spaced by 20 ms
        pacer.acquire(1)
    elapsed = time.monotonic() - start
    assert 0.15 < elapsed < 0.6


def test_pacer_counts_messages():
    pacer = _Pacer(requests_per_second=1000, messages_per_second=100)
    assert pacer.acquire(100) == 0
    assert pacer.acquire(10) == pytest.approx(0.1, abs=0.03)


def test_backoff_is_exponential_bounded_and_honours_retry_after():
    conn = connector(retry_base_seconds=1.0, retry_max_seconds=8.0)
    delays = [conn._backoff(n, None) for n in range(6)]
    assert all(0.5 * min(8, 2 ** n) <= d <= min(8, 2 ** n) for n, d in enumerate(delays))
    assert conn._backoff(0, "5") == 5 and conn._backoff(0, "60") == 8

