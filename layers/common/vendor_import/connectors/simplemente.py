"""simplement-e (Altazion) RAW flow import (seed 000, VENDORS.md section 1).

One upload = one RAW CSV file for one flow ("flux"). The vendor fetches the file itself:

* submit: check the RAW format locally (nothing is sent when a rule fails), presign a GET URL of
  the upload, ``PUT {base}/app/mediations/standard/{flux}`` with ``{"Url": "<presigned>"}``;
  the answer is a JSON-quoted GUID.
* poll: ``GET {base}/app/mediations/status/{guid}`` (tutorial) or ``.../{guid}/status``
  (reference), setting ``status_route``. ``IsCompleted`` is null for API submissions, so the end
  is read from the message texts (``*_patterns`` settings). ``Kind = 1`` messages are errors:
  they become the rejects. No message at all ``silence_seconds`` after the submission (and after
  ``silence_min_polls`` polls, because the local runner shortens waits) means the vendor's
  processing service is not running: the import ends FAILED.

Flux precedence: the ``flux`` option (key segment ``flux=...``, S3 metadata or console option)
wins over the first plain folder segment of the key (``inbox/simplemente/<flux>/file.csv``),
which wins over the ``default_flux`` setting.
"""

from __future__ import annotations

import base64
import json
import re
import time
import unicodedata
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ..errors import (
    InputError,
    SettingsError,
    VendorAuthError,
    VendorProtocolError,
    VendorRejectedError,
)
from ..http import body_snippet, json_body, raise_for_status, request
from ..model import FinalState, Progress, RawRejects, RejectRow
from ..scrub import register_secret, scrub, spreadsheet_cell
from ..settings import Field
from .base import Connector, StepContext
from .raw_csv import RULES, RawSummary, check_raw

STATUS_ROUTES = ("status/{guid}", "{guid}/status")
AUTH_SCHEMES = ("Basic", "basic:")

# Case-insensitive regular expressions searched in every message text (and Etat/EtatDetails).
# The real texts are not documented: these cover likely French and English wordings.
DEFAULT_FAILED_PATTERNS = (
    r"\b[ée]chec de l'import",
    r"\b(import|traitement|m[ée]diation|flux)\b[^.]{0,40}\b(en [ée]chec|a [ée]chou[ée]|[ée]chou[ée])",
    r"\b(import|processing|mediation)\b[^.]{0,40}\bfailed\b",
    r"\bfailed to (import|process)\b",
    r"\bimpossible de (t[ée]l[ée]charger|lire|ouvrir|r[ée]cup[ée]rer) le fichier",
    r"\b(unable|could not|cannot) (to )?(download|fetch|read|open) the file",
)
DEFAULT_FINISHED_WITH_ERRORS_PATTERNS = (
    r"\btermin[ée]e?s? avec (des |\d+ )?erreurs?",
    r"\b(finished|completed|done|ended) with (some |\d+ )?errors?",
)
DEFAULT_FINISHED_PATTERNS = (
    r"\b(import|traitement|m[ée]diation)\b[^.]{0,40}\btermin[ée]",
    r"^termin[ée]",
    r"\b(import|processing|mediation)\b[^.]{0,40}\b(finished|completed|done)\b",
    r"^(finished|completed)\b",
)
# Evidence that the vendor could NOT fetch the file (the only case the presigned-URL advice is for):
# a failure to download/fetch, or S3's own refusals. A message that the file was fetched
# ("Fichier récupéré : 5 lignes", "Lecture du fichier") is no such evidence.
_DOWNLOAD_FAILED = tuple(re.compile(p, re.IGNORECASE) for p in (
    r"\b(impossible de|[ée]chec (du|de la|de) |erreur (de|lors du|pendant le) |n'a pas pu |ne peut pas )"
    r"\s*(t[ée]l[ée]charg|r[ée]cup[ée]r|acc[ée]der|lire le fichier)",
    r"\b(t[ée]l[ée]chargement|r[ée]cup[ée]ration)\b[^.]{0,40}\b(impossible|en [ée]chec|[ée]chou[ée]|refus[ée]|erreur)",
    r"\b(unable|could not|couldn't|cannot|can't|failed) to (download|fetch|retrieve|get|read|access)\b",
    r"\b(download|fetch)(ing)?\b[^.]{0,40}\b(failed|refused|denied|forbidden|error)\b",
    r"\bHTTP 403\b|\b403 Forbidden\b|\bAccessDenied\b|\bRequest has expired\b|\bSignatureDoesNotMatch\b",
))

