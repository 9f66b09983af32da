"""Targets from the command line: `run --settings` with a multi-target document, and `simulator
--targets` serving two targets at once (subprocesses, as a user types them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.simulators import start_targets, targets_document

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLEAN = "events/files/hopex/clean.mgl"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "common"), str(ROOT)])}


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "local.cli", *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def test_run_with_a_multi_target_settings_file_imports_into_the_chosen_target(tmp_path):
    sims = start_targets("hopex", ["prod", "test"])
    try:
        doc = targets_document("hopex", sims)
        for target in doc["targets"].values():
            target["poll"] = {"first_wait_seconds": 1, "max_wait_seconds": 1}
        settings = tmp_path / "hopex-targets.json"
        settings.write_text(json.dumps(doc))
        proc = cli("run", "--file", CLEAN, "--key", "inbox/hopex/target=test/clean.mgl", "--settings", str(settings),
                   "--out", str(tmp_path / "out"), "--json", "--timeout", "60")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        (status,) = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*/status.json")]
        assert (status["state"], status["target"]) == ("SUCCEEDED", "test")
        assert [j.filename for j in sims["test"].jobs.values()] == ["clean.mgl"] and sims["prod"].requests == []
    finally:
        for sim in sims.values():
            sim.stop()


def test_simulator_targets_serves_two_targets_on_two_ports_with_their_own_credentials():
    proc = cli("simulator", "--vendor", "hopex", "--targets", "prod,test", "--json", "--seconds", "0.5", timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    doc = out["settings"]
    assert doc["vendor"] == "hopex" and sorted(doc["targets"]) == ["prod", "test"]
    prod, test = doc["targets"]["prod"], doc["targets"]["test"]
    assert prod["base_url"] != test["base_url"] and out["targets"] == {"prod": prod["base_url"],
                                                                        "test": test["base_url"]}
    assert prod["auth"]["password"] != test["auth"]["password"]
    assert "prod on http://127.0.0.1:" in proc.stderr and "test on http://127.0.0.1:" in proc.stderr
