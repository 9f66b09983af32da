"""The records-read invariant of record vendors (AEP, Cirrus Shield), checked in code at the end
of every import: records read from the file = accepted + refused by the vendor + refused
locally + UNCONFIRMED (outcome unknown) + NOT_SENT (an import that failed for good part-way
lists the rest of its file as not sent: ``Connector.settle``). A record missing from the sum was lost somewhere
between the reader and the status record; the import then ends FAILED with
``error.type = RecordCountMismatch`` and the numbers, never SUCCEEDED."""

from __future__ import annotations

from dataclasses import dataclass

from ..model import FinalState, Progress

ERROR_TYPE = "RecordCountMismatch"


@dataclass(frozen=True)
class RecordTally:
    """A record import's final figures. ``read`` comes from the reader's own numbering of the
    records (the cursor), the others from the accounting of what happened to each."""

    read: int
    accepted: int
    refused_by_vendor: int
    refused_locally: int
    unconfirmed: int = 0
    not_sent: int = 0

    @property
    def accounted(self) -> int:
        return self.accepted + self.refused_by_vendor + self.refused_locally + self.unconfirmed + self.not_sent

    def mismatch(self) -> str | None:
        """None when every record read is accounted for; else the sentence giving the numbers."""
        if self.read == self.accounted and min(self.read, self.accepted, self.refused_by_vendor,
                                               self.refused_locally, self.unconfirmed, self.not_sent) >= 0:
            return None
        not_sent = f" + {self.not_sent:,} not sent" if self.not_sent else ""
        return (f"record count mismatch: {self.read:,} records read from the file, but {self.accepted:,} "
                f"accepted + {self.refused_by_vendor:,} refused by the vendor + {self.refused_locally:,} "
                f"refused locally + {self.unconfirmed:,} unconfirmed{not_sent} = {self.accounted:,}; the import "
                f"cannot be trusted: check the vendor's data and the rejects file, then report this "
                f"fault")


def enforce(progress: Progress, tally: RecordTally | None) -> Progress:
    """A finished import whose tally does not add up ends FAILED with RecordCountMismatch (the
    vendor's own message is kept after the numbers)."""
    if not progress.done or tally is None:
        return progress
    problem = tally.mismatch()
    if problem is None:
        return progress
    progress.state = FinalState.FAILED
    progress.error_type = ERROR_TYPE
    progress.message = f"{problem} (the connector said: {progress.message})" if progress.message else problem
    return progress
