"""HOPEX simulator: outcome conventions, sample files and demo cases agree."""

from __future__ import annotations

from pathlib import Path

import pytest
from vendor_import.connectors import validate_options

from local.simulators.hopex import DEMO_CASES, judge

ROOT = Path(__file__).resolve().parents[2]


def test_clean_sample_is_imported_without_rejects():
    assert judge((ROOT / "events/files/hopex/clean.mgl").read_bytes()).kind == "done"


def test_rejects_sample_rejects_each_invalid_line_with_its_line_number():
    outcome = judge((ROOT / "events/files/hopex/with-rejects.mgl").read_bytes())
    assert outcome.kind == "rejects"
    lines = outcome.rejects.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith('line 5: unknown metaclass "INVALID-Widget": .Create')
    assert lines[1].startswith('line 7: unknown object "INVALID Treasury": .Connect')


def test_failing_sample_ends_in_error():
    outcome = judge((ROOT / "events/files/hopex/fails.mgl").read_bytes())
    assert outcome.kind == "error" and "line 2" in outcome.errmsg


@pytest.mark.parametrize("content, kind", [
    (b"NEVER-ENDS\nFAIL-JOB\nINVALID", "never"),
    (b"FAIL-JOB\nINVALID", "error"),
    (b'.Create ."Org-Unit" "INVALID"', "rejects"),
    (b'.Create ."Org-Unit" "Valid"', "done"),
])
def test_outcome_precedence(content, kind):
    assert judge(content).kind == kind


def test_demo_cases_cover_success_rejects_and_failure_with_existing_files():
    assert {"SUCCEEDED", "SUCCEEDED_WITH_REJECTS", "FAILED"} <= {case.expect for case in DEMO_CASES}
    for case in DEMO_CASES:
        assert (ROOT / case.file).is_file(), case.file
        assert case.key.startswith("inbox/hopex/")
        options = dict(seg.split("=", 1) for seg in case.key.split("/")[2:-1])
        validate_options("hopex", options)  # key segments are valid options
