"""The `s3-vendor-import run` command as a user types it (subprocesses: each run deploys the
template into its own moto). The three runs start together to share the deploy time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.cli import main
from local.simulators.hopex import HopexSimulator

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLEAN = "events/files/hopex/clean.mgl"
FAILS = "events/files/hopex/fails.mgl"


def command() -> list[str]:
    script = Path(sys.executable).with_name("s3-vendor-import")
    return [str(script)] if script.exists() else [sys.executable, "-m", "local.cli"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Start the three runs at once; each test reads its own (returncode, stdout, stderr, out dir)."""
    tmp = tmp_path_factory.mktemp("cli")
    with HopexSimulator(running_polls=0) as own_server:  # "a user's own HOPEX server"
        settings = own_server.settings(poll={"first_wait_seconds": 1, "max_wait_seconds": 1})
        settings_file = tmp / "hopex.json"
        settings_file.write_text(json.dumps(settings))
        specs = {
            "simulator-clean": ["--file", CLEAN, "--key", "inbox/hopex/clean.mgl", "--simulator"],
            "simulator-fails": ["--file", FAILS, "--key", "inbox/hopex/fails.mgl", "--simulator"],
            "settings-file": ["--file", CLEAN, "--key", "inbox/hopex/validate=AtEnd/clean.mgl",
                              "--settings", str(settings_file), "--timeout", "60"],
        }
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs = {}
        for name, args in specs.items():
            out = tmp / name
            procs[name] = (subprocess.Popen([*command(), "run", *args, "--out", str(out)], cwd=ROOT, env=env,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), out)
        results = {}
        for name, (proc, out) in procs.items():
            stdout, stderr = proc.communicate(timeout=180)
            results[name] = (proc.returncode, stdout, stderr, out)
        results["own-server-jobs"] = list(own_server.jobs.values())
    return results


def status_files(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in out.glob("*/status.json")]


def test_run_with_the_simulator_exits_0_and_writes_status_json(runs):
    code, stdout, stderr, out = runs["simulator-clean"]
    assert code == 0, stdout + stderr
    (status,) = status_files(out)
    assert status["state"] == "SUCCEEDED" and status["vendor"] == "hopex"
    assert status["source"]["key"] == "inbox/hopex/clean.mgl"
    assert "state: SUCCEEDED" in stdout and "status.json" in stdout


def test_run_of_a_failing_import_exits_1(runs):
    code, stdout, stderr, out = runs["simulator-fails"]
    assert code == 1, stdout + stderr
    (status,) = status_files(out)
    assert status["state"] == "FAILED" and "FAIL-JOB" in status["message"]
    assert "state: FAILED" in stdout


def test_run_with_a_settings_file_for_a_users_own_server_exits_0(runs):
    code, stdout, stderr, out = runs["settings-file"]
    assert code == 0, stdout + stderr
    (status,) = status_files(out)
    assert status["state"] == "SUCCEEDED"
    (job,) = runs["own-server-jobs"]  # the import really went to that server, with the key's option
    assert job.validate == "AtEnd" and job.filename == "clean.mgl"


# -- usage errors: caught before anything is deployed --------------------------------------------------------

@pytest.mark.parametrize(("args", "says"), [
    (["--file", CLEAN, "--key", "hopex/clean.mgl", "--simulator"], "--key must look like inbox/<vendor>/<file>"),
    (["--file", CLEAN, "--key", "inbox/clean.mgl", "--simulator"], "--key must look like inbox/<vendor>/<file>"),
    (["--file", CLEAN, "--key", "inbox/nobody/clean.mgl", "--simulator"], "--key names vendor 'nobody'"),
    (["--file", "no/such/file.mgl", "--key", "inbox/hopex/x.mgl", "--simulator"],
     "--file no/such/file.mgl does not exist"),
    (["--file", CLEAN, "--key", "inbox/hopex/clean.mgl"], "give --settings FILE"),
    (["--file", CLEAN, "--key", "inbox/hopex/clean.mgl", "--settings", "no-such.json"], "settings file no-such.json"),
])
def test_usage_error_exits_2_with_a_clear_message(args, says, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exc:
        main(["run", *args])
    assert exc.value.code == 2
    assert says in capsys.readouterr().err


def test_settings_file_that_is_not_json_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    bad = tmp_path / "hopex.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit) as exc:
        main(["run", "--file", CLEAN, "--key", "inbox/hopex/clean.mgl", "--settings", str(bad)])
    assert exc.value.code == 2
    assert "is not valid JSON" in capsys.readouterr().err


def test_missing_required_argument_is_argparse_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--file", CLEAN])
    assert exc.value.code == 2
    assert "--key" in capsys.readouterr().err
