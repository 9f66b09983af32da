"""The operator CLI behaves like a good CLI (issue 14, part 5), on a local runner output folder
written here by hand: local paths in `show --local`, every vendor in `list`, usage errors for an
unknown vendor, a quiet end when the reader of a pipe goes away, `--json` on every command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
TEMP_BUCKET = "s3-vendor-import-local-1a2b3c"  # the runner's temporary bucket, gone after the run


def status(job_id: str, vendor: str, updated: str, *, rejects: bool = False) -> dict:
    record = {"job_id": job_id, "vendor": vendor, "state": "SUCCEEDED_WITH_REJECTS" if rejects else "SUCCEEDED",
              "updated_at": updated, "message": "done", "counts": {"records": 3, "rejected": 1 if rejects else 0},
              "source": {"bucket": TEMP_BUCKET, "key": f"inbox/{vendor}/f.data",
                         "uri": f"s3://{TEMP_BUCKET}/inbox/{vendor}/f.data", "version_id": "v1"},
              "rejects": {"csv_uri": None, "raw_uri": None, "rows": 0},
              "status_uri": f"s3://{TEMP_BUCKET}/status/{vendor}/{job_id}.json",
              "execution_arn": f"arn:aws:states:us-east-1:123456789012:execution:m:{job_id}"}
    if rejects:
        record["rejects"] = {"csv_uri": f"s3://{TEMP_BUCKET}/rejects/{vendor}/{job_id}/f.data.rejects.csv",
                             "raw_uri": f"s3://{TEMP_BUCKET}/rejects/{vendor}/{job_id}/f.rejects.xml", "rows": 1}
    return record


@pytest.fixture
def out(tmp_path) -> Path:
    """What `s3-vendor-import run/demo --out DIR` leaves: DIR/<job_id>/status.json (+ rejects)."""
    records = [status("cirrus-job-1", "cirrus", "2026-11-30T10:00:00Z", rejects=True),
               status("hopex-job-1", "hopex", "2026-11-30T11:00:00Z"),
               status("aep-job-1", "aep", "2026-11-30T09:00:00Z")]
    for r in records:
        folder = tmp_path / r["job_id"]
        folder.mkdir()
        (folder / "status.json").write_text(json.dumps(r))
    (tmp_path / "cirrus-job-1" / "f.data.rejects.csv").write_text("record,code,reason\n")
    (tmp_path / "cirrus-job-1" / "f.rejects.xml").write_text("<Data/>")
    return tmp_path


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    o, e = capsys.readouterr()
    return rc, o, e


def test_show_local_prints_the_local_files_not_the_temporary_buckets_uris(out, capsys):
    rc, text, _ = cli(capsys, "show", "cirrus-job-1", "--local", str(out))
    assert rc == 0
    assert "s3://" not in text and TEMP_BUCKET not in text
    lines = dict(line.split(":", 1) for line in text.splitlines())
    assert lines["status"].strip() == str(out / "cirrus-job-1" / "status.json")
    assert lines["  csv"].strip() == str(out / "cirrus-job-1" / "f.data.rejects.csv")
    assert lines["  vendor file"].strip() == str(out / "cirrus-job-1" / "f.rejects.xml")
    assert lines["file"].strip() == "inbox/cirrus/f.data"
    assert "console" not in lines  # the execution ran in the local runner, not in an AWS console


def test_show_local_json_adds_the_local_files(out, capsys):
    rc, text, _ = cli(capsys, "show", "cirrus-job-1", "--local", str(out), "--json")
    doc = json.loads(text)
    assert rc == 0 and doc["job_id"] == "cirrus-job-1"
    assert doc["local_files"] == {"status": str(out / "cirrus-job-1" / "status.json"),
                                  "rejects_csv": str(out / "cirrus-job-1" / "f.data.rejects.csv"),
                                  "rejects_raw": str(out / "cirrus-job-1" / "f.rejects.xml")}


def test_list_without_vendor_lists_every_vendor_newest_first(out, capsys):
    rc, text, _ = cli(capsys, "list", "--local", str(out))
    assert rc == 0
    order = [line.split()[-1] for line in text.splitlines()[2:]]
    assert order == ["hopex-job-1", "cirrus-job-1", "aep-job-1"]
    rc, text, _ = cli(capsys, "list", "--local", str(out), "--json")
    assert rc == 0 and [r["job_id"] for r in json.loads(text)] == ["hopex-job-1", "cirrus-job-1", "aep-job-1"]
    rc, text, _ = cli(capsys, "list", "--vendor", "cirrus", "--local", str(out), "--json")
    assert [r["job_id"] for r in json.loads(text)] == ["cirrus-job-1"]


@pytest.mark.parametrize("argv", [
    ["list", "--vendor", "nope", "--local", "."],
    ["start", "--vendor", "nope", "--input", "{}", "--simulator"],
    ["simulator", "--vendor", "nope"],
])
def test_an_unknown_vendor_is_a_usage_error_naming_the_valid_ones(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err
    for vendor in ("hopex", "campaign", "aep", "simplemente", "cirrus"):
        assert f"'{vendor}'" in err


def test_rejects_json_lists_the_written_files(out, capsys, tmp_path):
    rc, text, _ = cli(capsys, "rejects", "cirrus-job-1", "--local", str(out), "--out", str(tmp_path / "r"), "--json")
    assert rc == 0
    assert json.loads(text) == [str(tmp_path / "r" / "f.data.rejects.csv"), str(tmp_path / "r" / "f.rejects.xml")]
    rc, text, _ = cli(capsys, "rejects", "hopex-job-1", "--local", str(out), "--out", str(tmp_path / "r"), "--json")
    assert rc == 0 and json.loads(text) == []


def test_every_command_has_json():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    missing = [name for name, p in sub.choices.items() if name != "provision-aep"
               and not any("--json" in a.option_strings for a in p._actions)]
    assert missing == []
    # provision-aep parses its own arguments: its --help names --json too
    proc = subprocess.run([sys.executable, "-m", "local.cli", "provision-aep", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--json" in proc.stdout


def test_list_piped_into_a_reader_that_stops_early_ends_quietly(tmp_path):
    # `s3-vendor-import list --local DIR | head -1`: the output is far more than a pipe holds
    # (64 KiB), so the reader closes while the CLI still writes
    for n in range(1500):
        folder = tmp_path / f"job-{n:05d}"
        folder.mkdir()
        (folder / "status.json").write_text(json.dumps(status(f"job-{n:05d}-" + "x" * 40, "aep",
                                                              f"2026-11-30T10:{n // 60:02d}:{n % 60:02d}Z")))
    proc = subprocess.Popen([sys.executable, "-m", "local.cli", "list", "--local", str(tmp_path), "--limit", "1500"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    first = proc.stdout.readline()
    proc.stdout.close()  # what head does once it has its line
    err = proc.stderr.read().decode()
    proc.stderr.close()
    rc = proc.wait(timeout=60)
    assert first.startswith(b"updated (UTC)")
    assert err == ""  # no BrokenPipeError traceback, no "Exception ignored" line
    assert rc == 1  # Python's documented exit for EPIPE (docs.python.org/3/library/signal.html)


def test_operator_does_not_import_the_cli_one_direction_only():
    # issue 16: local/cli.py imports local/operator.py (its subcommands); what both need lives in
    # local/report.py, so operator.py never imports cli.py back
    import ast

    tree = ast.parse((ROOT / "local" / "operator.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {"cli", "local.cli"} & imported
    assert "report" in imported


def test_burst_sets_the_limit_of_the_prefix_target_inside_a_multi_target_document():
    from local.cli import _with_limit

    doc = {"vendor": "hopex", "targets": {"prod": {"base_url": "https://p"}, "test": {"base_url": "https://t"}}}
    settings, limit = _with_limit(doc, "prod", 2)
    assert settings == {"vendor": "hopex", "targets": {"prod": {"base_url": "https://p", "max_concurrent_imports": 2},
                                                       "test": {"base_url": "https://t"}}}
    assert limit == 2
    assert _with_limit(doc, "test", None) == (doc, 0)  # no limit given: the document's (none)
    single = {"vendor": "hopex", "base_url": "https://p", "max_concurrent_imports": 3}
    assert _with_limit(single, "default", None) == (single, 3)
    assert _with_limit(single, "default", 0) == ({**single, "max_concurrent_imports": 0}, 0)  # 0 lifts it
