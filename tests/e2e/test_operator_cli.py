"""The operator commands (list, show, rejects, resubmit) against the shared pipeline's jobs table
and bucket (what --stack finds in AWS), and against the local runner's output (--local)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from local import operator
from local.cli import main
from local.simulators.cirrus import CirrusSimulator

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
WITH_REJECTS = ROOT / "events" / "files" / "cirrus" / "accounts-with-rejects.xml"
STACK = "operator-cli-test-stack"


@pytest.fixture(scope="module")
def cirrus_sim():
    with CirrusSimulator() as sim:
        yield sim


@pytest.fixture(scope="module")
def imported(pipe, cirrus_sim, hopex_sim):
    """A Cirrus import with rejects and a HOPEX one, as any deployed stack would hold them."""
    pipe.set_settings("cirrus", cirrus_sim.settings())
    if pipe.settings.get("hopex") != hopex_sim.settings():
        pipe.set_settings("hopex", hopex_sim.settings())
    cirrus = pipe.import_file(WITH_REJECTS, "inbox/cirrus/operator/accounts-with-rejects.xml", {"note": "kept"})
    assert cirrus.state == "SUCCEEDED_WITH_REJECTS", cirrus.record
    hopex = pipe.import_file(ROOT / "events/files/hopex/clean.mgl", "inbox/hopex/operator/clean.mgl")
    assert hopex.state == "SUCCEEDED"
    return {"cirrus": cirrus, "hopex": hopex}


@pytest.fixture(scope="module")
def backend(pipe):
    return operator.AwsBackend(pipe.s3, pipe.ddb, pipe.bucket, pipe.table.name)


@pytest.fixture(scope="module")
def stack(pipe):
    """A CloudFormation stack whose outputs name the pipeline's bucket and table, as the real one does."""
    import boto3

    marker = {"Type": "AWS::SSM::Parameter",
              "Properties": {"Name": "operator-cli-test", "Type": "String", "Value": "marker"}}
    template = {"Resources": {"Marker": marker},
                "Outputs": {"ImportBucketName": {"Value": pipe.bucket}, "JobsTableName": {"Value": pipe.table.name}}}
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    cfn.create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    return STACK


def cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# -- against the stack (the jobs table and the bucket) ---------------------------------------------------------

def test_list_shows_the_vendors_recent_imports_newest_first(imported, backend):
    job_id = imported["cirrus"].job_id
    records = backend.list("cirrus", 50)
    assert job_id in [r["job_id"] for r in records]
    assert all(r["vendor"] == "cirrus" for r in records)
    stamps = [r["updated_at"] for r in records]
    assert stamps == sorted(stamps, reverse=True)
    text = operator.list_text(records)
    line = next(line for line in text.splitlines() if job_id in line)
    assert "SUCCEEDED_WITH_REJECTS" in line and "accounts-with-rejects.xml" in line and " 12 " in line


def test_list_limit(imported, backend):
    assert len(backend.list("cirrus", 1)) == 1


def test_show_has_status_counts_rejects_and_the_console_link(imported, backend):
    result = imported["cirrus"]
    text = operator.show_text(backend.get(result.job_id))
    assert f"job id:         {result.job_id}" in text
    assert "state:          SUCCEEDED_WITH_REJECTS" in text
    assert "rejected 3" in text and "rejects:        3 row(s)" in text
    assert f"  vendor file:  {result.record['rejects']['raw_uri']}" in text
    assert ("console:        https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1"
            f"#/v2/executions/details/{result.record['execution_arn']}") in text


