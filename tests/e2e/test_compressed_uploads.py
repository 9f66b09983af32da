"""Files as they are really encoded and filed (issue 14, parts 3 and 4), for every vendor, through
the whole local pipeline: a gzip upload (Content-Encoding: gzip, or a *.gz name) is imported
decompressed, and the vendor simulator receives exactly the records of the plain file; a
data-lake partition layout (year=2026/month=11/day=30/) is plain folders; other compressions
fail naming themselves, before any vendor call."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from requests_toolbelt.multipart.decoder import MultipartDecoder

from local.simulators.aep import AepSimulator
from local.simulators.campaign import CampaignSimulator
from local.simulators.cirrus import CirrusSimulator
from local.simulators.simplemente import SimplementeSimulator, http_fetch

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "events" / "files"
PARTITIONS = "year=2026/month=11/day=30/"
# how each upload is marked as gzip: the S3 object's Content-Encoding, or the file name
MARKS = ["content-encoding", "gz-name"]


@pytest.fixture(scope="module")
def sims(pipe, hopex_sim):
    with AepSimulator() as aep, CampaignSimulator() as campaign, CirrusSimulator() as cirrus, \
            SimplementeSimulator() as simplemente:
        found = {"hopex": hopex_sim, "aep": aep, "campaign": campaign, "cirrus": cirrus, "simplemente": simplemente}
        for vendor, sim in found.items():
            pipe.set_settings(vendor, sim.settings())
        yield found


def reset_hopex(sim) -> None:
    tokens = set(sim.tokens)
    sim.reset()
    sim.tokens |= tokens  # a server does not forget tokens between imports
    with sim._lock:
        sim.requests.clear()


def upload(pipe, key: str, body: bytes, *, content_encoding: str | None = None):
    """Put the object as `aws s3 cp --content-encoding` would, run the pipeline, return the result."""
    extra = {"ContentEncoding": content_encoding} if content_encoding else {}
    pipe.s3.put_object(Bucket=pipe.bucket, Key=key, Body=body, **extra)
    mine = [o for o in pipe.pump_queue() if o.get("key") == key]
    assert mine, f"no outcome for {key}"
    return pipe._result_for(key, mine[-1])


def import_gzip(pipe, vendor: str, name: str, plain: bytes, mark: str, test: str):
    """``plain`` gzip-compressed under inbox/<vendor>/year=2026/month=11/day=30/..., marked as gzip
    by ``mark``. Returns (result, the name the vendor sees)."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", test)[:40]
    seen = f"{stem}-{name}"
    if mark == "content-encoding":
        result = upload(pipe, f"inbox/{vendor}/{PARTITIONS}{seen}", gzip.compress(plain), content_encoding="gzip")
    else:
        result = upload(pipe, f"inbox/{vendor}/{PARTITIONS}{seen}.gz", gzip.compress(plain))
    return result, seen


@pytest.mark.parametrize("mark", MARKS)
def test_aep_gzip_ndjson_sends_exactly_the_records_of_the_plain_file(pipe, sims, mark, request):
    sim = sims["aep"]
    sim.accepted.clear()
    plain = (FILES / "aep" / "profiles-clean.ndjson").read_bytes()
    result, _ = import_gzip(pipe, "aep", "profiles.ndjson", plain, mark, request.node.name)
    assert result.state == "SUCCEEDED", result.record
    assert sim.accepted_ids() == Counter(f"P{n:04d}" for n in range(1, 21))  # P0001..P0020, once each
    assert result.record["counts"]["records"] == 20 and result.record["counts"]["accepted"] == 20


@pytest.mark.parametrize("mark", MARKS)
def test_cirrus_gzip_xml_sends_exactly_the_records_of_the_plain_file(pipe, sims, mark, request):
    sim = sims["cirrus"]
    with sim._lock:
        sim.received.clear()
    plain = (FILES / "cirrus" / "accounts-clean.xml").read_bytes()
    result, _ = import_gzip(pipe, "cirrus", "accounts.xml", plain, mark, request.node.name)
    assert result.state == "SUCCEEDED", result.record
    assert sim.received_values("Name") == [
        "Acme Paris", "Acme Lyon", "Acme Marseille", "Acme Toulouse", "Acme Nantes", "Acme Lille",
        "Acme Bordeaux", "Acme Nice", "Acme Rennes", "Acme Strasbourg", "Acme Grenoble", "Acme Dijon"]


@pytest.mark.parametrize("mark", MARKS)
def test_hopex_gzip_command_file_is_uploaded_decompressed(pipe, sims, mark, request):
    sim = sims["hopex"]
    reset_hopex(sim)
    plain = (FILES / "hopex" / "clean.mgl").read_bytes()
    result, seen = import_gzip(pipe, "hopex", "model.mgl", plain, mark, request.node.name)
    assert result.state == "SUCCEEDED", result.record
    (post,) = sim.requests_to("/import", "POST")
    files = [p for p in MultipartDecoder(post.body, post.header("Content-Type")).parts
             if b"filename=" in p.headers.get(b"Content-Disposition", b"")]
    (part,) = files
    assert part.content == plain  # the command file itself, not its gzip
    assert f'filename="{seen}"'.encode() in part.headers[b"Content-Disposition"]
    (job,) = sim.jobs.values()
    assert job.size == len(plain)


