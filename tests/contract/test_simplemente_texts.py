"""simplement-e message texts: seed 000 documents none (the end of an import must be read from the
texts, "learned empirically", VENDORS.md section 1), so the connector must end every import from the
texts its documented ``*_patterns`` settings name, whatever wording the vendor uses.

The simulator speaks a second wording (``OTHER_TEXTS``, English, none of it matched by the
connector's default patterns); the connector is configured for it through its settings only, and
every outcome is checked. With its default patterns it must not guess an end from those texts."""

from __future__ import annotations

import pytest
from vendor_import.connectors import build_connector, load_settings
from vendor_import.connectors.simplemente import (
    DEFAULT_FAILED_PATTERNS,
    DEFAULT_FINISHED_PATTERNS,
    DEFAULT_FINISHED_WITH_ERRORS_PATTERNS,
)
from vendor_import.model import FinalState

from local.simulators.simplemente import DEFAULT_TEXTS, OTHER_TEXTS, SimplementeSimulator

from .test_simplemente_contract import FILES, HEADER, FakeS3, context, raw, run


@pytest.fixture
def store():
    s = FakeS3()
    yield s
    s.close()


@pytest.fixture
def other():
    with SimplementeSimulator(texts=OTHER_TEXTS) as sim:
        yield sim


def connector(sim, **overrides):
    return build_connector("simplemente", load_settings("simplemente", {**sim.settings(), **overrides}))


def test_the_other_texts_are_not_the_connectors_defaults():
    import re

    defaults = [*DEFAULT_FAILED_PATTERNS, *DEFAULT_FINISHED_PATTERNS, *DEFAULT_FINISHED_WITH_ERRORS_PATTERNS]
    ends = [OTHER_TEXTS.finished, OTHER_TEXTS.finished_with_errors, OTHER_TEXTS.failed, OTHER_TEXTS.download_failed]
    for text in ends:
        assert not any(re.search(p, text, re.IGNORECASE) for p in defaults), text
    assert OTHER_TEXTS.patterns != DEFAULT_TEXTS.patterns


def test_clean_import_ends_on_the_configured_finished_text(other, store):
    _, final, _ = run(connector(other), context(store), other)
    assert final.state is FinalState.SUCCEEDED
    assert final.message.endswith("finished: Flow articles: 2 rows integrated, end of run")


def test_row_errors_end_on_the_configured_finished_with_errors_text(other, store):
    _, final, _ = run(connector(other), context(store, (FILES / "articles-with-errors.csv").read_bytes()), other)
    assert final.state is FinalState.SUCCEEDED_WITH_REJECTS
    assert [r.reason for r in final.rejects] == ["Row 3 rejected: bad value", "Row 5 rejected: bad value"]
    assert "Flow articles: 3 rows integrated, 2 rows in error, end of run" in final.message


def test_vendor_failure_ends_on_the_configured_failed_text(other, store):
    _, final, _ = run(connector(other), context(store, (FILES / "articles-fail-flow.csv").read_bytes()), other)
    assert final.state is FinalState.FAILED
    assert "failed: Flow articles: run aborted" in final.message
    assert [r.reason for r in final.rejects] == ["Flow articles: fatal error, run stopped",
                                                 "Flow articles: run aborted"]


def test_download_failure_ends_on_the_configured_failed_text(other, store):
    _, final, _ = run(connector(other), context(store, expired=True), other)
    assert final.state is FinalState.FAILED
    assert final.rejects[0].reason.startswith("File http://") and "could not be retrieved (HTTP 403)" in \
        final.rejects[0].reason


@pytest.mark.parametrize("data", [raw(HEADER, '"A1";"Chaise";12.5'), raw(HEADER, '"A1";"INVALID";1'),
                                  raw(HEADER, '"A1";"FAIL-FLOW";1')], ids=["clean", "row error", "fail"])
def test_default_patterns_do_not_guess_an_end_from_unknown_texts(other, store, data):
    defaults = {"finished_patterns": list(DEFAULT_FINISHED_PATTERNS),
                "finished_with_errors_patterns": list(DEFAULT_FINISHED_WITH_ERRORS_PATTERNS),
                "failed_patterns": list(DEFAULT_FAILED_PATTERNS)}
    conn = connector(other, **defaults)
    ctx = context(store, data)
    progress = conn.submit(ctx)
    other.wait_fetched()
    for _ in range(12):  # every message shown, several times over
        progress = conn.poll(progress.job, ctx)
        assert not progress.done, progress.message
    assert progress.counts["messages"] >= 3