def test_rejects_downloads_both_files(imported, backend, pipe, tmp_path):
    result = imported["cirrus"]
    paths = operator.fetch_rejects(backend, result.job_id, tmp_path)
    assert [p.name for p in paths] == ["accounts-with-rejects.xml.rejects.csv", "accounts-with-rejects.rejects.xml"]
    for path, uri in zip(paths, (result.record["rejects"]["csv_uri"], result.record["rejects"]["raw_uri"]),
                         strict=True):
        bucket, key = operator.split_uri(uri)
        assert path.read_bytes() == pipe.s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_cli_with_stack_finds_bucket_and_table_from_the_outputs(imported, stack, capsys, tmp_path):
    job_id = imported["cirrus"].job_id
    rc, out, _ = cli(capsys, "list", "--vendor", "cirrus", "--stack", stack)
    assert rc == 0 and job_id in out
    rc, out, _ = cli(capsys, "show", job_id, "--stack", stack)
    assert rc == 0 and "SUCCEEDED_WITH_REJECTS" in out and "console:" in out
    rc, out, _ = cli(capsys, "show", job_id, "--json", "--stack", stack)
    assert rc == 0 and json.loads(out)["job_id"] == job_id
    rc, out, _ = cli(capsys, "rejects", job_id, "--out", str(tmp_path), "--stack", stack)
    assert rc == 0 and sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(p).name for p in out.split())


def test_cli_errors_are_exit_1_with_a_message(imported, stack, capsys):
    rc, _, err = cli(capsys, "show", "no-such-job", "--stack", stack)
    assert rc == 1 and "no import 'no-such-job'" in err
    rc, _, err = cli(capsys, "list", "--vendor", "cirrus", "--stack", "no-such-stack")
    assert rc == 1 and "cannot read stack 'no-such-stack'" in err
    rc, _, err = cli(capsys, "resubmit", imported["hopex"].job_id, "--stack", stack)
    assert rc == 1 and "hopex rejects are not records that can be imported again" in err
    rc, out, _ = cli(capsys, "rejects", imported["hopex"].job_id, "--out", "unused", "--stack", stack)
    assert rc == 0 and "has no rejects" in out and not Path("unused").exists()


def test_resubmit_copies_the_rejects_into_the_inbox_and_a_new_import_runs(imported, backend, pipe, cirrus_sim):
    original = imported["cirrus"]
    key = backend.resubmit(original.job_id)
    assert key.startswith("inbox/cirrus/operator/accounts-with-rejects.rejects.resubmit-") and key.endswith(".xml")
    head = pipe.s3.head_object(Bucket=pipe.bucket, Key=key)
    assert head["Metadata"] == {"note": "kept"}  # the upload's metadata (options) apply again
    cirrus_sim.requests.clear()
    outcomes = pipe.pump_queue()
    (mine,) = [o for o in outcomes if o["key"] == key]
    again = pipe._result_for(key, mine)
    assert again.job_id != original.job_id
    assert again.record["source"]["key"] == key
    assert again.record["counts"]["records"] == 3  # exactly the records refused the first time
    assert cirrus_sim.requests  # sent to the vendor again


# -- against the local runner's output ---------------------------------------------------------------------------

def test_local_list_show_rejects_read_the_runners_out_dir(imported, pipe, capsys, tmp_path):
    result = imported["cirrus"]
    out_dir = str(pipe.out_dir)
    rc, out, _ = cli(capsys, "list", "--vendor", "cirrus", "--local", out_dir)
    assert rc == 0 and result.job_id in out
    rc, out, _ = cli(capsys, "list", "--vendor", "hopex", "--local", out_dir)
    assert rc == 0 and result.job_id not in out and imported["hopex"].job_id in out
    rc, out, _ = cli(capsys, "show", result.job_id, "--local", out_dir)
    assert rc == 0 and "SUCCEEDED_WITH_REJECTS" in out
    rc, out, _ = cli(capsys, "rejects", result.job_id, "--out", str(tmp_path / "r"), "--local", out_dir)
    assert rc == 0
    assert sorted(p.read_bytes() for p in (tmp_path / "r").iterdir()) == sorted(p.read_bytes()
                                                                                 for p in result.rejects_paths)


def test_local_errors(capsys, tmp_path):
    rc, _, err = cli(capsys, "show", "x", "--local", str(tmp_path / "missing"))
    assert rc == 1 and "is not a folder" in err
    with pytest.raises(SystemExit) as exc:
        main(["list", "--vendor", "cirrus"])  # neither --stack nor --local
    assert exc.value.code == 2


