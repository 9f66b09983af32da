"""simplement-e (Altazion) mediation API simulator, following seed 000 (tutorial "Importer un flux
en mode RAW via API") and VENDORS.md section 1.

Routes (all need ``Authorization: Basic <b64 app_id:secret>``; the tutorial's ``basic:<b64>`` is
accepted too, unless ``strict_auth`` is set; anything else answers 401):

* ``PUT /app/mediations/standard/{flux}``  body ``{"Url": "..."}`` with a JSON Content-Type
  (application/json or text/json, else 415). Answers a JSON-quoted GUID. A background thread
  fetches the URL with a real HTTP GET after ``fetch_delay`` seconds (like the vendor server does).
* ``GET /app/mediations/status/{guid}``     tutorial route: ``{"IsCompleted", "Messages"}``
* ``GET /app/mediations/{guid}/status``     reference route: the richer MediationStatus
  (DefinitionLibelle, MediationGuid, Debut, Etat, EtatDetails, IsCompleted, Messages).
  ``Etat`` values (EnAttente, EnCours, Termine, TermineAvecErreurs, Echec) are this simulator's
  invention: the real ones are not documented.

Sources of each behaviour (seed 000 = the RAW-via-API tutorial, V1 = VENDORS.md section 1):

* Basic auth with the app id and secret: seed 000 / V1 "Auth"; the tutorial's ``basic:<b64>`` form
  [DOC] next to the standard ``Basic`` of the Hub doc and SDK: both accepted, ``strict_auth``
  switches to the standard form only (which the server takes is open question 1). The 401 body
  is ASP.NET Web API's usual one, not documented.
* ``PUT app/mediations/standard/{flux}`` with ``{"Url"}``, answering a JSON-quoted GUID: seed 000 /
  V1 "Submit". Content type: the tutorial sends text/json, the SDK application/json (V1 "Auth"):
  both accepted. The 415, 404 (unknown flux) and 400 (no Url) answers are not documented.
* The vendor fetches the file from the URL: seed 000 / V1 "Submit" [DOC].
* Two status routes, ``status/{guid}`` (tutorial) and ``{guid}/status`` (reference, richer body):
  V1 "Poll"; which one works for API submissions is open question 1: both are served.
* ``IsCompleted`` not set for API submissions, set for mediation runs: seed 000
  (``report_is_completed`` switches); the first poll usually empty and no message after 30 s
  meaning the processing service is down: seed 000; Kind 0 = information, 1 = error: V1 "Poll".

Message texts: seed 000 gives none ("il vous faudra analyser le texte des messages", and VENDORS.md
section 1: "No enumerated status strings are documented ... must be learned empirically"). Every
text below is this simulator's invention, held in a ``Texts`` (``texts=`` switches them; ``OTHER_TEXTS``
is a second, English set that none of the connector's default patterns matches). The connector reads
them through its documented ``*_patterns`` settings, which ``settings(texts=...)`` fills in.

How the fetched file decides the messages (durations count in status requests, not seconds):

* every status request before the fetch finished, and the first ``empty_polls`` after it, shows
  an empty message list; each later request reveals one more group of messages:
  "Début du traitement du flux X", "Lecture du fichier : N lignes", then the errors, then the end;
* clean file: ends with "Import terminé : N lignes importées";
* lines containing ``ERREUR`` or ``INVALID``: one Kind=1 message per line ("Ligne N : valeur
  invalide ..."), then "Import terminé avec erreurs : ...";
* ``FAIL-FLOW`` anywhere: Kind=1 "Erreur fatale ..." then "Échec de l'import du flux X";
* ``SILENT`` anywhere: never any message (the processing service is down);
* the download fails (403 of an expired presigned URL, connection refused...): Kind=1
  "Impossible de télécharger le fichier <url> : HTTP 403", then "Échec de l'import du flux X".

The download is a real HTTP GET (``http_fetch``). A runner whose S3 is moto in-process (no
server) plugs ``fetch=s3_client_fetch(s3_client)`` instead, which reads the object through boto3
and still answers 403 for an expired URL.

``IsCompleted`` is null, as the tutorial says it is for API submissions; with
``report_is_completed=True`` it is false while running and true at the end (mediation runs).
"""

from __future__ import annotations

import base64
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .base import DemoCase, Reply, Request, Simulator

APP_ID = "sim-app"
SECRET = "sim-secret-5e3b"

