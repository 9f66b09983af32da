"""Named errors.

The class name is the error name Step Functions sees (Lambda reports ``errorType``), so the
ASL retries the transient ones by name and catches the rest into Finalize. Messages are
written for the user who reads the status record: what went wrong and what to do.
No message may contain a secret: connectors pass URLs through ``scrub`` first.
"""

from __future__ import annotations


class VendorImportError(Exception):
    """Base class. ``transient`` errors are retried by the state machine."""

    transient = False

    def __init__(self, message: str, *, detail: dict | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail or {}


class InputError(VendorImportError):
    """The upload or the console input cannot be imported as it is (fix the file or input)."""


class SettingsError(VendorImportError):
    """The vendor settings document is missing or invalid (fix the secret / settings file)."""


class VendorAuthError(VendorImportError):
    """The vendor refused our credentials (401/403 after one re-authentication)."""


class VendorRejectedError(VendorImportError):
    """The vendor refused the request or the job ended in failure; retrying will not help."""


class VendorUnavailableError(VendorImportError):
    """The vendor is down, timed out or answered 5xx: retried by the state machine."""

    transient = True


class VendorThrottledError(VendorUnavailableError):
    """The vendor answered 429 / rate limited: retried by the state machine with backoff."""


class VendorProtocolError(VendorImportError):
    """The vendor answered something the documented API does not allow (malformed body)."""


# Error names the state machine retries (kept in sync with statemachines/import.asl.json;
# a unit test checks it).
class VendorOutcomeUnknownError(VendorUnavailableError):
    """A request that may have reached the vendor got no readable answer (connection cut after
    sending). The retried step never sends those records again: it reports them UNCONFIRMED and
    goes on with the rest of the file, so every retry makes progress and the state machine can
    retry this one more often than a plain outage without sending anything twice."""


TRANSIENT_ERROR_NAMES = ("VendorUnavailableError", "VendorThrottledError", "VendorOutcomeUnknownError")


class RedirectRefused(VendorImportError):
    """A call carrying a secret (header, form body, presigned URL) was answered with a redirect to
    another host, or a POST was sent to a sign-in page: never followed, never retried."""


class ResponseTooLarge(VendorImportError):
    """A vendor answer was larger than the ``max_answer_bytes`` setting of its kind of call."""


# -- the documented list of error.type values ----------------------------------------------------------
# Every FAILED and TIMED_OUT status record carries ``error: {"type", "message"}`` with ``type`` from this
# list (README, "The status record and the SNS message"); it is also the SNS message attribute
# ``error_type``. The first seven are the classes above (an error raised by a step); the others name
# an outcome the vendor itself reported, or the end of the execution. The message carries the vendor's
# own words where the vendor gave any.
ERROR_TYPES: dict[str, str] = {
    "InputError": "the upload or the console input cannot be imported as it is",
    "SettingsError": "the vendor settings document is missing or invalid",
    "VendorAuthError": "the vendor refused the credentials",
    "VendorRejectedError": "the vendor refused a request; retrying will not help",
    "VendorUnavailableError": "the vendor stayed down, timed out or answered 5xx after the retries",
    "VendorThrottledError": "the vendor kept answering 429 after the retries",
    "VendorOutcomeUnknownError": "requests that may have reached the vendor kept getting no answer after the "
                                 "retries (their records are UNCONFIRMED rejects)",
    "VendorProtocolError": "the vendor answered something its documented API does not allow",
    "VendorJobFailed": "the vendor says the job failed (HOPEX reason ERROR, Campaign Failed or Aborted "
                       "more than max_resubmits times, simplement-e failure text)",
    "VendorRefusedAll": "the vendor refused every record (Cirrus Shield, AEP inlet)",
    "VendorSilent": "the vendor gave no sign of life about the job (simplement-e: no message)",
    "DeadlineExceeded": "TIMED_OUT: the job was still running past deadline_seconds, or the execution "
                        "timed out",
    "RecordCountMismatch": "records read != accepted + refused + unconfirmed at the end of a record import",
    "RedirectRefused": "a call carrying a secret was redirected; the redirect was not followed",
    "ResponseTooLarge": "a vendor answer was larger than the connector reads",
    "VendorOutage": "the target stayed paused by its circuit breaker (consecutive unavailable, throttled or "
                    "authentication failures) longer than pause_deadline_seconds",
    "ExecutionAborted": "the execution was stopped (StopExecution) before it finished",
    "InternalError": "anything else (a Lambda or Step Functions fault, a bug): the message starts with "
                     "the original error name",
}

# Step Functions / Lambda error names that mean "out of time" (a status record says DeadlineExceeded)
_TIMEOUT_NAMES = frozenset({"States.Timeout", "ExecutionTimedOut"})


def documented_error(name: str | None, message: str | None) -> tuple[str, str]:
    """Map any error name (an exception class, a Step Functions ``States.*`` name, an EventBridge
    execution status) to ``(type, message)`` with ``type`` in ``ERROR_TYPES``. A name outside the
    list becomes ``InternalError`` and the message keeps the original name in front."""
    name = (name or "").strip()
    message = (message or "").strip()
    if name in ERROR_TYPES:
        return name, message or ERROR_TYPES[name]
    if name in _TIMEOUT_NAMES:
        return "DeadlineExceeded", message or f"{name}: a step or the execution did not finish in time"
    label = name or "Error"
    return "InternalError", f"{label}: {message}" if message and not message.startswith(label) else (message or label)


class VendorOutage(VendorImportError):
    """The target stayed paused by the vendor guard's circuit breaker longer than the pause deadline
    (logic/guard.py): the import ends FAILED with error.type VendorOutage."""
