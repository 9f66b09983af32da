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


# -- text for people: terminals, e-mail readers and spreadsheets ------------------------------------
# C0 and C1 controls, DEL, Unicode line/paragraph separators and bidi overrides: each could start a
# new line, move the cursor (ANSI escapes) or reorder what a reader sees
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}


def neutralise(text: object) -> str:
    """``text`` on one line, every control character shown escaped (``\\n``, ``\\x1b``,
    ``\\u202e``): a file name or a vendor message cannot forge lines or colours where people read
    it (e-mail text, CSV cells, CLI tables)."""
    def escape(m: re.Match[str]) -> str:
        ch = m.group(0)
        return _NAMED.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
    return _CONTROL.sub(escape, str(text))


# OWASP "CSV Injection": a cell starting with one of these is read as a formula by spreadsheets
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: object) -> str:
    """A cell a spreadsheet shows as text: control characters escaped, and a leading ``'`` when the
    value starts with ``= + - @`` (or tab / CR), as OWASP recommends
    (https://owasp.org/www-community/attacks/CSV_Injection)."""
    text = str(value)
    if text.startswith(_FORMULA_START):
        text = "'" + text
    return neutralise(text)