@pytest.mark.parametrize("mark", MARKS)
def test_simplemente_fetches_a_decompressed_copy_by_presigned_url(pipe, sims, mark, request):
    sim = sims["simplemente"]
    sim.wait_fetched()
    with sim._lock:
        sim.imports.clear()
    plain = (FILES / "simplemente" / "articles-clean.csv").read_bytes()
    result, seen = import_gzip(pipe, "simplemente", "articles.csv", plain, mark, request.node.name)
    assert result.state == "SUCCEEDED", result.record
    (imp,) = sim.imports.values()
    assert imp.fetched and imp.groups[1][0]["Message"] == "Lecture du fichier : 5 lignes"
    assert f"/work/{result.job_id}/source/{seen}" in imp.url  # the staged copy, not the upload
    assert http_fetch(imp.url) == (200, plain)
    assert result.record["counts"]["records"] == 5


@pytest.mark.parametrize("mark", MARKS)
def test_campaign_gzip_trigger_starts_the_named_mapping(pipe, sims, mark, request):
    sim = sims["campaign"]
    with sim._state_lock:
        tokens = dict(sim.tokens)
    sim.reset()
    with sim._state_lock:
        sim.tokens.update(tokens)
    result, _ = import_gzip(pipe, "campaign", "trigger.json", b'{"mapping_id": "okProfiles120"}', mark,
                            request.node.name)
    assert result.state == "SUCCEEDED", result.record
    assert len(sim.ingest_posts("okProfiles120")) == 1


def test_hopex_limit_applies_to_the_decompressed_bytes(pipe, sims):
    sim = sims["hopex"]
    reset_hopex(sim)
    plain = b".Validate\n" * (31_457_280 // 10 + 1)  # 31,457,290 bytes decompressed, ~60 KB compressed
    result = upload(pipe, "inbox/hopex/bomb.mgl.gz", gzip.compress(plain))
    assert result.state == "FAILED"
    assert result.record["error"]["type"] == "InputError"
    assert result.record["message"] == (
        "bomb.mgl.gz decompresses to more than HOPEX's 30 MB limit (31,457,280 bytes): split the file "
        "and upload the parts (each gzip-compressed if you like)")
    assert sim.requests_to("/import", "POST") == []


def _zip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("accounts.xml", data)
    return buf.getvalue()


@pytest.mark.parametrize(("name", "body", "encoding", "says"), [
    ("accounts.xml.zip", _zip(b"<Data/>"), None, "accounts.xml.zip is compressed with zip: only gzip"),
    ("accounts.xml.bz2", bz2.compress(b"<Data/>"), None, "accounts.xml.bz2 is compressed with bzip2: only gzip"),
    ("accounts.xml.xz", lzma.compress(b"<Data/>"), None, "accounts.xml.xz is compressed with xz: only gzip"),
    ("accounts.xml", b"\x28\xb5\x2f\xfd" + b"\x00" * 20, None, "accounts.xml is compressed with zstd: only gzip"),
    ("accounts.xml", b"<Data/>", "br", "accounts.xml is compressed with br (Content-Encoding br): only gzip"),
])
def test_other_compressions_fail_naming_them(pipe, sims, name, body, encoding, says):
    sim = sims["cirrus"]
    with sim._lock:
        sim.requests.clear()
    result = upload(pipe, f"inbox/cirrus/other/{name}", body, content_encoding=encoding)
    assert result.state == "FAILED"
    assert result.record["error"]["type"] == "InputError"
    assert result.record["message"].startswith(says), result.record["message"]
    assert sim.requests == []


# -- the exactly-once cursor over the decompressed copy --------------------------------------------------------

def test_gzip_records_continued_over_several_steps_are_each_sent_once(pipe, sims):
    # Cirrus reads from byte offsets of the staged, decompressed copy; a poll step sends one batch
    # when the safety margin is the whole Lambda run (as tests/e2e/test_cirrus_pipeline.py does)
    sim = sims["cirrus"]
    with sim._lock:
        sim.received.clear()
        sim.store.clear()
    pipe.set_settings("cirrus", {**sim.settings(), "batch_size": 100, "safety_margin_seconds": 900})
    try:
        records = "".join(f"<Account><Name>Gz {n:04d}</Name></Account>\n" for n in range(1, 451))
        plain = f'<?xml version="1.0" encoding="UTF-8"?>\n<Data>\n{records}</Data>\n'.encode()
        result = upload(pipe, "inbox/cirrus/steps/accounts.xml.gz", gzip.compress(plain))
    finally:
        pipe.set_settings("cirrus", sim.settings())
    assert result.state == "SUCCEEDED", result.record
    assert result.record["counts"] == {"records": 450, "sent": 450, "accepted": 450, "rejected": 0, "batches": 5}
    assert result.record["polls"] == 6  # 5 sending polls, then the end
    assert sim.received_values("Name") == [f"Gz {n:04d}" for n in range(1, 451)]  # in order, each once
