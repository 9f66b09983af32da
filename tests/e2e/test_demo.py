"""`s3-vendor-import demo`: every DEMO_CASE of every vendor simulator through the whole local
pipeline, each ending as its case expects (exit code 0).

The demo deploys the template into its own moto, and two local pipelines cannot live in one
process at once (the e2e package's shared pipeline may be up): ``local.cli.main(["demo", ...])``
runs in a child interpreter, exactly as it runs in this one.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.simulators import SIMULATORS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def demo_cases() -> list[tuple[str, object]]:
    """Every vendor's DEMO_CASES, and the cases of its extra targets (TARGET_DEMO_CASES)."""
    modules = {vendor: importlib.import_module(spec.split(":")[0]) for vendor, spec in SIMULATORS.items()}
    return [(vendor, case) for vendor, module in modules.items()
            for case in [*module.DEMO_CASES, *getattr(module, "TARGET_DEMO_CASES", {}).values()]]


def test_demo_runs_every_case_of_every_vendor_as_expected(tmp_path):
    out = tmp_path / "demo"
    code = f"import sys; from local.cli import main; sys.exit(main(['demo', '--out', {str(out)!r}]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "common"), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    cases = demo_cases()
    assert {vendor for vendor, _ in cases} == set(SIMULATORS)
    assert f"{len(cases)} imports, {len(cases)} SNS messages" in proc.stdout
    assert "EXPECTED" not in proc.stdout and "did not end as expected" not in proc.stderr
    statuses = [json.loads(p.read_text()) for p in out.glob("*/status.json")]
    assert len(statuses) == len(cases)
    by_key = {s["source"]["key"]: s for s in statuses}
    for vendor, case in cases:
        status = by_key[case.key]
        assert (status["vendor"], status["state"]) == (vendor, case.expect), (case.title, status["message"])
        if case.expect == "SUCCEEDED_WITH_REJECTS":
            assert status["rejects"]["rows"] > 0
            assert (out / status["job_id"] / status["rejects"]["csv_uri"].rsplit("/", 1)[-1]).is_file()
    # the demo imports one file into each of two more HOPEX targets, each served by its own simulator
    assert sorted(s["target"] for s in statuses if s["vendor"] == "hopex" and s["target"] != "default") == [
        "prod", "test"]
