"""Keep secrets out of everything we write: logs, errors, status records, SNS messages."""

from __future__ import annotations

import logging
import re
import threading

_lock = threading.Lock()
_secrets: set[str] = set()

# Query parameters that carry credentials in vendor URLs (Cirrus puts them in the URL).
_QUERY_SECRET = re.compile(
    r"(?i)([?&](?:authtoken|password|username|token|access_token|client_secret|secret|sig|"
    r"x-amz-signature|x-amz-credential|x-amz-security-token|signature|awsaccesskeyid)=)[^&\s\"'#]*"
)
_AUTH_HEADER = re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(basic|bearer)\s+[^\s\"',}]+")

MASK = "***"


def register_secret(value: str | None) -> None:
    """Remember a secret value; values shorter than 4 characters are too common to mask."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def scrub(text: object) -> str:
    s = str(text)
    s = _QUERY_SECRET.sub(r"\1" + MASK, s)
    s = _AUTH_HEADER.sub(r"\1\2 " + MASK, s)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in s:
            s = s.replace(secret, MASK)
    return s


def scrub_obj(obj):
    """Scrub every string inside a JSON-like structure."""
    if isinstance(obj, str):
        return scrub(obj)
    if isinstance(obj, dict):
        return {k: scrub_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub_obj(v) for v in obj]
    return obj


class ScrubFilter(logging.Filter):
    """Logging filter: formats the message then scrubs it (installed on every logger we use)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the line
            message = str(record.msg)
        record.msg = scrub(message)
        record.args = ()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
            record.msg = f"{record.msg} ({type(exc).__name__})"
            # powertools' JSON formatter reads only exc_info: give it the scrubbed traceback under
            # the keys it would have written, or the traceback never reaches CloudWatch
            record.exception = record.exc_text
            record.exception_name = type(exc).__name__
        return True
