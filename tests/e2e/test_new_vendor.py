"""Adding a vendor is its connector module, its simulator and one row in template.yaml (README,
"Adding a vendor"): a throw-away sixth vendor, a copy of HOPEX under the id ``acme``, imports a file
through the local runner in a copy of the repository with no other edit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

RUN = """
import json
import local, vendor_import
from local.runner import LocalPipeline
from local.simulators import SIMULATORS, simulator_class
from vendor_import.connectors import VENDORS

with simulator_class("acme")() as sim:
    with LocalPipeline(settings={"acme": sim.settings()}, simulators={"acme": sim}, execution_timeout=60) as pipe:
        result = pipe.import_file(open("events/files/hopex/clean.mgl", "rb").read(), "inbox/acme/clean.mgl")
        print(json.dumps({
            "code": [local.__file__, vendor_import.__file__], "vendors": VENDORS, "simulators": sorted(SIMULATORS),
            "state": result.state, "record_vendor": result.record["vendor"], "sim_jobs": len(sim.jobs),
            "machine": pipe.state_machine_arn("acme"), "function": pipe.deployment.functions["AcmeFunction"],
            "resources": sorted(n for n in pipe.cfn["Resources"] if n.startswith("Acme")),
        }))
"""


def copy_with(path: Path, target: Path, *replacements: tuple[str, str]) -> None:
    text = path.read_text()
    for old, new in replacements:
        assert old in text, (path, old)
        text = text.replace(old, new)
    target.write_text(text)


def test_a_sixth_vendor_needs_its_connector_its_simulator_and_one_row(tmp_path):
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("functions", "layers", "local", "statemachines", "events"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=ignore)
    # 1. the connector: a copy of HOPEX's under the new id
    connectors = tmp_path / "layers" / "common" / "vendor_import" / "connectors"
    copy_with(connectors / "hopex.py", connectors / "acme.py",
              ("class HopexConnector(", "class AcmeConnector("), ('vendor = "hopex"', 'vendor = "acme"'))
    # 2. the simulator
    simulators = tmp_path / "local" / "simulators"
    copy_with(simulators / "hopex.py", simulators / "acme.py",
              ("class HopexSimulator(", "class AcmeSimulator("), ('vendor = "hopex"', 'vendor = "acme"'),
              ('"vendor": "hopex"', '"vendor": "acme"'))
    # 3. template.yaml: its row in Mappings VendorTable and its stem in the Vendors list
    copy_with(ROOT / "template.yaml", tmp_path / "template.yaml",
              ("    Cirrus: {Id: cirrus, Name: Cirrus Shield}\n",
               "    Cirrus: {Id: cirrus, Name: Cirrus Shield}\n    Acme: {Id: acme, Name: Acme (a copy of HOPEX)}\n"),
              ("Default: Hopex,Campaign,Aep,Simplemente,Cirrus\n",
               "Default: Hopex,Campaign,Aep,Simplemente,Cirrus,Acme\n"))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(tmp_path / "layers" / "common")])}
    proc = subprocess.run([sys.executable, "-c", RUN], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(path.startswith(str(tmp_path)) for path in out["code"]), out["code"]  # the copy ran, not the repo
    assert "acme" in out["vendors"] and "acme" in out["simulators"]
    assert out["state"] == "SUCCEEDED" and out["record_vendor"] == "acme" and out["sim_jobs"] == 1
    assert out["machine"].endswith(":stateMachine:s3-vendor-import-acme-import")
    assert out["resources"] == sorted([
        "AcmeSettings", "AcmeFunction", "AcmeFunctionRole", "AcmeLogGroup", "AcmeImportStateMachine",
        "AcmeImportStateMachineRole", "AcmeStateMachineLogGroup", "AcmeExecutionsFailedAlarm",
        "AcmeExecutionsTimedOutAlarm", "AcmeExecutionEndedRule", "AcmeExecutionEndedPermission",
        "AcmeSubmitStartsImportPolicy", "AcmeImportsFailedAlarm", "AcmeImportsTimedOutAlarm",
        "AcmeFunctionErrorsAlarm", "AcmeFunctionThrottlesAlarm"])
