"""Vendor settings: one JSON document per vendor, same schema in Secrets Manager and locally.

Each connector declares its fields with ``Field``; ``COMMON_FIELDS`` apply to every vendor.
Validation names the field and what is wrong with it. Values of ``secret`` fields are
registered with ``scrub`` so they can never reach a log line, an error or a status record.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from .errors import InputError, SettingsError
from .polling import MAX_WAIT_SECONDS
from .scrub import register_secret

_MISSING = object()
# No setting means anything beyond this; numbers past it (or inf/nan, which JSON parsers accept)
# would overflow the arithmetic that uses them.
LARGEST_NUMBER = 10**15
DEADLINE_MAX_SECONDS = 366 * 86_400  # a year: Step Functions' longest Standard execution, for the whole chain


@dataclass(frozen=True)
class Field:
    name: str
    type: type | tuple[type, ...] = str
    required: bool = False
    default: Any = None
    choices: tuple | None = None
    secret: bool = False
    doc: str = ""
    minimum: float | None = None
    maximum: float | None = None  # the largest value that fits (an AWS limit or a loop bound)
    why_maximum: str = ""
    fields: tuple[Field, ...] | None = None  # for nested objects (type=dict)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _type_name(t: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "a whole number", float: "a number", bool: "true or false",
             dict: "an object", list: "a list"}
    if isinstance(t, tuple):
        return " or ".join(names.get(x, x.__name__) for x in t)
    return names.get(t, t.__name__)


def validate_fields(doc: Any, fields: tuple[Field, ...], where: str) -> dict[str, Any]:
    """Return a new dict with defaults filled; raise SettingsError naming the bad field."""
    if not isinstance(doc, dict):
        raise SettingsError(f"{where or 'settings'} must be a JSON object")
    known = {f.name for f in fields}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise SettingsError(
            f"unknown setting {where}{unknown[0]!s}: expected one of {', '.join(sorted(known))}"
        )
    out: dict[str, Any] = {}
    for f in fields:
        path = f"{where}{f.name}"
        value = doc.get(f.name, _MISSING)
        if value is _MISSING or value is None:
            if f.required:
                raise SettingsError(f"missing setting {path}: {f.doc or _type_name(f.type)}")
            out[f.name] = (
                validate_fields({}, f.fields, f"{path}.") if f.fields and f.default is None
                else f.default
            )
            continue
        allowed = f.type if isinstance(f.type, tuple) else (f.type,)
        # bool before the int->float widening: True is an int to Python, not a number to a user
        if isinstance(value, bool) and bool not in allowed:
            raise SettingsError(f"setting {path} must be {_type_name(f.type)}, not true/false")
        if float in allowed and int not in allowed and isinstance(value, int):
            value = float(value)
        if not isinstance(value, allowed):
            raise SettingsError(f"setting {path} must be {_type_name(f.type)}")
        if f.choices is not None and isinstance(value, str) and value not in f.choices:
            # "atend" means "AtEnd": users type option values in keys and metadata by hand
            value = next((c for c in f.choices if isinstance(c, str) and c.lower() == value.lower()), value)
        if f.choices is not None and value not in f.choices:
            raise SettingsError(
                f"setting {path} must be one of {', '.join(map(str, f.choices))}, not {value!r}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise SettingsError(f"setting {path} must be a finite number, not {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > LARGEST_NUMBER:
            raise SettingsError(f"setting {path} must be at most {_number(f.maximum or LARGEST_NUMBER)}")
        if f.minimum is not None and value < f.minimum:
            raise SettingsError(f"setting {path} must be at least {f.minimum}")
        if f.maximum is not None and value > f.maximum:
            raise SettingsError(f"setting {path} must be at most {_number(f.maximum)}"
                                + (f" ({f.why_maximum})" if f.why_maximum else ""))
        if isinstance(value, str) and f.required and not value.strip():
            raise SettingsError(f"setting {path} must not be empty")
        if f.fields:
            value = validate_fields(value, f.fields, f"{path}.")
        if f.secret and isinstance(value, str):
            register_secret(value)
        out[f.name] = value
    return out


POLL_FIELDS = (
    Field("first_wait_seconds", int, default=5, minimum=1, maximum=MAX_WAIT_SECONDS,
          why_maximum="the longest single wait of the poll loop",
          doc="wait before the first poll"),
    Field("max_wait_seconds", int, default=300, minimum=1, maximum=MAX_WAIT_SECONDS,
          why_maximum="the longest single wait of the poll loop",
          doc="cap of the backoff between two polls"),
    Field("factor", float, default=2.0, minimum=1.0, doc="backoff multiplier between polls"),
)

ANSWER_FIELDS = (
    Field("api", int, default=16 * 1024 * 1024, minimum=1024,
          doc="bytes of one API answer (token, submit, status, results of a batch)"),
    Field("rejects", int, default=128 * 1024 * 1024, minimum=1024,
          doc="bytes of a vendor rejects file or message list (streamed to S3, not held in memory)"),
)

COMMON_FIELDS = (
    Field("vendor", str, required=True, doc="the vendor id this document is for"),
    Field("base_url", str, required=True, doc="the vendor API root URL"),
    Field("timeout_seconds", (int, float), default=30, minimum=1,
          doc="bound of every HTTP call, whole (connect, send, answer read to its last byte)"),
    Field("verify_tls", bool, default=True, doc="verify the vendor's TLS certificate"),
    Field("ca_bundle_pem", str, doc="PEM text of the CA certificate(s) to trust for this vendor "
                                    "(on-premise servers signed by an internal CA)"),
    Field("max_answer_bytes", dict, default=None, fields=ANSWER_FIELDS,
          doc="largest vendor answer read, per kind of call (ResponseTooLarge above it)"),
    Field("allow_http", bool, default=False,
          doc="allow a plain http:// base_url (simulators, on-premise); off by default"),
    Field("deadline_seconds", int, default=86400, minimum=1, maximum=DEADLINE_MAX_SECONDS,
          why_maximum="a year of polling, across continued executions",
          doc="an import still running after this many seconds of waiting ends TIMED_OUT"),
    Field("poll", dict, default=None, fields=POLL_FIELDS, doc="backoff of the poll loop"),
    # the vendor guard (logic/guard.py); no vendor document states a concurrency limit, so none
    # applies unless set (docs/vendors/<vendor>.md suggests values, opt-in)
    Field("max_concurrent_imports", int, default=0, minimum=0, maximum=10_000,
          why_maximum="the guard item keeps its holders in one DynamoDB item (400 KB)",
          doc="imports of this target talking to the vendor at once; the others wait QUEUED and start "
              "in upload order (0: no limit, the default: no vendor document states one)"),
    Field("one_import_per_lane", bool, default=None,
          doc="one import at a time per Campaign mapping / simplement-e flux (default: true for Campaign, "
              "seed 001 'Ingestion request already in progress for the Mapping ID'; false for simplement-e, "
              "whose document states no such rule)"),
    Field("queue_check_seconds", int, default=30, minimum=5, maximum=300,
          why_maximum="a waiter far back checks at least every 300 s (logic/guard.py QUEUE_CHECK_MAX_SECONDS)",
          doc="how often the import next in line checks for a free slot (further back: less often)"),
    Field("breaker_failures", int, default=5, minimum=1,
          doc="consecutive unavailable / throttled / authentication failures that pause the target"),
    Field("breaker_cooldown_seconds", int, default=60, minimum=1, maximum=86_400,
          why_maximum="one Wait state",
          doc="wait before the first probe of a paused target; doubled after each failed probe"),
    Field("breaker_max_cooldown_seconds", int, default=900, minimum=1, maximum=86_400,
          why_maximum="one Wait state", doc="cap of that backoff"),
    Field("pause_deadline_seconds", int, default=21600, minimum=1, maximum=DEADLINE_MAX_SECONDS,
          why_maximum="a year of waiting, across continued executions",
          doc="an import waiting this long on a paused target ends FAILED (error.type VendorOutage)"),
)


def validate_settings(doc: Any, vendor: str, vendor_fields: tuple[Field, ...]) -> dict[str, Any]:
    """Validate a whole settings document for ``vendor``."""
    if isinstance(doc, (str, bytes)):
        try:
            doc = json.loads(doc)
        except ValueError as exc:
            raise SettingsError(f"settings for {vendor} are not valid JSON: {exc}") from None
    settings = validate_fields(doc, COMMON_FIELDS + vendor_fields, "")
    if settings["vendor"] != vendor:
        raise SettingsError(
            f"setting vendor is {settings['vendor']!r} but this document is used for {vendor!r}"
        )
    base = settings["base_url"]
    if not base.startswith(("https://", "http://")):
        raise SettingsError("setting base_url must start with https://")
    if base.startswith("http://") and not settings["allow_http"]:
        raise SettingsError(
            "setting base_url uses plain http://: use https://, or set allow_http to true "
            "(simulators and on-premise servers only)"
        )
    settings["base_url"] = base.rstrip("/")
    return settings


# -- targets: several named systems of one vendor in one document --------------------------------------
DEFAULT_TARGET = "default"
TARGET_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _parsed(doc: Any, vendor: str) -> Any:
    if isinstance(doc, (str, bytes)):
        try:
            return json.loads(doc)
        except ValueError as exc:
            raise SettingsError(f"settings for {vendor} are not valid JSON: {exc}") from None
    return doc


def target_names(doc: Any) -> list[str]:
    """The target names a settings document defines, sorted: ``["default"]`` for the single-target
    form ``{"vendor": ..., "base_url": ...}``, the keys of ``targets`` for the multi-target form
    ``{"vendor": ..., "targets": {"<name>": {<settings without vendor>}, ...}}``.
    Raises SettingsError when ``targets`` is not an object of well-named targets."""
    doc = _parsed(doc, "this vendor")
    if not isinstance(doc, dict) or "targets" not in doc:
        return [DEFAULT_TARGET]
    targets = doc["targets"]
    if not isinstance(targets, dict) or not targets:
        raise SettingsError("setting targets must be an object of target names to settings (at least one)")
    for name in targets:
        if not TARGET_NAME.fullmatch(name):
            raise SettingsError(f"target name {name[:80]!r} must be 1-64 letters, digits, - or _")
    return sorted(targets)


def target_settings(doc: Any, vendor: str, target: str = DEFAULT_TARGET) -> dict[str, Any]:
    """The settings document of one target (not yet validated: ``validate_settings`` does), with
    ``vendor`` in it. A single-target document is target ``default``; in the multi-target form
    nothing but ``vendor`` and ``targets`` may sit at the top (a shared field would be ambiguous).
    Raises InputError for a target the document does not define (the upload chose it; the
    message names the known ones), SettingsError for a malformed document."""
    doc = _parsed(doc, vendor)
    names = target_names(doc)
    if target not in names:
        raise InputError(f"unknown target {target[:80]!r} for {vendor}: the settings define "
                         f"{', '.join(names)}")
    if "targets" not in doc:
        return doc
    extra = sorted(set(doc) - {"vendor", "targets"})
    if extra:
        raise SettingsError(f"setting {extra[0]} sits beside targets: put it inside each target")
    one = doc["targets"][target]
    if not isinstance(one, dict):
        raise SettingsError(f"setting targets.{target} must be a JSON object")
    if "vendor" in one and one["vendor"] != doc.get("vendor"):
        raise SettingsError(f"setting targets.{target}.vendor differs from the document's vendor")
    return {"vendor": doc.get("vendor"), **one}
