"""The connector protocol: one class per vendor, no AWS calls inside.

The vendor function builds a ``StepContext`` (the upload as a ``Source``, the import options,
a presigner, the time left in this Lambda run, a checkpoint callback) and calls:

* ``validate(ctx)``  local checks only (format, size, per-record limits): raises InputError,
                     or returns would-be rejects. Used before submit and for dry runs.
* ``submit(ctx)``    starts the import at the vendor; returns a ``Progress``.
* ``poll(job, ctx)`` one poll (or, for record vendors, one slice of sending); returns ``Progress``.
* ``settle(job, ctx, reason)`` record vendors only, after an import failed for good part-way
                     through its file: every record not yet reported goes into the rejects.

Vendor quirks stay in the connector; the state machine and Finalize know nothing of vendors.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..model import Progress, RejectRow
from ..settings import Field
from ..source import Source

if TYPE_CHECKING:  # requests is imported by the connectors that call out, not by submit/finalize
    import requests


@dataclass
class StepContext:
    source: Source
    options: dict[str, Any] = field(default_factory=dict)
    # presigned GET URL of the upload, valid for N seconds (for vendors that fetch the file)
    presign: Callable[[int], str] | None = None
    # seconds left in this run; record vendors stop sending and save their cursor before it ends
    time_left: Callable[[], float] = lambda: 600.0
    # persist the connector's job state mid-step (a crash then resumes from there, not from 0)
    checkpoint: Callable[[dict[str, Any]], None] = lambda job: None
    # stage rejects right away (record vendors, before the checkpoint that moves past them):
    # emit_rejects(part_id, rows, raw_bytes_or_None, RawRejects_or_None). part_id must be
    # deterministic (e.g. the batch's start offset, zero-padded) so a retried step overwrites
    # its part instead of adding a duplicate; Finalize assembles parts in part_id order.
    emit_rejects: Callable[..., None] = lambda part_id, rows, raw=None, fmt=None: None
    dry_run: bool = False
    job_id: str = ""
    started_at: float = field(default_factory=time.time)


class Connector:
    """Base class of every vendor connector."""

    vendor: ClassVar[str] = ""
    # vendor-specific settings fields (COMMON_FIELDS are added by the loader)
    settings_fields: ClassVar[tuple[Field, ...]] = ()
    # per-import options (key segments name=value, S3 metadata, console "options")
    option_fields: ClassVar[tuple[Field, ...]] = ()
    # the vendor's public API root, used when the settings give no base_url (None = required)
    default_base_url: ClassVar[str | None] = None
    # a 0-byte upload is refused unless the vendor's trigger can be empty (Campaign: key names it)
    allow_empty_file: ClassVar[bool] = False
    # largest upload accepted (bytes); None = no limit
    max_file_bytes: ClassVar[int | None] = None
    # the rows of its rejects CSV are records (counted as counts.rejected); False: messages
    rejects_are_records: ClassVar[bool] = True

    def __init__(self, settings: dict[str, Any], session: requests.Session | None = None):
        from ..http import new_session

        self.settings = settings
        self.session = session or new_session(settings)

    # -- to override -------------------------------------------------------------------------
    def validate(self, ctx: StepContext) -> list[RejectRow]:
        return []

    def submit(self, ctx: StepContext) -> Progress:
        raise NotImplementedError

    def poll(self, job: dict[str, Any], ctx: StepContext) -> Progress:
        raise NotImplementedError

    def record_tally(self, job: dict[str, Any]):
        """Record vendors: the final ``logic.record_count.RecordTally`` of a finished job (the
        records-read invariant is checked on it); None for file vendors."""
        return None

    def settle(self, job: dict[str, Any], ctx: StepContext, reason: str) -> Progress | None:
        """Record vendors, once an import has failed for good part-way through its file (the state
        machine's Catch): stage as rejects every record no step reported, so that what the vendor
        accepted plus the rejects file is the whole upload. Records of a batch whose answer was
        lost are UNCONFIRMED (never sent again here); records never sent are ``NOT_SENT`` with
        ``reason``. Returns the job with ``counts.not_sent`` (``Progress.done`` False when the run
        had no time to read the whole rest of the file); None: nothing to settle (file vendors:
        the upload itself is what to send again)."""
        return None

_GROUPED = re.compile(r"\d{1,3}(?:[,\u00a0\u202f ]\d{3})+")


def vendor_count(value: Any) -> int | None:
    """A count as the vendor wrote it: 15, "15", 15.0, "1,234" (thousands grouped) -> int; absent,
    null, negative or not a number -> None (unknown, never 0). Used for Campaign's numRecords
    (seed 001) and AEP's run record counts (seed 003)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() and value >= 0 else None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        if _GROUPED.fullmatch(text):
            return int(re.sub(r"\D", "", text))
    return None
