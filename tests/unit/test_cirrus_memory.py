"""Cirrus imports keep memory flat whatever the file size: validate (lxml iterparse and the
byte reader) and the batch loop never hold more than a chunk, a record and a batch.

The vendor call is replaced by an all-accepted answer so only the file handling is measured.
Python allocations are measured with tracemalloc; libxml2's own allocations (invisible to
tracemalloc) with the peak RSS of a child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from vendor_import.connectors import build_connector, load_settings
from vendor_import.connectors import cirrus_xml as cx
from vendor_import.connectors.base import StepContext
from vendor_import.source import FileSource

ROOT = Path(__file__).resolve().parents[2]
RECORD = ("  <Account>\n    <Name>Account {i:08d}</Name>\n    <Address>{i} rue de la Paix, Paris</Address>\n"
          "    <Phone>+33 1 23 45 67 89</Phone>\n    <LastAuditDate>2017-06-12 15:40:47+02</LastAuditDate>\n"
          "  </Account>\n")


def generate(path: Path, target_bytes: int) -> int:
    """Write a <Data> file of about target_bytes; return its record count."""
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<Data>\n')
        written = 0
        while written < target_bytes:
            block = "".join(RECORD.format(i=count + k) for k in range(1000))
            f.write(block)
            written += len(block)
            count += 1000
        f.write("</Data>\n")
    return count


def fake_import(path: str) -> dict:
    """validate + submit + polls to the end, with the vendor answering 'all accepted'."""
    settings = load_settings("cirrus", {"vendor": "cirrus", "base_url": "https://cirrus.example.com",
                                        "username": "u", "password": "memory-test-password",
                                        "defaults": {"action": "upsert", "matching_field": "Name"}})
    conn = build_connector("cirrus", settings)
    conn._token = lambda: "token"
    sent = []

    def all_accepted(job, xml, count, what):
        sent.append(count)
        return [cx.RecordResult(True, "1") for _ in range(count)]

    conn._post_batch = all_accepted
    ctx = StepContext(source=FileSource(path))
    conn.validate(ctx)
    progress = conn.submit(ctx)
    while not progress.done:
        progress = conn.poll(progress.job, ctx)
    return {"sent": sum(sent), "state": progress.state.value, "records": progress.counts["records"]}


def python_peak(path: str) -> tuple[int, dict]:
    tracemalloc.start()
    try:
        result = fake_import(path)
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def test_python_allocations_do_not_grow_with_the_file(tmp_path):
    small, big = tmp_path / "small.xml", tmp_path / "big.xml"
    small_count = generate(small, 50_000)
    big_count = generate(big, 4_000_000)
    small_peak, small_result = python_peak(str(small))
    big_peak, big_result = python_peak(str(big))
    assert small_result == {"sent": small_count, "state": "SUCCEEDED", "records": small_count}
    assert big_result == {"sent": big_count, "state": "SUCCEEDED", "records": big_count}
    # 80x the records, same peak give or take a few buffers (a list of records would be MBs)
    assert big_peak < small_peak + 512 * 1024, (small_peak, big_peak)


CHILD = """
import json, resource, sys
from tests.unit.test_cirrus_memory import fake_import
result = fake_import(sys.argv[1])
result["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(result))
"""


def child_run(path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers/common"), str(ROOT)])}
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_peak_rss_of_a_tens_of_mb_file_is_that_of_a_small_one(tmp_path):
    small, big = tmp_path / "small.xml", tmp_path / "big.xml"
    generate(small, 50_000)
    big_count = generate(big, 25_000_000)
    small_run, big_run = child_run(small), child_run(big)
    assert big_run["sent"] == big_count and big_run["state"] == "SUCCEEDED"
    # the file alone is 25 MB and a parsed tree several times that: growth must stay far below
    assert big_run["maxrss_kb"] - small_run["maxrss_kb"] < 8 * 1024, (small_run, big_run)