_PUT = re.compile(r"^/app/mediations/standard/(?P<flux>[^/]+)$")
_STATUS_TUTORIAL = re.compile(r"^/app/mediations/status/(?P<guid>[^/]+)$")
_STATUS_REFERENCE = re.compile(r"^/app/mediations/(?P<guid>[^/]+)/status$")

DEMO_CASES = [
    DemoCase("clean RAW file: imported", file="events/files/simplemente/articles-clean.csv",
             key="inbox/simplemente/flux=articles/articles-clean.csv", expect="SUCCEEDED"),
    DemoCase("RAW file with invalid rows: error messages become rejects",
             file="events/files/simplemente/articles-with-errors.csv",
             key="inbox/simplemente/flux=articles/articles-with-errors.csv",
             expect="SUCCEEDED_WITH_REJECTS"),
    DemoCase("file not in RAW format: refused locally, nothing sent",
             file="events/files/simplemente/articles-bad-format.csv",
             key="inbox/simplemente/flux=articles/articles-bad-format.csv", expect="FAILED"),
    DemoCase("the vendor fails the flow (flux given as S3 metadata)",
             file="events/files/simplemente/articles-fail-flow.csv",
             key="inbox/simplemente/articles-fail-flow.csv", expect="FAILED",
             metadata={"flux": "articles"}),
]


@dataclass(frozen=True)
class Texts:
    """The message texts of one import, as ``str.format`` templates (seed 000 documents none).
    ``patterns`` are the connector settings (regular expressions) that recognise the end texts."""

    start: str
    read: str
    row_error: str
    finished: str
    finished_with_errors: str
    fatal: str
    failed: str
    download_failed: str
    patterns: dict[str, list[str]] = field(default_factory=dict)


DEFAULT_TEXTS = Texts(
    start="Début du traitement du flux {flux}",
    read="Lecture du fichier : {rows} lignes",
    row_error="Ligne {line} : valeur invalide, l'enregistrement est ignoré",
    finished="Import terminé : {rows} lignes importées",
    finished_with_errors="Import terminé avec erreurs : {ok} lignes importées, {bad} lignes en erreur",
    fatal="Erreur fatale lors du traitement du flux {flux} : la médiation a été interrompue",
    failed="Échec de l'import du flux {flux}",
    download_failed="Impossible de télécharger le fichier {url} : {reason}",
    patterns={"finished_patterns": [r"^Import terminé :"],
              "finished_with_errors_patterns": [r"^Import terminé avec erreurs"],
              "failed_patterns": [r"^Échec de l'import", r"^Impossible de télécharger"]},
)
# A second plausible wording (English, no "import"/"terminé"/"failed"/"échec"): the connector's
# default patterns recognise none of its end texts.
OTHER_TEXTS = Texts(
    start="Flow {flux}: processing started",
    read="{rows} rows read",
    row_error="Row {line} rejected: bad value",
    finished="Flow {flux}: {rows} rows integrated, end of run",
    finished_with_errors="Flow {flux}: {ok} rows integrated, {bad} rows in error, end of run",
    fatal="Flow {flux}: fatal error, run stopped",
    failed="Flow {flux}: run aborted",
    download_failed="File {url} could not be retrieved ({reason})",
    patterns={"finished_patterns": [r"rows integrated, end of run$"],
              "finished_with_errors_patterns": [r"rows in error, end of run$"],
              "failed_patterns": [r"run aborted$", r"could not be retrieved"]},
)


@dataclass
class _Import:
    guid: str
    flux: str
    url: str
    started: str
    fetched: bool = False
    groups: list[list[dict[str, Any]]] = field(default_factory=list)  # revealed one per poll
    outcome: str = "EnAttente"  # Etat once every group is revealed
    polls_after_fetch: int = 0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _message(text: str, kind: int = 0) -> dict[str, Any]:
    return {"Date": _now(), "Message": text, "Kind": kind}


def http_fetch(url: str) -> tuple[int, bytes]:
    """A real HTTP GET, as the vendor server does (no credentials: the URL is presigned)."""
    if not url.startswith(("http://", "https://")):
        return 0, b""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - http(s) checked above
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (urllib.error.URLError, OSError):
        return 0, b""


