"""``provision-aep`` against the AEP simulator: each object created once, a second run creates
nothing and prints the same ids, and the printed settings stream a file to the new inlet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vendor_import.connectors import build_connector, load_settings
from vendor_import.connectors.aep_provision import (
    DATALAKE_CONNECTION_SPEC,
    STREAMING_CONNECTION_SPEC,
    load_provision_settings,
    main,
)
from vendor_import.connectors.base import StepContext
from vendor_import.errors import SettingsError
from vendor_import.model import FinalState
from vendor_import.source import FileSource

from local.simulators.aep import AepSimulator

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("connections", "sourceConnections", "schemas", "dataSets", "targetConnections", "mappingSets", "flows")


@pytest.fixture
def sim():
    with AepSimulator() as s:
        yield s


def write(tmp_path, name, doc) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


def provision(capsys, *argv) -> tuple[int, dict | None, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 else None), err


def test_provisioning_creates_each_object_once_and_a_second_run_creates_nothing(sim, tmp_path, capsys):
    settings = write(tmp_path, "p.json", sim.provision_settings())
    rc, first, err = provision(capsys, "--settings", settings)
    assert rc == 0, err
    assert dict(sim.created) == dict.fromkeys(KINDS, 1)
    assert first["created"] == ["connection", "source connection", "schema", "dataset", "target connection",
                                "mapping set", "dataflow"]
    assert "wait about 5 minutes" in first["note"] and "wait about 5 minutes" in err

    rc, second, _ = provision(capsys, "--settings", settings)
    assert rc == 0
    assert dict(sim.created) == dict.fromkeys(KINDS, 1)  # nothing new
    assert second["created"] == [] and len(second["found"]) == 7
    assert second["settings"] == first["settings"] and second["objects"] == first["objects"]

    out = first["settings"]
    assert out["inlet_id"] == first["objects"]["inlet_url"].rsplit("/", 1)[-1]
    assert out["flow_id"] == first["objects"]["dataflow"] and out["base_url"] == sim.base_url


def test_provisioning_requests_follow_the_seed(sim, tmp_path, capsys):
    rc, result, _ = provision(capsys, "--settings", write(tmp_path, "p.json", sim.provision_settings()))
    assert rc == 0
    posts = {r.path.split("/data/foundation/")[1]: r for r in sim.requests if r.method == "POST"
             and "/data/foundation/" in r.path}
    for req in posts.values():
        assert req.header("Authorization").startswith("Bearer ")
        assert req.header("x-api-key") == AepSimulator.CLIENT_ID
        assert req.header("x-gw-ims-org-id") == AepSimulator.ORG
        assert req.header("x-sandbox-name") == "prod"
        assert req.header("Content-Type") == "application/json"
    conn = posts["flowservice/connections"].json()
    assert conn["connectionSpec"]["id"] == STREAMING_CONNECTION_SPEC
    assert conn["auth"]["specName"] == "Streaming Connection" and conn["auth"]["params"]["dataType"] == "raw"
    assert posts["flowservice/targetConnections"].json()["connectionSpec"]["id"] == DATALAKE_CONNECTION_SPEC
    assert posts["flowservice/targetConnections"].json()["params"]["dataSetId"] == result["objects"]["dataset"]
    mapping = posts["conversion/mappingSets"].json()
    assert mapping["xdmSchema"] == result["objects"]["schema_alt_id"]
    assert {"destinationXdmPath": "person.name.firstName", "sourceAttribute": "firstName", "identity": False,
            "version": 0} in mapping["mappings"]
    flow = posts["flowservice/flows"].json()
    assert flow["flowSpec"]["id"] == "c1a19761-d2c7-4702-b9fa-fe91f0613e81"
    assert flow["transformations"] == [{"name": "Mapping", "params": {"mappingId": result["objects"]["mapping_set"],
                                                                      "mappingVersion": 0}}]
    spec_lookup = sim.requests_to("/flowservice/flowSpecs", "GET")[0]
    assert spec_lookup.query["property"] == ['name=="Steam data with transformation"']
    lookups = [r for r in sim.requests if r.method == "GET" and "property" in r.query]
    assert any(r.query["property"] == ['name=="s3-vendor-import profiles"'] for r in lookups)


def test_printed_settings_stream_a_file_to_the_new_inlet(sim, tmp_path, capsys):
    rc, result, _ = provision(capsys, "--settings", write(tmp_path, "p.json", sim.provision_settings()))
    doc = {**sim.settings(), **result["settings"]}
    conn = build_connector("aep", load_settings("aep", doc))
    ctx = StepContext(source=FileSource(str(ROOT / "events/files/aep/profiles-clean.ndjson")))
    progress = conn.submit(ctx)
    while not progress.done:
        progress = conn.poll(progress.job, ctx)
    assert progress.state == FinalState.SUCCEEDED and progress.counts["accepted"] == 20
    inlet = sim.requests_to(f"/collection/{result['settings']['inlet_id']}")  # the documented raw path
    assert inlet and inlet[0].header("x-adobe-flow-id") == result["settings"]["flow_id"]


def test_vendor_settings_plus_spec_and_an_authenticated_xdm_inlet(sim, tmp_path, capsys):
    spec_doc = {k: v for k, v in sim.provision_settings(data_type="xdm", authenticated=True).items()
                if k in ("names", "schema", "dataset", "mapping", "data_type", "authenticated")}
    rc, result, err = provision(capsys, "--settings", write(tmp_path, "aep.json", sim.settings()),
                                "--spec", write(tmp_path, "spec.json", spec_doc))
    assert rc == 0, err
    out = result["settings"]
    assert out["message_mode"] == "xdm" and out["authenticated"] is True
    assert out["schema_id"] == result["objects"]["schema"] and out["dataset_id"] == result["objects"]["dataset"]
    conn_obj = sim.objects["connections"][result["objects"]["connection"]]
    assert conn_obj["auth"]["params"]["authenticationRequired"] is True


def test_bad_credentials_exit_1_without_the_secret(sim, tmp_path, capsys):
    doc = sim.provision_settings()
    doc["ims"]["client_secret"] = "very-wrong-secret"
    rc, _, err = provision(capsys, "--settings", write(tmp_path, "p.json", doc))
    assert rc == 1 and "VendorAuthError" in err and "very-wrong-secret" not in err
    assert sim.new_objects() == 0


def test_invalid_settings_exit_2_naming_the_field(sim, tmp_path, capsys):
    doc = sim.provision_settings()
    del doc["schema"]
    rc, _, err = provision(capsys, "--settings", write(tmp_path, "p.json", doc))
    assert rc == 2 and "schema" in err
    rc, _, err = provision(capsys, "--settings", str(tmp_path / "missing.json"))
    assert rc == 2 and "cannot read" in err


def test_example_provision_settings_validate():
    doc = json.loads((ROOT / "events/settings/aep-provision.example.json").read_text())
    settings = load_provision_settings(doc)
    assert settings["names"]["dataflow"] == "s3-vendor-import profiles dataflow"
    with pytest.raises(SettingsError, match=r"mapping\[1\]"):
        load_provision_settings({**doc, "mapping": [{"source": "a"}]})
