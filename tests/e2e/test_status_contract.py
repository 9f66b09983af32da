"""The README's status record example is a real record, and stays one (issue 14): the same import
run through the local pipeline today gives a record with the same fields, state, message, error,
counts and rejects file names as the example."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from local.simulators.cirrus import CirrusSimulator

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SAMPLE = ROOT / "events" / "files" / "cirrus" / "accounts-all-fail.xml"
KEY = "inbox/cirrus/object=Account/action=upsert/matching_field=Name/accounts-all-fail.xml"


def readme_example() -> dict:
    section = README.read_text().split("## The status record and the SNS message", 1)[1]
    block = re.search(r"```json\n(\{\n.*?\n\})\n```", section, re.S)
    assert block, "no status record example in the README's status section"
    return json.loads(block.group(1))


def paths(doc, prefix="") -> set[str]:
    """Every field of a record as a dotted path (the shape, not the values)."""
    if not isinstance(doc, dict):
        return set()
    out = set()
    for key, value in doc.items():
        out.add(prefix + key)
        out |= paths(value, f"{prefix}{key}.")
    return out


def basename(uri: str | None) -> str | None:
    return uri.rsplit("/", 1)[-1] if uri else None


@pytest.fixture(scope="module")
def record(pipe):
    with CirrusSimulator() as sim:
        before = pipe.settings.get("cirrus")
        pipe.set_settings("cirrus", sim.settings())
        try:
            result = pipe.import_file(SAMPLE, KEY)
        finally:
            if before is not None:
                pipe.set_settings("cirrus", before)
    document = json.loads(pipe.s3.get_object(
        Bucket=pipe.bucket, Key=f"status/cirrus/{result.job_id}.json")["Body"].read())
    return document


def test_readme_example_has_the_fields_of_a_real_record(record):
    assert paths(readme_example()) == paths(record)


def test_readme_example_says_what_the_real_record_says(record):
    example = readme_example()
    for name in ("vendor", "state", "dry_run", "message", "error", "counts", "vendor_ref", "polls",
                 "waited_seconds", "vendor_seconds"):
        assert example[name] == record[name], name
    assert example["error"]["type"] == "VendorRefusedAll"
    assert "Some of the Lookup Fields contain invalid values" in example["error"]["message"]  # Cirrus's words
    assert {k: example["source"][k] for k in ("key", "size", "etag")} == \
        {k: record["source"][k] for k in ("key", "size", "etag")}


def test_readme_names_the_rejects_files_as_a_real_import_writes_them(record):
    example = readme_example()
    real = {k: basename(record["rejects"][k]) for k in ("csv_uri", "raw_uri")}
    assert real == {"csv_uri": "accounts-all-fail.xml.rejects.csv", "raw_uri": "accounts-all-fail.rejects.xml"}
    assert {k: basename(example["rejects"][k]) for k in ("csv_uri", "raw_uri")} == real
    assert example["rejects"]["rows"] == record["rejects"]["rows"] == 4
    # the retry table's Cirrus row names the same file
    (row,) = [line for line in README.read_text().splitlines() if line.startswith("| `cirrus` | `<name")]
    assert f"`{real['raw_uri']}`" in row


def test_readme_lists_every_documented_error_type():
    from vendor_import.errors import ERROR_TYPES

    section = README.read_text().split("## The status record and the SNS message", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(\w+)` \|", section, re.M)
    assert listed == list(ERROR_TYPES)