def test_resubmit_key_keeps_folders_and_options_that_apply_and_the_extension():
    # format=csv/ does not apply to the NDJSON rejects file (issue 13 part 4): dropped
    record = {"vendor": "aep", "source": {"key": "inbox/aep/format=csv/batch/profiles.csv"}}
    key = operator.resubmit_key(record, "s3://b/rejects/aep/j/profiles.rejected.ndjson", now=0)
    assert key == "inbox/aep/batch/profiles.rejected.resubmit-19700101T000000Z.ndjson"
    record = {"vendor": "cirrus", "source": {"key": "inbox/cirrus/action=insert/x/a.xml"}}
    assert operator.resubmit_key(record, "s3://b/x/a.rejects.xml", now=0) == \
        "inbox/cirrus/action=insert/x/a.rejects.resubmit-19700101T000000Z.xml"
    console = {"vendor": "cirrus", "source": {"key": None}}
    assert operator.resubmit_key(console, "s3://b/x/a.rejects.xml", now=0) == \
        "inbox/cirrus/a.rejects.resubmit-19700101T000000Z.xml"


@pytest.mark.slow
def test_local_resubmit_runs_the_rejects_file_through_a_local_pipeline(imported, tmp_path):
    """In its own process: it deploys its own local pipeline (one per process)."""
    result = imported["cirrus"]
    shutil.copytree(result.status_path.parent, tmp_path / "out" / result.job_id)
    script = Path(sys.executable).with_name("s3-vendor-import")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "local.cli"]
    proc = subprocess.run([*cmd, "resubmit", result.job_id, "--local", str(tmp_path / "out"), "--simulator"],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=300)
    assert "importing " in proc.stdout and ".resubmit-" in proc.stdout, proc.stderr
    records = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*/status.json")]
    (new,) = [r for r in records if r["job_id"] != result.job_id]
    assert new["source"]["key"].startswith("inbox/cirrus/operator/accounts-with-rejects.rejects.resubmit-")
    assert new["counts"]["records"] == 3
    assert proc.returncode == (0 if new["state"] in ("SUCCEEDED", "SUCCEEDED_WITH_REJECTS") else 1)


# -- the SNS samples in docs/sns-samples ----------------------------------------------------------------------------

@pytest.mark.slow
def test_sns_samples_in_the_docs_are_what_a_local_run_publishes_today(pipe, hopex_sim, tmp_path):
    fresh = operator.write_sns_samples(pipe, hopex_sim, tmp_path)
    docs = ROOT / "docs" / "sns-samples"
    assert sorted(p.name for p in fresh) == sorted(p.name for p in docs.iterdir())
    for path in fresh:
        committed = docs / path.name
        if path.suffix == ".json":
            new, old = json.loads(path.read_text()), json.loads(committed.read_text())
            assert sorted(new) == sorted(old)
            assert sorted(json.loads(new["Message"])) == sorted(json.loads(old["Message"]))
            assert new["MessageAttributes"].keys() == old["MessageAttributes"].keys()
            assert json.loads(new["Message"])["state"] == path.stem
        else:  # the same e-mail fields, in the same order
            def labels(text):
                return [m.group(1) for m in map(re.compile(r"^( {0,2}[A-Za-z][A-Za-z ]{0,9}):\s+\S").match,
                                                 text.splitlines()) if m]
            assert labels(path.read_text()) == labels(committed.read_text())


def test_resubmit_metadata_keeps_only_the_options_that_still_apply():
    # the upload's metadata: a format option (does not apply to the NDJSON rejects) and a tool's own entry
    aep = {"vendor": "aep", "options": {"format": "csv", "delimiter": ";"}}
    assert operator.resubmit_metadata(aep, "inbox/aep/x.rejected.resubmit-19700101T000000Z.ndjson",
                                      {"format": "csv", "mtime": "1700000000"}) == {"mtime": "1700000000"}
    # Cirrus: console options carried as metadata, unless already a key segment of the new key
    cirrus = {"vendor": "cirrus", "options": {"action": "insert", "use_external_id": False, "matching_field": "Code"}}
    assert operator.resubmit_metadata(cirrus, "inbox/cirrus/action=insert/a.rejects.resubmit-19700101T000000Z.xml",
                                      {}) == {"use_external_id": "false", "matching_field": "Code"}
