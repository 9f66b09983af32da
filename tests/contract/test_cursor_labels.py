"""Record cursors across several polls: the reject labels (record number, line, matching value)
and the records sent stay exact when every poll resumes from the cursor saved by the previous one.

An off-by-one in a saved cursor (next record number, byte offset, line) shifts every label after
the first poll, or sends a record twice or never; within one poll the reader's own counting hides
it, so these tests force one batch per poll. Expected labels are written by hand from the files."""

from __future__ import annotations

import json

from vendor_import.model import FinalState
from vendor_import.source import BytesSource

from local.simulators.aep import AepSimulator
from local.simulators.cirrus import INVALID_LOOKUP, CirrusSimulator

from .test_aep_contract import Run
from .test_aep_contract import connector_for as aep_connector
from .test_cirrus_contract import Recorder, accounts, make_connector, make_ctx, names_sent, poll_to_end


def test_cirrus_reject_labels_across_one_batch_per_poll():
    with CirrusSimulator() as sim:
        rec = Recorder()
        # 5 records a batch, 0 s left after the first batch of each poll: 13 records = 3 polls
        # with a batch each, then one that finds the end
        # no white space between records: a cursor one byte off lands inside a tag
        data = accounts(13, frozenset({2, 5, 6, 10, 13})).replace(b"</Account>\n  <Account>", b"</Account><Account>")
        ctx = make_ctx(data, rec, time_left=lambda: 0.0)
        conn = make_connector(sim, batch_size=5)
        conn.validate(ctx)
        progress, polls = poll_to_end(conn, ctx, conn.submit(ctx))
        assert polls == 4 and len(sim.requests_to("DataAction", "POST")) == 3
        assert [(r.record, r.reason) for r in rec.rows()] == [
            ("2 Name=Acc 002", INVALID_LOOKUP), ("5 Name=Acc 005", INVALID_LOOKUP),
            ("6 Name=Acc 006", INVALID_LOOKUP), ("10 Name=Acc 010", INVALID_LOOKUP),
            ("13 Name=Acc 013", INVALID_LOOKUP)]
        assert sorted(rec.parts) == ["000000000001", "000000000006", "000000000011"]
        assert names_sent(sim) == [f"Acc {i:03d}" for i in range(1, 14)]  # each once, in order
        assert (progress.counts["records"], progress.counts["accepted"], progress.counts["rejected"]) == (13, 8, 5)
        assert progress.state is FinalState.SUCCEEDED_WITH_REJECTS


def test_aep_reject_labels_across_one_batch_per_poll():
    # blank lines make the line numbers differ from the record numbers
    lines = [
        {"id": "A1"}, {"id": "A2", "email": "INVALID"}, None, {"id": "A3"},
        {"id": "A4"}, None, None, {"id": "A5", "email": "INVALID"}, {"id": "A6"},
        {"id": "A7", "email": "INVALID"},
    ]
    body = "".join((json.dumps(r) if r else "") + "\n" for r in lines).encode()
    with AepSimulator(message_mode="xdm") as sim:  # the batch endpoint's documented payload
        run = Run(aep_connector(sim, max_messages_per_request=2, concurrency=1), BytesSource(body, "p.ndjson"),
                  batches_per_step=1)
        done = run.all()
        assert run.steps >= 4  # 7 records, 2 a request, one request a poll
        assert [(r.record, r.code) for r in run.rows] == [
            ("record 2 (line 2)", "400"), ("record 5 (line 8)", "400"), ("record 7 (line 10)", "400")]
        assert [json.loads(line)["id"] for line in run.raw.decode().splitlines()] == ["A2", "A5", "A7"]
        assert sim.accepted_ids() == {"A1": 1, "A3": 1, "A4": 1, "A6": 1}
        assert (done.counts["records"], done.counts["accepted"], done.counts["rejected"]) == (7, 4, 3)