def s3_client_fetch(s3_client) -> Callable[[str], tuple[int, bytes]]:
    """A fetcher for a runner whose S3 is in-process (moto's mock_aws): reads the object a presigned
    URL names through ``s3_client`` instead of the network, and answers 403 once the URL has
    expired, as S3 does. Plug it in with ``fetch=``."""

    def fetch(url: str) -> tuple[int, bytes]:
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if _expired(query):
            return 403, b""
        host, path = parts.hostname or "", unquote(parts.path.lstrip("/"))
        if ".s3" in host and not host.startswith("s3"):  # virtual-hosted style: bucket.s3...
            bucket, key = host.split(".s3", 1)[0], path
        else:  # path style: s3.../bucket/key (moto server, custom endpoints)
            bucket, _, key = path.partition("/")
        try:
            return 200, s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception:  # noqa: BLE001 - any S3 error is a failed download for the vendor
            return 404, b""

    return fetch


def _expired(query: dict[str, str]) -> bool:
    """SigV4 (X-Amz-Date + X-Amz-Expires) or SigV2 (Expires, epoch seconds) presigned URL."""
    now = datetime.now(UTC)
    signed_at, lifetime = query.get("X-Amz-Date"), query.get("X-Amz-Expires")
    if signed_at and lifetime:
        start = datetime.strptime(signed_at, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        return (now - start).total_seconds() > int(lifetime)
    if query.get("Expires"):
        return now.timestamp() > int(query["Expires"])
    return False


class SimplementeSimulator(Simulator):
    vendor = "simplemente"

    def __init__(self, *, empty_polls: int = 1, fetch_delay: float = 0.05,
                 report_is_completed: bool = False, strict_auth: bool = False,
                 known_fluxes: set[str] | None = None,
                 fetch: Callable[[str], tuple[int, bytes]] = http_fetch, texts: Texts = DEFAULT_TEXTS,
                 **kwargs):
        super().__init__(**kwargs)
        self.texts = texts  # undocumented by the vendor: switchable (module docstring)
        self.empty_polls = empty_polls
        self.fetch_delay = fetch_delay
        self.report_is_completed = report_is_completed
        self.strict_auth = strict_auth  # only the standard "Basic <b64>" form
        self.known_fluxes = known_fluxes  # None: every flux exists
        self.fetch = fetch  # the local runner may plug a fetcher that reads moto's S3
        self.imports: dict[str, _Import] = {}
        self._fetchers: list[threading.Thread] = []

    # -- settings ----------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Connector settings for this simulator; the ``*_patterns`` recognise ``self.texts``."""
        return {
            **{name: list(values) for name, values in self.texts.patterns.items()},
            "vendor": "simplemente",
            "base_url": self.base_url,
            "allow_http": True,
            "timeout_seconds": 10,
            "app_id": APP_ID,
            "secret": SECRET,
            "silence_seconds": 2,
            "silence_min_polls": 3,
            "poll": {"first_wait_seconds": 2, "max_wait_seconds": 10, "factor": 1.5},
        }

    # -- routing -----------------------------------------------------------------------------------
    def handle(self, req: Request) -> Reply:
        if not self._authorized(req):
            return Reply(401, {"Message": "Authorization has been denied for this request."},
                         {"WWW-Authenticate": 'Basic realm="simplement-e"'})
        if req.method == "PUT" and (m := _PUT.match(req.path)):
            return self._submit(req, unquote(m["flux"]))
        if req.method == "GET":
            for route, rich in ((_STATUS_TUTORIAL, False), (_STATUS_REFERENCE, True)):
                if m := route.match(req.path):
                    return self._status(m["guid"], rich)
        return Reply(404, {"Message": f"No HTTP resource was found that matches {req.path}"})

    def _authorized(self, req: Request) -> bool:
        header = req.header("Authorization").strip()
        schemes = ("basic ",) if self.strict_auth else ("basic ", "basic:")
        token = header[6:].strip() if header[:6].lower() in schemes else ""
        if not token:
            return False
        try:
            user, _, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
        except ValueError:
            return False
        return user == APP_ID and password == SECRET

    # -- PUT standard/{flux} -----------------------------------------------------------------------
    def _submit(self, req: Request, flux: str) -> Reply:
        content_type = req.header("Content-Type").split(";")[0].strip().lower()
        if content_type not in ("application/json", "text/json"):
            return Reply(415, {"Message": f"The request entity's media type '{content_type}' is not "
                                          "supported for this resource."})
        if self.known_fluxes is not None and flux not in self.known_fluxes:
            return Reply(404, {"Message": f"Flux '{flux}' inconnu"})
        try:
            body = req.json()
        except ValueError:
            body = None
        url = body.get("Url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url:
            return Reply(400, {"Message": "Url est obligatoire"})
        imp = _Import(guid=str(uuid.uuid4()), flux=flux, url=url, started=_now())
        with self._lock:
            self.imports[imp.guid] = imp
        self.job_started(imp.guid, flux)  # concurrent imports (base.Simulator)
        worker = threading.Thread(target=self._fetch_and_plan, args=(imp,), daemon=True,
                                  name=f"sim-simplemente-fetch-{imp.guid[:8]}")
        self._fetchers.append(worker)
        worker.start()
        return Reply(200, f'"{imp.guid}"', {"Content-Type": "application/json; charset=utf-8"})

    def _fetch_and_plan(self, imp: _Import) -> None:
        time.sleep(self.fetch_delay)
        status, content = self.fetch(imp.url)
        texts = self.texts
        if status == 200:
            groups, outcome = plan_messages(imp.flux, content, texts)
        else:
            reason = f"HTTP {status}" if status else "connexion impossible"
            groups = [[_message(texts.download_failed.format(url=imp.url, reason=reason), 1)],
                      [_message(texts.failed.format(flux=imp.flux), 1)]]
            outcome = "Echec"
        with self._lock:
            imp.groups, imp.outcome, imp.fetched = groups, outcome, True

    def wait_fetched(self, timeout: float = 5.0) -> None:
        """Tests: wait until every background download has finished."""
        for worker in list(self._fetchers):
            worker.join(timeout)

    # -- GET status --------------------------------------------------------------------------------
    def _status(self, guid: str, rich: bool) -> Reply:
        with self._lock:
            imp = self.imports.get(guid.lower())
            if imp is None:
                return Reply(404, {"Message": f"Médiation {guid} introuvable"})
            if imp.fetched:
                imp.polls_after_fetch += 1
            shown = max(0, imp.polls_after_fetch - self.empty_polls) if imp.fetched else 0
            shown = min(shown, len(imp.groups))
            messages = [m for group in imp.groups[:shown] for m in group]
            ended = imp.fetched and imp.outcome != "Silence" and shown == len(imp.groups)
        if ended:
            self.job_ended(imp.guid)
        completed = (ended if self.report_is_completed else None)
        body: dict[str, Any] = {"IsCompleted": completed, "Messages": messages}
        if rich:
            etat = imp.outcome if ended else ("EnCours" if messages else "EnAttente")
            body = {"DefinitionLibelle": f"Import standard {imp.flux}", "DefinitionStandardGuid": None,
                    "DefinitionGuid": str(uuid.uuid5(uuid.NAMESPACE_URL, imp.flux)),
                    "MediationGuid": imp.guid, "Debut": imp.started, "Etat": etat,
                    "EtatDetails": "", **body}
        return Reply(200, body)


def plan_messages(flux: str, content: bytes, texts: Texts = DEFAULT_TEXTS) -> tuple[list[list[dict[str, Any]]], str]:
    """Message groups (one revealed per poll) and the final Etat, decided by the file. Seed 000:
    the first poll is usually empty, Kind 1 = error; the texts and their order are invented."""
    text = content.decode("utf-8", "replace")
    if "SILENT" in text:  # seed 000: no message after 30 s means the processing service is down
        return [], "Silence"
    lines = [line for line in re.split(r"\r\n|\n", text) if line.strip()]
    rows = lines[1:]
    groups = [[_message(texts.start.format(flux=flux))],
              [_message(texts.read.format(rows=len(rows)))]]
    if "FAIL-FLOW" in text:
        groups.append([_message(texts.fatal.format(flux=flux), 1)])
        groups.append([_message(texts.failed.format(flux=flux), 1)])
        return groups, "Echec"
    bad = [n for n, line in enumerate(rows, 2) if "ERREUR" in line or "INVALID" in line]
    if bad:
        groups.append([_message(texts.row_error.format(line=n), 1) for n in bad])
        groups.append([_message(texts.finished_with_errors.format(flux=flux, ok=len(rows) - len(bad),
                                                                  bad=len(bad)))])
        return groups, "TermineAvecErreurs"
    groups.append([_message(texts.finished.format(flux=flux, rows=len(rows)))])
    return groups, "Termine"
