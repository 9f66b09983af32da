"""Issue 13 part 1: the real-world quirks corpus (tests/corpus/quirks/, expectations written by hand
in expected.json) through the whole local pipeline against the vendor simulators over HTTP: the
records each simulator really received, the rejects files, for the real run and the dry run."""

# ruff: noqa: F811 - the fixtures of record_sims are imported, then named as test arguments

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from .record_sims import aep_sim, cirrus_sim, clear, record_sims  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "quirks"
EXPECTED = {name: case for name, case in json.loads((CORPUS / "expected.json").read_text()).items()
            if not name.startswith("_")}


def received(sims, vendor: str) -> list[dict]:
    if vendor == "aep":
        assert sims["aep"].refused == []  # no quirk holds a record the inlet refuses
        return list(sims["aep"].accepted)
    return [r["fields"] for r in sims["cirrus"].received]


def rejects_of(result) -> tuple[list[list[str]], bytes | None]:
    """(rows of the rejects CSV without its header, the raw re-uploadable file or None)."""
    rows, raw = [], None
    for path in result.rejects_paths:
        if path.name.endswith(".rejects.csv"):
            table = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
            assert table[0] == ["record", "code", "reason"]
            rows = table[1:]
        else:
            raw = path.read_bytes()
    return rows, raw


def check_rejects(result, vendor: str, expected_rows: list[list[str]], expected_raw: list[str]) -> None:
    rows, raw = rejects_of(result)
    assert [r[:2] for r in rows] == [e[:2] for e in expected_rows]
    for row, (_record, _code, words) in zip(rows, expected_rows, strict=True):
        assert words in row[2], row
    if not expected_raw:
        assert raw is None
    elif vendor == "aep":
        assert raw.decode("utf-8").split("\n") == [*expected_raw, ""]
    else:
        text, at = raw.decode("utf-8"), 0
        for fragment in expected_raw:  # each refused record, in order, with its ErrorMessage
            at = text.index(fragment, at) + len(fragment)
            assert "<ErrorMessage>" in text[at:].split("</Account>", 1)[0]


def run(pipe, sims, name: str, *, dry: bool):
    case = EXPECTED[name]
    vendor = case["vendor"]
    if case.get("settings"):
        pipe.set_settings(vendor, {**sims[vendor].settings(), **case["settings"]})
    clear(sims)
    folder = "dry-run/quirks" if dry else "quirks"
    return case, vendor, pipe.import_file(CORPUS / name, f"inbox/{vendor}/{folder}/{name}")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_run_sends_exactly_the_expected_records(pipe, record_sims, name):
    sims = record_sims
    case, vendor, result = run(pipe, sims, name, dry=False)
    if "error" in case:
        assert result.state == "FAILED", result.record
        assert result.record["error"]["type"] == "InputError"
        assert case["error"] in result.record["error"]["message"]
        assert received(sims, vendor) == []
        return
    assert result.state == case["state"], result.record
    assert received(sims, vendor) == case["records"]
    counts = result.record["counts"]
    if vendor == "aep":  # the rejects are refused locally: read, never sent
        assert (counts["records"], counts["accepted"]) == (len(case["records"]) + len(case["rejects"]),
                                                            len(case["records"]))
    else:  # every record is sent; Cirrus Shield refuses the rejects
        assert (counts["records"], counts["accepted"]) == (len(case["records"]),
                                                            len(case["records"]) - len(case["rejects"]))
    check_rejects(result, vendor, case["rejects"], case["raw"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dry_run_writes_what_the_real_run_would(pipe, record_sims, name):
    sims = record_sims
    case, vendor, result = run(pipe, sims, name, dry=True)
    assert received(sims, vendor) == []
    if "error" in case:
        assert result.state == "FAILED", result.record
        assert case["error"] in result.record["error"]["message"]
        return
    assert result.state == "VALIDATED", result.record
    check_rejects(result, vendor, case.get("dry_rejects", case["rejects"]), case["raw"])


def test_dry_run_writes_the_oversize_record_itself_as_the_real_run_does(pipe, record_sims):
    """Issue 13 part 5: record 7 over max_record_bytes. The real run writes its CSV row and the record
    itself in <name>.rejected.ndjson; the dry run writes the same two files, byte for byte."""
    inlet = record_sims["aep"]
    pipe.set_settings("aep", {**inlet.settings(), "max_record_bytes": 1024})
    big = '{"id":"R7","note":"' + "x" * 2000 + '"}'
    lines = [f'{{"id":"R{n}"}}' for n in range(1, 7)] + [big] + ['{"id":"R8"}']
    data = ("\n".join(lines) + "\n").encode()
    files = {}
    for folder in ("", "dry-run/"):
        clear(record_sims)
        result = pipe.import_file(data, f"inbox/aep/{folder}oversize/seven.ndjson")
        assert result.state == ("VALIDATED" if folder else "SUCCEEDED_WITH_REJECTS"), result.record
        files[folder] = {p.name: p.read_bytes() for p in result.rejects_paths}
        if folder:
            assert inlet.accepted == []
        else:
            assert [r["id"] for r in inlet.accepted] == ["R1", "R2", "R3", "R4", "R5", "R6", "R8"]
    assert files[""] == files["dry-run/"]
    assert files[""]["seven.rejected.ndjson"] == (big + "\n").encode()
    rows = list(csv.reader(io.StringIO(files[""]["seven.ndjson.rejects.csv"].decode())))
    assert rows == [["record", "code", "reason"],
                    ["record 7 (line 7)", "oversize",
                     "record 7 (line 7): the message is 2,021 bytes, over AEP's 1 KB limit (1,024 bytes) for one "
                     "record; it was not sent"]]