_URL_QUERY = re.compile(r"""(\bhttps?://[^\s?#"'<>]+)\?[^\s#"'<>]*""")

REJECTS_FILE = RawRejects(name="vendor-messages.csv", content_type="text/csv; charset=utf-8",
                          header='"Date";"Kind";"Message"\r\n')
REJECTS_FILE_HEADER = ["Date", "Kind", "Message"]
_TEXT_LIMIT = 500


@dataclass
class Message:
    date: str
    text: str
    error: bool


@dataclass
class MediationStatus:
    is_completed: bool | None
    messages: list[Message] = field(default_factory=list)
    etat: str = ""
    etat_details: str = ""

    @property
    def errors(self) -> list[Message]:
        return [m for m in self.messages if m.error]


@dataclass
class Patterns:
    failed: list[re.Pattern]
    finished_with_errors: list[re.Pattern]
    finished: list[re.Pattern]


@dataclass
class Outcome:
    state: FinalState | None  # None: still running
    because: str = ""  # the text that decided it


class SimplementeConnector(Connector):
    vendor = "simplemente"
    rejects_are_records = False  # the rejects are the vendor's error messages
    settings_fields = (
        Field("app_id", str, required=True,
              doc="id of the connected application (back-office: Paramètres > Extensibilité > "
                  "Application connectée)"),
        Field("secret", str, required=True, secret=True, doc="the connected application's secret key"),
        Field("auth_scheme", str, default="Basic", choices=AUTH_SCHEMES,
              doc='"Basic": standard "Authorization: Basic <b64>"; "basic:": the tutorial\'s '
                  '"Authorization: basic:<b64>"'),
        Field("content_type", str, default="text/json",
              doc="Content-Type of the submit call: text/json as the tutorial sends it (the SDK sends "
                  "application/json)"),
        Field("status_route", str, default="status/{guid}", choices=STATUS_ROUTES,
              doc="status route under app/mediations/: tutorial status/{guid} or reference {guid}/status"),
        Field("default_flux", str, default=None,
              doc="flux used when neither the flux option nor a folder of the key names one"),
        Field("presign_expiry_seconds", int, default=3600, minimum=60,
              doc="lifetime of the presigned URL the vendor downloads the file from"),
        Field("silence_seconds", (int, float), default=30, minimum=0,
              doc="no message at all this long after the submission: the processing service is down"),
        Field("silence_min_polls", int, default=3, minimum=1,
              doc="...and after at least this many polls (the local runner shortens waits)"),
        Field("finished_patterns", list, default=DEFAULT_FINISHED_PATTERNS,
              doc="regular expressions (case-insensitive) of a message that ends the import"),
        Field("finished_with_errors_patterns", list, default=DEFAULT_FINISHED_WITH_ERRORS_PATTERNS,
              doc="regular expressions of a message that ends the import with errors"),
        Field("failed_patterns", list, default=DEFAULT_FAILED_PATTERNS,
              doc="regular expressions of a message that says the import failed"),
        Field("rules_off", list, default=(), doc=f"RAW rules not checked, among {', '.join(RULES)}"),
        Field("rejects_file_messages", str, default="errors", choices=("errors", "all"),
              doc="messages written to the raw rejects file vendor-messages.csv"),
    )
    option_fields = (
        Field("flux", str, doc="name of the flow to import (the {flux} of app/mediations/standard/{flux})"),
    )

    def __init__(self, settings: dict[str, Any], session=None, *,
                 clock: Callable[[], float] = time.time):
        super().__init__(settings, session=session)
        self.clock = clock
        self.base = settings["base_url"].rstrip("/")
        self.rules_off = _rules_off(settings.get("rules_off") or ())
        self.patterns = Patterns(
            failed=_compile(settings, "failed_patterns", DEFAULT_FAILED_PATTERNS),
            finished_with_errors=_compile(settings, "finished_with_errors_patterns",
                                          DEFAULT_FINISHED_WITH_ERRORS_PATTERNS),
            finished=_compile(settings, "finished_patterns", DEFAULT_FINISHED_PATTERNS),
        )
        self._authorization = authorization_header(settings["app_id"], settings["secret"],
                                                   settings.get("auth_scheme") or "Basic")
        # the checked file's summary, per source object (validate then submit read it once)
        self._checked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # -- local checks ------------------------------------------------------------------------------
    def validate(self, ctx: StepContext) -> list[RejectRow]:
        self._flux(ctx)
        self._check(ctx)
        return []

    def _check(self, ctx: StepContext) -> RawSummary:
        try:
            return self._checked[ctx.source]
        except (KeyError, TypeError):
            pass
        with ctx.source.open() as stream:
            summary = check_raw(stream, self.rules_off)
        if [h.strip() for h in summary.header] == REJECTS_FILE_HEADER:
            raise InputError("this is the vendor-messages.csv rejects file of an earlier import, not a "
                             "RAW data file: fix the data file and upload that one instead")
        try:
            self._checked[ctx.source] = summary
        except TypeError:  # a source that cannot be weakly referenced: check again next time
            pass
        return summary

    def _flux(self, ctx: StepContext) -> str:
        flux = (ctx.options or {}).get("flux") or flux_from_key(getattr(ctx.source, "key", "") or "")
        flux = flux or self.settings.get("default_flux")
        if not flux or not str(flux).strip():
            raise InputError(
                "no flux (flow name) for this import: put the file under inbox/simplemente/flux=<name>/ "
                "or inbox/simplemente/<name>/, give a flux option (S3 metadata or console), or set "
                "default_flux in the simplemente settings")
        # a folder named on macOS arrives in NFD ("e" + combining accent): the back-office's flow
        # name is NFC, and the two look identical to a person but not to the vendor
        flux = unicodedata.normalize("NFC", str(flux)).strip()
        if flux in (".", "..") or any(c in flux for c in "/\\?#") or not flux.isprintable():
            raise InputError(f"flux {flux!r} is not a valid flow name: use the name of the flow as the "
                             "simplement-e back-office shows it (no / \\ ? # or control characters)")
        return flux

    # -- vendor calls ------------------------------------------------------------------------------
    def submit(self, ctx: StepContext) -> Progress:
        flux = self._flux(ctx)
        summary = self._check(ctx)
        if ctx.presign is None:
            raise SettingsError("simplemente needs a presigned URL of the upload, but this step has no "
                                "presigner (StepContext.presign)")
        expiry = int(self.settings.get("presign_expiry_seconds") or 3600)
        url = ctx.presign(expiry)
        what = f"submit of flux {flux!r}"
        resp = request(self.session, "PUT", f"{self.base}/app/mediations/standard/{quote(flux, safe='')}",
                       what=what, data=json.dumps({"Url": url}).encode("utf-8"),
                       headers=self._headers(content_type=True))
        self._raise_for_status(resp, what, not_found=f"the vendor has no flux {flux!r}: check the flow "
                               "name in the simplement-e back-office")
        guid = parse_guid(resp.content, what)
        job = {"guid": guid, "flux": flux, "submitted_at": self.clock(), "polls": 0,
               "records": summary.records}
        return Progress(job=job, vendor_ref=guid, counts=_counts(job),
                        message=f"simplement-e import {guid} of flux {flux!r} started "
                                f"({summary.records} records); the vendor downloads the file")

    def poll(self, job: dict[str, Any], ctx: StepContext) -> Progress:
        guid, flux = job["guid"], job["flux"]
        route = (self.settings.get("status_route") or STATUS_ROUTES[0]).format(guid=guid)
        what = f"status of import {guid}"
        resp = request(self.session, "GET", f"{self.base}/app/mediations/{route}", what=what,
                       headers=self._headers())
        self._raise_for_status(resp, what, not_found=f"the vendor does not know import {guid} on "
                               f"app/mediations/{self.settings.get('status_route')}: try the other "
                               f"status_route ({' or '.join(STATUS_ROUTES)})")
        status = parse_status(json_body(resp, what), what)
        job = {**job, "polls": int(job.get("polls", 0)) + 1}
        counts = _counts(job, status)
        outcome = decide(status, self.patterns)
        if outcome.state is None:
            silence = self._silence(job, status)
            if silence:
                return Progress(job=job, done=True, state=FinalState.FAILED, vendor_ref=guid,
                                counts=counts, message=silence, error_type="VendorSilent")
            last = status.messages[-1].text if status.messages else "no message yet"
            return Progress(job=job, vendor_ref=guid, counts=counts,
                            message=f"import {guid} of flux {flux!r} running: {_short(last)}")
        announced = announced_errors(outcome.because)
        if _wait_for_errors(outcome, status, announced) and not job.get("end_seen_at_poll"):
            # the end message is in, the error messages it announces may not all be: one more poll
            job["end_seen_at_poll"] = job["polls"]
            have = len(status.errors)
            return Progress(job=job, vendor_ref=guid, counts=counts,
                            message=f"import {guid} of flux {flux!r} ended with errors ({_short(outcome.because)}); "
                                    f"{have} error message{'s' if have != 1 else ''} listed so far"
                                    + (f" of {announced}" if announced is not None else "")
                                    + ": reading the status once more for the rest")
        rejects = [RejectRow(record=m.date or f"message {i}", reason=m.text, code="Kind=1")
                   for i, m in enumerate(status.messages, 1) if m.error]
        message = _final_message(outcome, status, guid, flux, self.settings)
        if announced is not None and len(status.errors) != announced:
            message += (f" (the end message announces {announced} error{'s' if announced != 1 else ''}; "
                        f"simplement-e listed {len(status.errors)})")
        return Progress(job=job, done=True, state=outcome.state, vendor_ref=guid, counts=counts,
                        message=message,
                        error_type="VendorJobFailed" if outcome.state is FinalState.FAILED else None,
                        rejects=rejects, **self._raw_rejects(status))

    # -- helpers -----------------------------------------------------------------------------------
    def _headers(self, *, content_type: bool = False) -> dict[str, str]:
        headers = {"Authorization": self._authorization, "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = self.settings.get("content_type") or "text/json"
        return headers

    def _raise_for_status(self, resp, what: str, *, not_found: str) -> None:
        if resp.status_code in (401, 403):
            raise VendorAuthError(
                f"{what}: simplement-e refused the credentials (HTTP {resp.status_code}): check app_id "
                "and secret (back-office: Paramètres > Extensibilité > Application connectée) and "
                f"auth_scheme ({' or '.join(AUTH_SCHEMES)}); Basic auth works over HTTPS only")
        if resp.status_code == 404:
            raise VendorRejectedError(f"{what}: HTTP 404, {not_found} {body_snippet(resp, 200)}".strip())
        raise_for_status(resp, what)

    def _silence(self, job: dict[str, Any], status: MediationStatus) -> str | None:
        """The tutorial: no message 30 s after the submission = the processing service is down."""
        if status.messages:
            return None
        waited = self.clock() - float(job.get("submitted_at") or 0)
        if waited < float(self.settings.get("silence_seconds", 30)):
            return None
        if int(job.get("polls", 0)) < int(self.settings.get("silence_min_polls", 3)):
            return None
        return (f"simplement-e gave no message about import {job['guid']} of flux {job['flux']!r} "
                f"{int(waited)} s and {job['polls']} polls after the submission: check that the "
                "processing service is running on the simplement-e server, then upload the file again")

    def _raw_rejects(self, status: MediationStatus) -> dict[str, Any]:
        everything = self.settings.get("rejects_file_messages") == "all"
        chosen = [m for m in status.messages if everything or m.error]
        if not chosen:
            return {}
        return {"raw_rejects": messages_csv(chosen), "raw_rejects_format": REJECTS_FILE}


# -- pure functions (unit tested) ------------------------------------------------------------------
def authorization_header(app_id: str, secret: str, scheme: str = "Basic") -> str:
    token = base64.b64encode(f"{app_id}:{secret}".encode()).decode("ascii")
    register_secret(token)  # "basic:<b64>" is not caught by scrub's header pattern
    return f"basic:{token}" if scheme == "basic:" else f"Basic {token}"


def flux_from_key(key: str, vendor: str = "simplemente") -> str | None:
    """The first plain (not name=value) folder segment after inbox/<vendor>/."""
    folders = [s for s in key.split("/")[:-1] if s]
    if vendor in folders:
        folders = folders[folders.index(vendor) + 1:]
    return next((s for s in folders if "=" not in s), None)


def parse_guid(body: bytes, what: str) -> str:
    """The submit answer: a JSON-serialised Guid ("3f2504e0-..."), a bare GUID is tolerated."""
    text = body.decode("utf-8", "replace").strip()
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    if isinstance(value, str):
        try:
            guid = uuid.UUID(value.strip())
        except ValueError:
            guid = None
        if guid is not None:
            if guid.int == 0:
                raise VendorRejectedError(f"{what}: the vendor answered the empty GUID: the import was "
                                          "not started (check the flux name and the vendor's logs)")
            return str(guid)
    raise VendorProtocolError(f"{what}: expected the import GUID as a JSON string, got: "
                              f"{scrub(_short(text, 120))}")


def parse_status(doc: Any, what: str) -> MediationStatus:
    """MediationStatus: IsCompleted (bool|null), Messages [{Date, Message, Kind}], optional Etat.
    Keys are read case-insensitively (ASP.NET Core answers camelCase)."""
    if not isinstance(doc, dict):
        raise VendorProtocolError(f"{what}: expected a MediationStatus object, got {type(doc).__name__}")
    fields = {str(k).lower(): v for k, v in doc.items()}
    completed = fields.get("iscompleted")
    if completed is not None and not isinstance(completed, bool):
        raise VendorProtocolError(f"{what}: IsCompleted must be true, false or null, got {completed!r}")
    raw_messages = fields.get("messages")
    raw_messages = [] if raw_messages is None else raw_messages
    if not isinstance(raw_messages, list):
        raise VendorProtocolError(f"{what}: Messages must be a list")
    messages = []
    for item in raw_messages:
        if not isinstance(item, dict):
            raise VendorProtocolError(f"{what}: a Messages entry is not an object: {_short(str(item))}")
        m = {str(k).lower(): v for k, v in item.items()}
        text = vendor_text(m.get("message"))
        message = Message(date=str(m.get("date") or ""), text=text, error=_is_error(m.get("kind")))
        if message not in messages:  # a message listed twice is one message (one reject, not two)
            messages.append(message)
    return MediationStatus(
        is_completed=completed, messages=messages,
        etat=vendor_text(fields.get("etat")), etat_details=vendor_text(fields.get("etatdetails")))


def vendor_text(value: Any) -> str:
    """A vendor text as we keep it: NFC-normalised (patterns match accents), secrets scrubbed,
    and URL query strings cut: a download error may quote the presigned URL, whose signature
    (X-Amz-Signature or SigV2 Signature) lets anyone read the upload until it expires."""
    text = unicodedata.normalize("NFC", str(value or ""))
    return scrub(_URL_QUERY.sub(r"\1?***", text))


def _is_error(kind: Any) -> bool:
    """MediationMessageKind: Information = 0, Error = 1 (as a number or, with a string enum
    converter, as its name)."""
    if isinstance(kind, bool):
        return False
    if isinstance(kind, (int, float)):
        return int(kind) == 1
    return str(kind).strip().lower() in ("1", "error")


def decide(status: MediationStatus, patterns: Patterns) -> Outcome:
    """Has the import ended, and how? IsCompleted when the vendor sets it, else the texts."""
    texts = [m.text for m in status.messages] + [t for t in (status.etat, status.etat_details) if t]
    failed = _first_match(texts, patterns.failed)
    if status.is_completed is False:
        return Outcome(None)
    if status.is_completed is True:
        if failed:
            return Outcome(FinalState.FAILED, failed)
        if status.errors:
            return Outcome(FinalState.SUCCEEDED_WITH_REJECTS, status.errors[0].text)
        return Outcome(FinalState.SUCCEEDED, texts[-1] if texts else "IsCompleted is true")
    if failed:
        return Outcome(FinalState.FAILED, failed)
    with_errors = _first_match(texts, patterns.finished_with_errors)
    if with_errors:
        return Outcome(FinalState.SUCCEEDED_WITH_REJECTS, with_errors)
    finished = _first_match(texts, patterns.finished)
    if finished:
        state = FinalState.SUCCEEDED_WITH_REJECTS if status.errors else FinalState.SUCCEEDED
        return Outcome(state, finished)
    return Outcome(None)


_ANNOUNCED = re.compile(r"(?i)\b(\d+)\s+(?:erreurs?|errors?)\b")


def announced_errors(text: str) -> int | None:
    """The number of errors an end message announces ("terminé avec 3 erreurs", "completed with 2
    errors"); None when it gives no number."""
    found = _ANNOUNCED.search(text or "")
    return int(found.group(1)) if found else None


def _wait_for_errors(outcome: Outcome, status: MediationStatus, announced: int | None) -> bool:
    """An end read from the texts that announces errors is final only once those errors are
    listed: the vendor may write its error messages after the end message. IsCompleted true is
    the vendor's own word and is not waited on."""
    if status.is_completed is True or outcome.state is not FinalState.SUCCEEDED_WITH_REJECTS:
        return False
    if announced is None:
        return True  # "finished with errors", no number: the list may still grow
    return len(status.errors) < announced


def _first_match(texts: list[str], patterns: list[re.Pattern]) -> str:
    for text in reversed(texts):  # the latest message says the most about the end
        if any(p.search(text) for p in patterns):
            return text
    return ""


def messages_csv(messages: list[Message]) -> bytes:
    """Rows of the vendor messages file: "Date";"Kind";"Message", RAW-style (; quoted, CRLF). People
    open it in a spreadsheet: formula starts and control characters are neutralised (OWASP)."""
    def cell(value: str) -> str:
        return '"' + spreadsheet_cell(value).replace('"', '""') + '"'
    return "".join(f"{cell(m.date)};{1 if m.error else 0};{cell(m.text)}\r\n"
                   for m in messages).encode("utf-8")


def _final_message(outcome: Outcome, status: MediationStatus, guid: str, flux: str,
                   settings: dict[str, Any]) -> str:
    errors = len(status.errors)
    head = f"simplement-e import {guid} of flux {flux!r}"
    if outcome.state is FinalState.FAILED:
        advice = ""
        if download_failed(status):
            advice = (f"; the vendor could not download the file: the presigned URL may have expired "
                      f"before the fetch (presign_expiry_seconds is "
                      f"{settings.get('presign_expiry_seconds')}) or the vendor cannot reach S3")
        return f"{head} failed: {_short(outcome.because)}{advice}"
    if outcome.state is FinalState.SUCCEEDED_WITH_REJECTS:
        return (f"{head} finished with {errors} error message{'s' if errors != 1 else ''}: "
                f"{_short(outcome.because)}")
    return f"{head} finished: {_short(outcome.because)}"


def download_failed(status: MediationStatus) -> bool:
    """Did the vendor say it could not fetch the file? Errors (Kind = 1) and the status texts
    only: an information message never is that evidence."""
    texts = [m.text for m in status.messages if m.error] + [t for t in (status.etat, status.etat_details) if t]
    return any(p.search(text) for text in texts for p in _DOWNLOAD_FAILED)


def _counts(job: dict[str, Any], status: MediationStatus | None = None) -> dict[str, int]:
    """No ``rejected``: the vendor reports messages, not rows (how many rows an error message
    covers is not documented, seed 000), so the errors are counted as ``error_messages``."""
    counts = {"records": int(job.get("records", 0)), "sent": int(job.get("records", 0))}
    if status is not None:
        counts["error_messages"] = len(status.errors)
        counts["messages"] = len(status.messages)
    return counts


def _short(text: str, limit: int = _TEXT_LIMIT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _rules_off(values: Any) -> frozenset[str]:
    names = []
    for i, name in enumerate(values):
        if name not in RULES:
            raise SettingsError(f"setting rules_off[{i}] is {name!r}: expected one of {', '.join(RULES)}")
        names.append(name)
    return frozenset(names)


def _compile(settings: dict[str, Any], name: str, default: tuple[str, ...]) -> list[re.Pattern]:
    values = settings.get(name)
    values = default if values is None else values
    compiled = []
    for i, pattern in enumerate(values):
        if not isinstance(pattern, str):
            raise SettingsError(f"setting {name}[{i}] must be a string (a regular expression)")
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            raise SettingsError(f"setting {name}[{i}] is not a valid regular expression: {exc}") from None
    return compiled
