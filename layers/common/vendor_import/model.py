"""The job model: what travels in the state machine payload (small) and in status records."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class FinalState(enum.StrEnum):
    SUCCEEDED = "SUCCEEDED"
    SUCCEEDED_WITH_REJECTS = "SUCCEEDED_WITH_REJECTS"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    VALIDATED = "VALIDATED"  # dry run / local checks only: no vendor call was made


SUCCESS_STATES = {FinalState.SUCCEEDED, FinalState.SUCCEEDED_WITH_REJECTS, FinalState.VALIDATED}


@dataclass
class SourceRef:
    """Where the uploaded file is: enough to re-open it, never its content."""

    bucket: str
    key: str
    version_id: str | None = None
    size: int | None = None
    etag: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def filename(self) -> str:
        return self.key.rsplit("/", 1)[-1] or "upload"


# the rejects code of a record never sent because the import failed for good before it
CODE_NOT_SENT = "NOT_SENT"


@dataclass
class RejectRow:
    """One rejected record, normalised across vendors (one CSV row in rejects/)."""

    record: str  # record number, key, or vendor reference identifying what was rejected
    reason: str
    code: str = ""

    def as_row(self) -> list[str]:
        return [self.record, self.code, self.reason]


REJECT_CSV_HEADER = ["record", "code", "reason"]


@dataclass
class RawRejects:
    """How the raw (vendor-shaped) rejects file is assembled by Finalize from staged parts.

    Finalize writes ``header + part1 + part2 ... + footer`` to ``rejects/.../<name>`` without
    knowing the vendor; a connector that streams (Cirrus, AEP) stages one part per step.
    """

    name: str
    content_type: str = "application/octet-stream"
    header: str = ""
    footer: str = ""


@dataclass
class Progress:
    """What a connector's submit/poll returns.

    ``job`` is the connector's own small state (vendor reference, cursor...): it is stored in
    the state machine payload and handed back on the next poll, so it must stay small (<8 KB).
    """

    job: dict[str, Any]
    done: bool = False
    state: FinalState | None = None  # set when done
    vendor_ref: str | None = None
    message: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    rejects: list[RejectRow] = field(default_factory=list)  # new rows found in this step
    raw_rejects: bytes | None = None  # new raw part found in this step
    raw_rejects_format: RawRejects | None = None
    next_wait_seconds: int | None = None  # None: the static backoff schedule decides
    error_type: str | None = None  # FAILED / TIMED_OUT: a name of errors.ERROR_TYPES (the status record's error.type)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value if self.state else None
        return d
