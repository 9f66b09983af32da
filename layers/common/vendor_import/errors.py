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
TRANSIENT_ERROR_NAMES = ("VendorUnavailableError", "VendorThrottledError")


class RedirectRefused(VendorImportError):
    """A call carrying a secret (header, form body, presigned URL) was answered with a redirect to
    another host, or a POST was sent to a sign-in page: never followed, never retried."""


class ResponseTooLarge(VendorImportError):
    """A vendor answer was larger than the ``max_answer_bytes`` setting of its kind of call."""
