"""Cirrus Shield REST API simulator (seed 004): AuthToken and DataAction.

Conventions (what decides an outcome):

* ``GET /RestApi/AuthToken?Username=&password=``: 200 with the token as a JSON-quoted string
  (``"abc..."``); 404 for an unknown user, 401 for a wrong password.
* ``POST /RestApi/DataAction/<object>?authToken&action&matchingFieldName&useExternalId``:
  401 ``{"Message": ...}`` for an unknown or expired token; 400 ``{"Message": ...}`` when the
  action is not insert/update/upsert/delete, matchingFieldName is missing, or the body is
  empty / not XML / not ``<Data>``. The body is read like ASP.NET Web API reads a
  ``[FromBody] string`` from ``application/x-www-form-urlencoded``: the value of the unnamed
  field (``=<urlencoded xml>``; ``body_field="xmlData"`` to expect a named one instead). A raw
  ``+`` therefore arrives as a space, exactly the pitfall the seed describes.
* Per record (one answer element per record, in order): it fails with
  "Some of the Lookup Fields contain invalid values" when any field value contains
  ``INVALID``; with "The matching field <F> is missing" when the matching field is absent or
  empty; on update/delete when no stored record has that matching value. If any record
  fails the answer is 400 with the per-record results (as the seed says), else 200.
* Answers echo each record's fields plus ``<Success>TRUE|FALSE</Success>``, ``<GUID>`` and
  ``<ErrorMessage>`` (laid out on their own lines like the seed's example). JSON when the
  Accept header asks for it; one record then gives an object instead of a list (the
  XML-to-JSON quirk Myddleware normalises).

Sources of each behaviour (seed 004 = the DataAction page; V5 = VENDORS.md section 5):

* AuthToken as a GET with Username/password in the query, 200 with the token, 404 unknown user:
  V5 "Token" [DOC]; the JSON-quoted token string: V5 [CODE] (C#, Python, Myddleware clients).
  401 for a wrong password: not documented (the page names only 404); this simulator's choice.
* DataAction URL, its four parameters, useExternalId defaulting to true: seed 004 "Paramètres URL".
* The body: seed 004 names the data parameter ``xmlData``; both public clients send it unnamed
  (``=<urlencoded xml>``, V5 "Body encoding pitfall" [CODE]). Which one the server binds is not
  documented: ``body_field`` switches ("" unnamed, the default, or "xmlData").
* The lost ``+`` of a datetime sent without urlencode(): seed 004 (the 2017-06-12 15:40:47+02 example).
* One answer element per record, in order, with Success and ErrorMessage; 200 when all succeed,
  400 "si un enregistrement ou plus n'ont pas pu être insérés"; 401 for a bad token; 400 for no
  object or action: seed 004 "Réponse de succès" / "Réponse d'erreur". The GUID field and the
  ``<Object>`` element name: V5 "Response" [CODE]. Success spelled TRUE/FALSE (seed example) or
  True/False (Myddleware): ``success_values`` switches; the element named after the record or
  ``Object``: ``result_element`` switches.
* The failure text "Some of the Lookup Fields contain invalid values": seed 004's example answer.
  "The matching field <F> is missing" and the update/delete of an unknown record are not
  documented: this simulator's wording.
* JSON when asked (Accept), one record giving an object: V5 "JSON support" [INFER] and "Response"
  [CODE Myddleware]. Errors as ``{"Message": ...}``: V5 "Response" [CODE].
* What makes a record fail (a value holding ``INVALID``) is a test convention, not vendor
  behaviour. Token lifetime and batch limits are not documented (V5): ``token_max_uses``.

Knobs: ``token_max_uses`` (a token expires after N DataAction calls: re-auth tests),
``success_values`` (e.g. ("True", "False")), ``result_element`` ("Object" to answer
``<Object>`` per record), ``body_field``. ``received`` holds every decoded record (object,
action, fields) so tests can check values such as a datetime's ``+``; ``store`` the records
by object and matching value.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, unquote

from lxml import etree

from .base import DemoCase, Reply, Request, Simulator

USERNAME = "import@cirrus.local"
PASSWORD = "cirrus-sim-password"
ACTIONS = ("insert", "update", "upsert", "delete")
INVALID_LOOKUP = "Some of the Lookup Fields contain invalid values"

DEMO_CASES = [
    DemoCase(
        title="clean upsert of accounts (options from key segments)",
        file="events/files/cirrus/accounts-clean.xml",
        key="inbox/cirrus/object=Account/action=upsert/matching_field=Name/accounts-clean.xml",
        expect="SUCCEEDED",
    ),
    DemoCase(
        title="accounts with a few invalid lookups (options from the settings' objects.Account)",
        file="events/files/cirrus/accounts-with-rejects.xml",
        key="inbox/cirrus/accounts-with-rejects.xml",
        expect="SUCCEEDED_WITH_REJECTS",
    ),
    DemoCase(
        title="every account refused by Cirrus Shield (options from S3 metadata)",
        file="events/files/cirrus/accounts-all-fail.xml",
        key="inbox/cirrus/accounts-all-fail.xml",
        expect="FAILED",
        metadata={"action": "upsert", "matching_field": "Name"},
    ),
]


def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _local(tag: Any) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


class CirrusSimulator(Simulator):
    vendor = "cirrus"

    def __init__(self, *, users: dict[str, str] | None = None, body_field: str = "",
                 token_max_uses: int | None = None, success_values: tuple[str, str] = ("TRUE", "FALSE"),
                 result_element: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.users = dict(users or {USERNAME: PASSWORD})
        self.body_field = body_field
        self.token_max_uses = token_max_uses
        self.success_values = success_values
        self.result_element = result_element
        self.tokens: dict[str, int] = {}  # token -> DataAction calls made with it
        self.tokens_issued = 0
        self.received: list[dict[str, Any]] = []  # every decoded record, in arrival order
        self.store: dict[str, dict[str, dict[str, str]]] = {}  # object -> matching value -> fields
        self.data_actions = 0
        self.data_action_times: list[float] = []  # when each DataAction came (time.monotonic(): shared rates)
        self.records_received = 0  # counted even when the records are not kept (record_bodies)
        self._guids = itertools.count(2458939956261816452)

    def settings(self) -> dict[str, Any]:
        return {
            "vendor": "cirrus",
            "base_url": self.base_url,
            "allow_http": True,
            "timeout_seconds": 10,
            "username": USERNAME,
            "password": PASSWORD,
            "batch_size": 5,
            "safety_margin_seconds": 5,
            "objects": {"Account": {"action": "upsert", "matching_field": "Name", "use_external_id": True}},
            "poll": {"first_wait_seconds": 1, "max_wait_seconds": 5, "factor": 2.0},
        }

    def revoke_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    def received_values(self, field_name: str) -> list[str]:
        with self._lock:
            return [r["fields"].get(field_name, "") for r in self.received]

    # ------------------------------------------------------------------------------------------
    def handle(self, req: Request) -> Reply:
        path = unquote(req.path)
        if req.method == "GET" and path == "/RestApi/AuthToken":
            return self._auth(req)
        if req.method == "POST" and path.startswith("/RestApi/DataAction/"):
            return self._data_action(req, path[len("/RestApi/DataAction/"):])
        return Reply(404, {"Message": f"No HTTP resource was found that matches the request URI '{path}'."})

    def _auth(self, req: Request) -> Reply:
        user = _first(req.query, "Username")
        password = _first(req.query, "password")
        if user not in self.users:
            return Reply(404, {"Message": "User not found"})
        if password != self.users[user]:
            return Reply(401, {"Message": "Invalid password"})
        token = secrets.token_hex(16)
        with self._lock:
            self.tokens[token] = 0
            self.tokens_issued += 1
        return Reply(200, json.dumps(token), {"Content-Type": "application/json; charset=utf-8"})

    def _data_action(self, req: Request, obj: str) -> Reply:
        token = _first(req.query, "authToken")
        with self._lock:
            uses = self.tokens.get(token)
            if uses is None or (self.token_max_uses is not None and uses >= self.token_max_uses):
                self.tokens.pop(token, None)
                return Reply(401, {"Message": "Authorization has been denied for this request."})
            self.tokens[token] = uses + 1
        action = _first(req.query, "action").lower()
        matching = _first(req.query, "matchingFieldName")
        use_external_id = _first(req.query, "useExternalId", "true").lower() != "false"
        if not obj:
            return Reply(400, {"Message": "The object name is required"})
        if action not in ACTIONS:
            return Reply(400, {"Message": f"Invalid action '{action}'"})
        if not matching:
            return Reply(400, {"Message": "The matchingFieldName parameter is required"})
        if not req.header("Content-Type").lower().startswith("application/x-www-form-urlencoded"):
            return Reply(415, {"Message": "The request entity's media type "
                                          f"'{req.header('Content-Type')}' is not supported for this resource."})
        xml = self._form_value(req.body)
        if not xml:
            return Reply(400, {"Message": "The xmlData parameter is empty"})
        try:
            root = etree.fromstring(xml.encode("utf-8"), _safe_parser())
        except etree.XMLSyntaxError as exc:
            return Reply(400, {"Message": f"The XML data is not valid: {exc.msg}"})
        if _local(root.tag) != "Data" or len(root) == 0:
            return Reply(400, {"Message": "The XML data must be <Data> with one element per record"})
        with self._lock:
            self.data_actions += 1
            self.data_action_times.append(time.monotonic())
            outcomes = [self._apply(obj, action, matching, use_external_id, rec) for rec in root
                        if isinstance(rec.tag, str)]
        status = 400 if any(not ok for ok, *_ in outcomes) else 200
        if "json" in req.header("Accept").lower():
            return self._json_answer(status, outcomes)
        return self._xml_answer(status, outcomes)

    def _form_value(self, body: bytes) -> str:
        """ASP.NET form binding of a [FromBody] string: '+' is a space, %XX decoded as UTF-8."""
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        return next((value for name, value in pairs if name == self.body_field), "")

    def _apply(self, obj: str, action: str, matching: str, use_external_id: bool,
               rec: etree._Element) -> tuple[bool, str, str, str, dict[str, str]]:
        tag = _local(rec.tag)
        fields = {_local(c.tag): (c.text or "").strip() for c in rec if isinstance(c.tag, str)}
        self.records_received += 1
        if self.record_bodies:  # benchmarks turn it off: memory stays flat
            self.received.append({"object": obj, "action": action, "fields": fields,
                                  "use_external_id": use_external_id})
        key = fields.get(matching, "")
        table = self.store.setdefault(obj, {})
        if any("INVALID" in v for v in fields.values()):
            return False, "", INVALID_LOOKUP, tag, fields
        if not key:
            return False, "", f"The matching field {matching} is missing", tag, fields
        existing = table.get(key)
        if action in ("update", "delete") and existing is None:
            return False, "", f"No {obj} record has {matching} = {key}", tag, fields
        if action == "delete":
            del table[key]
            return True, existing["GUID"], "", tag, fields
        guid = existing["GUID"] if existing and action != "insert" else str(next(self._guids))
        kept = {**fields, "GUID": guid} if self.record_bodies else {"GUID": guid}
        table[key if action != "insert" or key not in table else f"{key}#{guid}"] = kept
        return True, guid, "", tag, fields

    def _xml_answer(self, status: int, outcomes: list) -> Reply:
        true, false = self.success_values
        parts = ["<Data>"]
        for ok, guid, error, tag, fields in outcomes:
            name = self.result_element or tag
            parts.append(f"<{name}>")
            for field_name, value in fields.items():
                parts.append(f"<{field_name}>{_esc(value)}</{field_name}>")
            parts.append(f"<Success>\n{true if ok else false}\n</Success>")
            parts.append(f"<GUID>{guid}</GUID>" if guid else "<GUID />")
            parts.append(f"<ErrorMessage>\n{_esc(error)}\n</ErrorMessage>" if error else "<ErrorMessage />")
            parts.append(f"</{name}>")
        parts.append("</Data>")
        return Reply(status, "\n".join(parts), {"Content-Type": "application/xml; charset=utf-8"})

    def _json_answer(self, status: int, outcomes: list) -> Reply:
        true, false = self.success_values
        items = [{**fields, "Success": true if ok else false, "GUID": guid or None, "ErrorMessage": error or None}
                 for ok, guid, error, _tag, fields in outcomes]
        name = self.result_element or outcomes[0][3]
        return Reply(status, {"Data": {name: items[0] if len(items) == 1 else items}})


def _first(query: dict[str, list[str]], name: str, default: str = "") -> str:
    for key, values in query.items():
        if key.lower() == name.lower() and values:
            return values[0]
    return default


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
