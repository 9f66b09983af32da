"""``s3-vendor-import provision-aep --settings F [--spec F]``: from nothing to a working AEP inlet.

Walks the Flow Service steps of seed 003 (and the HTTP API streaming tutorial), each idempotent:
an object is looked up by name first (GET with ``property=name==...``, or ``title`` for the
schema) and created only when missing, so running the command twice creates nothing new and
prints the same ids.

1. streaming base connection  POST /data/foundation/flowservice/connections
   (connectionSpec bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb, auth.specName "Streaming Connection",
   auth.params.dataType raw|xdm, auth.params.authenticationRequired), then GET it for the
   ``inletUrl`` / ``inletId``;
2. source connection          POST /flowservice/sourceConnections (baseConnectionId), GET it;
3. target XDM schema          POST /data/foundation/schemaregistry/tenant/schemas;
4. dataset                    POST /data/foundation/catalog/dataSets?requestDataSource=true;
5. target connection          POST /flowservice/targetConnections
   (connectionSpec c604ff05-7f1a-43c0-8e18-33bf874cb11c, params.dataSetId);
6. mapping set                POST /data/foundation/conversion/mappingSets (mapping sets have no
   name: an existing one with the same schema and mappings is reused);
7. flow spec                  GET /flowservice/flowSpecs?property=name=="Steam data with transformation";
8. dataflow                   POST /flowservice/flows.

Every call sends ``Authorization: Bearer`` (an IMS OAuth Server-to-Server token), ``x-api-key``,
``x-gw-ims-org-id``, ``x-sandbox-name`` and ``Content-Type: application/json``.

Output (stdout, JSON): ``settings`` holds the fields to paste into the ``aep`` vendor settings
(base_url, inlet_id, flow_id, message_mode...), ``objects`` every id, ``created`` / ``found`` what
this run did. Progress lines go to stderr. Adobe asks to wait about 5 minutes after a dataflow is
created or updated before sending data to it.

The settings document (--settings) holds the credentials and, unless --spec is given, the
spec (names, schema, dataset, mapping). An ``aep`` vendor settings document (``"vendor": "aep"``)
can be used as --settings with the spec in --spec: its connector-only fields are ignored.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from urllib.parse import quote

import requests

from ..errors import InputError, SettingsError, VendorImportError, VendorProtocolError
from ..http import json_body, new_session, raise_for_status, request
from ..scrub import scrub
from ..settings import Field, validate_fields
from .adobe_ims import DEFAULT_TOKEN_URL, ImsTokenProvider
from .aep import DEFAULT_SCOPES

STREAMING_CONNECTION_SPEC = "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb"
DATALAKE_CONNECTION_SPEC = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"
STREAMING_PROVIDER_ID = "521eee4d-8cbe-4906-bb48-fb6bd4450033"
FLOW_SPEC_NAME = "Steam data with transformation"  # sic: Adobe's spelling
SCHEMA_CONTENT_TYPE = "application/vnd.adobe.xed-full-notext+json; version=1"
PROFILE_CLASS = "https://ns.adobe.com/xdm/context/profile"
DEFAULT_FIELD_GROUPS = ("https://ns.adobe.com/xdm/context/profile-person-details",
                        "https://ns.adobe.com/xdm/context/profile-personal-details")
WAIT_NOTE = ("Adobe asks to wait about 5 minutes after a dataflow is created or updated before sending "
             "data to its inlet.")

_IMS_FIELDS = (
    Field("token_url", str, default=DEFAULT_TOKEN_URL, doc="Adobe IMS token endpoint (v3)"),
    Field("client_id", str, required=True, doc="OAuth Server-to-Server client id"),
    Field("client_secret", str, required=True, secret=True, doc="OAuth Server-to-Server client secret"),
    Field("scopes", str, default=DEFAULT_SCOPES, doc="comma-separated scopes"),
)
_NAMES_FIELDS = (
    Field("connection", str, doc="streaming base connection (default: name)"),
    Field("source_connection", str, doc="source connection (default: '<name> source')"),
    Field("target_connection", str, doc="target connection (default: '<name> target')"),
    Field("dataflow", str, doc="dataflow (default: '<name> dataflow')"),
)
_SCHEMA_FIELDS = (
    Field("title", str, required=True, doc="title of the target XDM schema (looked up by it)"),
    Field("description", str, default="", doc="schema description"),
    Field("class", str, default=PROFILE_CLASS, doc="XDM class ($id) the schema implements"),
    Field("field_groups", list, default=list(DEFAULT_FIELD_GROUPS),
          doc="$id of the field groups (mixins) the schema is composed of"),
)
_DATASET_FIELDS = (
    Field("name", str, required=True, doc="dataset name (looked up by it)"),
    Field("profile", bool, default=False, doc="enable the dataset for Real-Time Customer Profile"),
    Field("identity", bool, default=False, doc="enable the dataset for Identity Service"),
)
CREDENTIAL_FIELDS = (
    Field("platform_base_url", str, default="https://platform.adobe.io", doc="Platform API root"),
    Field("ims", dict, required=True, fields=_IMS_FIELDS, doc="IMS OAuth Server-to-Server credential"),
    Field("api_key", str, doc="x-api-key (default: ims.client_id)"),
    Field("ims_org_id", str, required=True, doc="IMS organization id (...@AdobeOrg)"),
    Field("sandbox_name", str, default="prod", doc="sandbox the objects are created in"),
    Field("timeout_seconds", (int, float), default=30, minimum=1, doc="timeout of every call"),
    Field("verify_tls", bool, default=True, doc="verify TLS certificates"),
    Field("allow_http", bool, default=False, doc="allow http:// URLs (simulators only)"),
)
SPEC_FIELDS = (
    Field("name", str, doc="base name of the objects (connection, source/target connection, dataflow)"),
    Field("names", dict, default=None, fields=_NAMES_FIELDS, doc="explicit object names"),
    Field("description", str, default="created by s3-vendor-import provision-aep", doc="descriptions"),
    Field("data_type", str, default="raw", choices=("raw", "xdm"),
          doc="raw: records as they are, mapped by Data Prep; xdm: records in the XDM envelope"),
    Field("authenticated", bool, default=False, doc="create an authenticated inlet"),
    Field("schema", dict, required=True, fields=_SCHEMA_FIELDS, doc="the target XDM schema"),
    Field("dataset", dict, required=True, fields=_DATASET_FIELDS, doc="the target dataset"),
    Field("mapping", list, required=True, doc="[{source, destination}] Data Prep mappings"),
    Field("flow_spec_name", str, default=FLOW_SPEC_NAME, doc="flow spec looked up by name"),
)
PROVISION_FIELDS = CREDENTIAL_FIELDS + SPEC_FIELDS


def load_provision_settings(doc: dict[str, Any], spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge the settings document and the optional spec, and validate them."""
    if not isinstance(doc, dict):
        raise SettingsError("the provisioning settings must be a JSON object")
    doc = dict(doc)
    if doc.get("vendor") is not None:  # an aep vendor settings document: keep what applies
        if doc["vendor"] != "aep":
            raise SettingsError(f"setting vendor is {doc['vendor']!r}: provision-aep needs aep settings")
        known = {f.name for f in PROVISION_FIELDS}
        doc = {k: v for k, v in doc.items() if k in known}
    if spec:
        if not isinstance(spec, dict):
            raise SettingsError("the --spec document must be a JSON object")
        doc.update(spec)
    settings = validate_fields(doc, PROVISION_FIELDS, "")
    for key in ("platform_base_url",):
        url = settings[key].rstrip("/")
        if not url.startswith(("https://", "http://")):
            raise SettingsError(f"setting {key} must start with https://")
        if url.startswith("http://") and not settings["allow_http"]:
            raise SettingsError(f"setting {key} uses plain http://: use https://, or set allow_http")
        settings[key] = url
    names = settings["names"] or {}
    base = settings.get("name") or names.get("connection")
    if not base:
        raise SettingsError("missing setting name: the base name of the objects to create")
    settings["names"] = {
        "connection": names.get("connection") or base,
        "source_connection": names.get("source_connection") or f"{base} source",
        "target_connection": names.get("target_connection") or f"{base} target",
        "dataflow": names.get("dataflow") or f"{base} dataflow",
    }
    settings["mapping"] = _mappings(settings["mapping"])
    if not all(isinstance(g, str) and g for g in settings["schema"]["field_groups"]):
        raise SettingsError("setting schema.field_groups must be a list of field group $id strings")
    return settings


def _mappings(items: list[Any]) -> list[dict[str, Any]]:
    out = []
    for i, m in enumerate(items, 1):
        if not isinstance(m, dict):
            raise SettingsError(f"setting mapping[{i}] must be an object {{source, destination}}")
        source = m.get("source") or m.get("sourceAttribute")
        destination = m.get("destination") or m.get("destinationXdmPath")
        if not (isinstance(source, str) and source and isinstance(destination, str) and destination):
            raise SettingsError(f"setting mapping[{i}] needs a source and a destination")
        out.append({"destinationXdmPath": destination, "sourceAttribute": source,
                    "identity": bool(m.get("identity", False)), "version": 0})
    if not out:
        raise SettingsError("setting mapping must list at least one {source, destination} pair")
    return out


def _mapping_key(mappings: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(str(m.get("sourceAttribute")), str(m.get("destinationXdmPath"))) for m in mappings or []}


class Provisioner:
    """The provisioning steps, one method each; ``run()`` returns the printed result."""

    def __init__(self, settings: dict[str, Any], session: requests.Session | None = None,
                 log=None):
        self.s = settings
        self.session = session or new_session(settings)
        self.ims = ImsTokenProvider.from_settings(self.session, settings["ims"])
        self.root = f"{settings['platform_base_url']}/data/foundation"
        self.created: list[str] = []
        self.found: list[str] = []
        self._log = log or (lambda line: print(line, file=sys.stderr))

    # -- HTTP -------------------------------------------------------------------------------------
    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        s = self.s
        headers = {
            "Authorization": f"Bearer {self.ims.token()}",
            "x-api-key": s.get("api_key") or s["ims"]["client_id"],
            "x-gw-ims-org-id": s["ims_org_id"],
            "x-sandbox-name": s["sandbox_name"],
            "Accept": "application/json",
        }
        headers.update(extra or {})
        return headers

    def _call(self, method: str, path: str, what: str, *, body: Any = None,
              accept: str | None = None) -> Any:
        url = f"{self.root}/{path}"
        extra = {"Accept": accept} if accept else {}
        kwargs: dict[str, Any] = {}
        if body is not None:
            extra["Content-Type"] = "application/json"
            kwargs["data"] = json.dumps(body)
        for attempt in (1, 2):
            resp = request(self.session, method, url, what=what, headers=self._headers(extra), **kwargs)
            if resp.status_code == 401 and attempt == 1:
                self.ims.invalidate()  # one re-authentication
                continue
            raise_for_status(resp, what)
            return json_body(resp, what)
        raise AssertionError("unreachable")

    @staticmethod
    def _filter(name: str, value: str) -> str:
        return f"property={quote(f'{name}=={json.dumps(value)}', safe='=')}"

    def _note(self, kind: str, name: str, oid: str, created: bool) -> None:
        (self.created if created else self.found).append(kind)
        self._log(f"{kind} {name!r}: {'created' if created else 'found'} {oid}")

    # -- steps -----------------------------------------------------------------------------------
    def _find_flowservice(self, kind: str, name: str) -> dict | None:
        body = self._call("GET", f"flowservice/{kind}?{self._filter('name', name)}", f"list {kind}")
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise VendorProtocolError(f"list {kind}: expected an items list")
        matches = [i for i in items if isinstance(i, dict) and i.get("name") == name]
        return matches[0] if matches else None

    def _get_item(self, kind: str, oid: str) -> dict:
        body = self._call("GET", f"flowservice/{kind}/{quote(oid)}", f"get {kind} {oid}")
        items = body.get("items") if isinstance(body, dict) else None
        if not items or not isinstance(items[0], dict):
            raise VendorProtocolError(f"get {kind} {oid}: expected items[0]")
        return items[0]

    def connection(self) -> tuple[str, dict]:
        s, name = self.s, self.s["names"]["connection"]
        found = self._find_flowservice("connections", name)
        if found:
            oid = found["id"]
            self._note("connection", name, oid, False)
        else:
            params: dict[str, Any] = {"sourceId": name, "dataType": s["data_type"], "name": name}
            if s["authenticated"]:
                params["authenticationRequired"] = True
            body = {"name": name, "providerId": STREAMING_PROVIDER_ID, "description": s["description"],
                    "connectionSpec": {"id": STREAMING_CONNECTION_SPEC, "version": "1.0"},
                    "auth": {"specName": "Streaming Connection", "params": params}}
            oid = self._call("POST", "flowservice/connections", "create the streaming connection",
                             body=body)["id"]
            self._note("connection", name, oid, True)
        conn = self._get_item("connections", oid)
        params = (conn.get("auth") or {}).get("params") or {}
        if found and (params.get("dataType") != s["data_type"]
                      or bool(params.get("authenticationRequired")) != s["authenticated"]):
            self._log(f"warning: connection {name!r} exists with dataType={params.get('dataType')} "
                      f"authenticationRequired={bool(params.get('authenticationRequired'))}; it is kept "
                      "as it is (use another name for a different inlet)")
        return oid, params

    def source_connection(self, connection_id: str) -> tuple[str, dict]:
        s, name = self.s, self.s["names"]["source_connection"]
        found = self._find_flowservice("sourceConnections", name)
        if found:
            oid = found["id"]
            self._note("source connection", name, oid, False)
        else:
            body = {"name": name, "providerId": STREAMING_PROVIDER_ID, "description": s["description"],
                    "baseConnectionId": connection_id, "data": {"format": "json"},
                    "connectionSpec": {"id": STREAMING_CONNECTION_SPEC, "version": "1.0"}}
            oid = self._call("POST", "flowservice/sourceConnections", "create the source connection",
                             body=body)["id"]
            self._note("source connection", name, oid, True)
        return oid, self._get_item("sourceConnections", oid).get("params") or {}

    def schema(self) -> dict:
        spec = self.s["schema"]
        title = spec["title"]
        accept = "application/vnd.adobe.xed-id+json"
        body = self._call("GET", f"schemaregistry/tenant/schemas?{self._filter('title', title)}",
                          "list schemas", accept=accept)
        results = body.get("results") if isinstance(body, dict) else None
        match = next((r for r in results or [] if isinstance(r, dict) and r.get("title") == title), None)
        if match:
            self._note("schema", title, match["$id"], False)
            return match
        created = self._call("POST", "schemaregistry/tenant/schemas", "create the XDM schema", body={
            "type": "object", "title": title, "description": spec["description"] or title,
            "allOf": [{"$ref": spec["class"]}] + [{"$ref": g} for g in spec["field_groups"]],
            "meta:containerId": "tenant", "meta:resourceType": "schemas", "meta:xdmType": "object",
            "meta:class": spec["class"],
        })
        if not isinstance(created, dict) or "$id" not in created:
            raise VendorProtocolError("create the XDM schema: the answer has no $id")
        self._note("schema", title, created["$id"], True)
        return created

    def dataset(self, schema_id: str) -> str:
        spec = self.s["dataset"]
        name = spec["name"]
        body = self._call("GET", f"catalog/dataSets?{self._filter('name', name)}", "list datasets")
        if isinstance(body, dict):
            for oid, ds in body.items():
                if isinstance(ds, dict) and ds.get("name") == name:
                    self._note("dataset", name, oid, False)
                    return oid
        tags = {}  # the tag names of seed 003 (newer docs call them unifiedIdentity/unifiedProfile)
        if spec["identity"]:
            tags["identity"] = ["enabled:true"]
        if spec["profile"]:
            tags["profile"] = ["enabled:true"]
        payload: dict[str, Any] = {"name": name, "schemaRef": {"id": schema_id, "contentType": SCHEMA_CONTENT_TYPE},
                                   "fileDescription": {"format": "parquet"}}
        if tags:
            payload["tags"] = tags
        answer = self._call("POST", "catalog/dataSets?requestDataSource=true", "create the dataset",
                            body=payload)
        if not (isinstance(answer, list) and answer and isinstance(answer[0], str)):
            raise VendorProtocolError("create the dataset: expected [\"@/dataSets/{id}\"]")
        oid = answer[0].rsplit("/", 1)[-1]
        self._note("dataset", name, oid, True)
        return oid

    def target_connection(self, dataset_id: str, schema_id: str) -> str:
        s, name = self.s, self.s["names"]["target_connection"]
        found = self._find_flowservice("targetConnections", name)
        if found:
            self._note("target connection", name, found["id"], False)
            return found["id"]
        body = {"name": name, "description": s["description"],
                "connectionSpec": {"id": DATALAKE_CONNECTION_SPEC, "version": "1.0"},
                "data": {"format": "parquet_xdm", "schema": {"id": schema_id, "version": SCHEMA_CONTENT_TYPE}},
                "params": {"dataSetId": dataset_id}}
        oid = self._call("POST", "flowservice/targetConnections", "create the target connection",
                         body=body)["id"]
        self._note("target connection", name, oid, True)
        return oid

    def mapping_set(self, schema_alt_id: str, schema_id: str, existing_flow: dict | None) -> str:
        wanted = _mapping_key(self.s["mapping"])
        if existing_flow:  # the dataflow's own mapping: reused as it is
            for t in existing_flow.get("transformations") or []:
                if not isinstance(t, dict) or t.get("name") != "Mapping":
                    continue
                mid = (t.get("params") or {}).get("mappingId")
                if mid:
                    current = self._call("GET", f"conversion/mappingSets/{quote(mid)}", "get the mapping set")
                    if _mapping_key(current.get("mappings") if isinstance(current, dict) else []) != wanted:
                        self._log(f"warning: the dataflow's mapping set {mid} differs from the spec's "
                                  "mapping; it is kept (a dataflow is not changed by this command)")
                    self._note("mapping set", "of the dataflow", mid, False)
                    return mid
        start, limit = 0, 100
        while True:
            page = self._call("GET", f"conversion/mappingSets?limit={limit}&start={start}", "list mapping sets")
            data = page.get("data") if isinstance(page, dict) else None
            if not isinstance(data, list):
                raise VendorProtocolError("list mapping sets: expected a data list")
            for m in data:
                if isinstance(m, dict) and m.get("xdmSchema") in (schema_alt_id, schema_id) and \
                        _mapping_key(m.get("mappings")) == wanted:
                    self._note("mapping set", "with the same mappings", m["id"], False)
                    return m["id"]
            if len(data) < limit:
                break
            start += limit
        created = self._call("POST", "conversion/mappingSets", "create the mapping set", body={
            "version": 0, "xdmSchema": schema_alt_id, "xdmVersion": "1.0", "mappings": self.s["mapping"]})
        self._note("mapping set", "for the schema", created["id"], True)
        return created["id"]

    def flow_spec(self) -> str:
        name = self.s["flow_spec_name"]
        body = self._call("GET", f"flowservice/flowSpecs?{self._filter('name', name)}", "find the flow spec")
        items = [i for i in (body.get("items") or []) if isinstance(i, dict) and i.get("name") == name]
        if not items:
            raise VendorProtocolError(f"find the flow spec: no flow spec named {name!r}")
        return items[0]["id"]

    def dataflow(self, existing: dict | None, spec_id: str, source_id: str, target_id: str,
                 mapping_id: str) -> str:
        name = self.s["names"]["dataflow"]
        if existing:
            self._note("dataflow", name, existing["id"], False)
            return existing["id"]
        body = {"name": name, "description": self.s["description"],
                "flowSpec": {"id": spec_id, "version": "1.0"},
                "sourceConnectionIds": [source_id], "targetConnectionIds": [target_id],
                "transformations": [{"name": "Mapping",
                                     "params": {"mappingId": mapping_id, "mappingVersion": 0}}]}
        oid = self._call("POST", "flowservice/flows", "create the dataflow", body=body)["id"]
        self._note("dataflow", name, oid, True)
        return oid

    # -- all of it ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        s = self.s
        connection_id, conn_params = self.connection()
        source_id, source_params = self.source_connection(connection_id)
        inlet_id = source_params.get("inletId") or conn_params.get("inletId")
        inlet_url = source_params.get("inletUrl") or conn_params.get("inletUrl")
        if not inlet_id or not inlet_url:
            raise VendorProtocolError("the streaming connection has no inletId/inletUrl")
        schema = self.schema()
        schema_id, schema_alt_id = schema["$id"], schema.get("meta:altId") or schema["$id"]
        dataset_id = self.dataset(schema_id)
        target_id = self.target_connection(dataset_id, schema_id)
        existing_flow = self._find_flowservice("flows", s["names"]["dataflow"])
        mapping_id = self.mapping_set(schema_alt_id, schema_id, existing_flow)
        spec_id = self.flow_spec()
        flow_id = self.dataflow(existing_flow, spec_id, source_id, target_id, mapping_id)
        base_url = inlet_url.split("/collection/", 1)[0]
        vendor_settings = {"base_url": base_url, "inlet_id": inlet_id, "flow_id": flow_id,
                           "message_mode": s["data_type"], "authenticated": s["authenticated"],
                           "ims_org_id": s["ims_org_id"], "sandbox_name": s["sandbox_name"]}
        if s["data_type"] == "xdm":
            vendor_settings.update(schema_id=schema_id, dataset_id=dataset_id)
        note = WAIT_NOTE if "dataflow" in self.created else "The dataflow already existed: nothing to wait for."
        return {
            "settings": vendor_settings,
            "objects": {"connection": connection_id, "inlet_url": inlet_url, "source_connection": source_id,
                        "schema": schema_id, "schema_alt_id": schema_alt_id, "dataset": dataset_id,
                        "target_connection": target_id, "mapping_set": mapping_id, "flow_spec": spec_id,
                        "dataflow": flow_id},
            "created": self.created,
            "found": self.found,
            "note": note,
        }


def _read_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as exc:
        raise InputError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise InputError(f"the {what} file {path} is not valid JSON: {exc}") from None


def main(argv: list[str] | None = None, *, session: requests.Session | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="s3-vendor-import provision-aep",
        description="Create (or find) the AEP streaming connection, schema, dataset, mapping and "
                    "dataflow, and print the inlet id and flow id for the aep vendor settings.")
    parser.add_argument("--settings", required=True, help="provisioning settings JSON (credentials, spec)")
    parser.add_argument("--spec", help="optional JSON with the spec part (names, schema, dataset, mapping)")
    parser.add_argument("--json", action="store_true",
                        help="accepted like every s3-vendor-import command: stdout is the JSON result either way")
    args = parser.parse_args(argv)
    try:
        doc = _read_json(args.settings, "settings")
        spec = _read_json(args.spec, "spec") if args.spec else None
        settings = load_provision_settings(doc, spec)
        result = Provisioner(settings, session=session).run()
    except (InputError, SettingsError) as exc:
        print(f"provision-aep: {scrub(exc.message)}", file=sys.stderr)
        return 2
    except VendorImportError as exc:
        print(f"provision-aep: {type(exc).__name__}: {scrub(exc.message)}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    print(result["note"], file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
